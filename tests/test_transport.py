"""Slow start after a TCP handshake (issue 13, part 0).

RFC 5681 section 3.1: the SYN/ACK and its acknowledgment must not grow the
congestion window; RFC 6928 sets the initial window to 10 segments.  A
response of N full segments sent right after the handshake, with window
doubling per round trip, therefore needs r round trips for
10*(2^(r-1) - 1) < N <= 10*(2^r - 1).  Before the fix the SYN-ACK's 60 bytes
were credited to ``cwnd`` and the first flight held 11 segments, so responses
of 10*(2^r - 1)+1 ... 11*(2^r - 1) segments finished one round trip early.

The model is deterministic here (constant latency, no loss, no bandwidth
limit, zero service time), so the page load time is an exact multiple of
the RTT.
"""

from __future__ import annotations

import pytest

import commsim.patterns.multiplexing  # noqa: F401  (registers the section)
from commsim.config import load
from commsim.experiment.runner import simulate
from commsim.rng import derive_run_seed

RTT = 0.05
MSS = 1460
HEADER = 300


def page_time(segments: int, handshake: str = "tcp", initial_window: int = 10) -> float:
    cfg = {"pattern": "multiplexing", "duration": "2000s",
           "clients": {"count": 1, "mode": "sync", "think_time": "1000s"},
           "server": {"service_time": "0s"},
           "network": {"latency": "25ms", "handshake": handshake, "loss": 0.0,
                       "bandwidth": None, "tls_server_cpu": "0s"},
           "multiplexing": {"protocol": "http1", "objects": 1, "connections_per_host": 1,
                            "response_header": f"{HEADER}B", "mss": f"{MSS}B",
                            "initial_window": initial_window,
                            "object_size": f"{segments * MSS - HEADER}B"}}
    metrics, _ = simulate(load(cfg).points[0].config, derive_run_seed(1, 0))
    return metrics["page_load_time"]


def rounds(segments: int, iw: int = 10) -> int:
    r = 1
    while segments > iw * (2 ** r - 1):
        r += 1
    return r


@pytest.mark.parametrize("r", [1, 2, 3])
def test_response_rounds_at_the_boundaries(r):
    # 1 RTT handshake (tcp), then the request's half RTT up, the response's
    # rounds, each one RTT (the last one's half RTT down closes it).
    last_in_r = 10 * (2 ** r - 1)
    for n in (last_in_r, last_in_r + 1, 11 * (2 ** r - 1)):
        expected = r if n <= last_in_r else r + 1
        assert rounds(n) == expected
        assert page_time(n) == pytest.approx((1 + expected) * RTT, abs=1e-9), n


def test_no_handshake_same_window():
    # Without a handshake nothing was ever credited: the same boundaries hold.
    for n in (10, 11, 30, 31):
        assert page_time(n, handshake="none") == pytest.approx(rounds(n) * RTT, abs=1e-9)


def test_initial_window_key_sets_the_first_flight():
    for n in (4, 5, 12, 13):
        assert page_time(n, initial_window=4) == pytest.approx((1 + rounds(n, 4)) * RTT,
                                                               abs=1e-9)
