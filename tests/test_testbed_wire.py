"""The calibratable CPU and wire model (issue 13, part 0): per-kind server
CPU costs and TCP/IP bytes under the application.  Deterministic configs
(constant sizes and service, no loss), so expected values are exact sums
computed here independently of the model."""

from __future__ import annotations

import pytest

from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate
from commsim.rng import derive_run_seed


def rr(server=None, network=None, rr_section=None, clients=5):
    cfg = {"pattern": "request_response", "duration": "20s", "warmup": "1s",
           "clients": {"count": clients, "mode": "sync", "think_time": "100ms"},
           "server": {"service_time": "0s", **(server or {})},
           "network": {"latency": "1ms", **(network or {})},
           "request_response": {"request_header": "400B", "response_header": "300B",
                                "response_body": "3000B", **(rr_section or {})}}
    m, _ = simulate(load(cfg).points[0].config, derive_run_seed(1, 0))
    return m


def test_defaults_count_nothing_extra():
    m = rr()
    assert m["server_cpu_s"] == 0
    assert m["bytes_transport"] == 0 and m["bytes_wire"] == m["bytes_total"]


def test_cpu_per_request_and_response_add_per_exchange():
    m = rr(server={"cpu_per_request": "100us", "cpu_per_response": "50us"})
    # Each request in the window costs 150 us; jobs straddling the window's
    # edges count for their part only, so allow one job at each edge.
    assert m["server_cpu_s"] == pytest.approx(m["requests"] * 150e-6, abs=2 * 150e-6)


def test_cpu_per_kib_counts_bodies_both_ways():
    m = rr(server={"cpu_per_kib": "10us"}, rr_section={"request_body": "1024B"})
    per = 10e-6 * (1024 + 3000) / 1024
    assert m["server_cpu_s"] == pytest.approx(m["requests"] * per, abs=2 * per)


def test_cpu_per_connection_needs_and_uses_connections():
    with pytest.raises(ConfigError) as exc:
        rr(server={"cpu_per_connection": "1ms"})
    assert exc.value.key == "server.cpu_per_connection"
    m = rr(server={"cpu_per_connection": "1ms"},
           network={"handshake": "tcp", "keepalive": False})
    # A new connection (and handshake) per request: 1 ms each.
    assert m["server_cpu_s"] == pytest.approx(m["handshakes"] * 1e-3, abs=2e-3)
    assert m["handshakes"] > 10


def test_wire_bytes_per_segment_and_ack():
    m = rr(network={"segment_overhead": "52B", "acks_per_message": 1.0})
    # request 400 B: 1 segment; response 3300 B: ceil(3300/1460) = 3 segments;
    # each message also draws one pure ACK of 52 B.
    expect = 52 * (m["requests"] * (1 + 1) + m["responses"] * (3 + 1))
    assert m["bytes_transport"] == pytest.approx(expect)
    assert m["bytes_wire"] == m["bytes_total"] + m["bytes_transport"]
    assert m["bandwidth_wire"] == pytest.approx(m["bytes_wire"] / 20)
    m2 = rr(network={"segment_overhead": "52B", "mss": "1000B"})
    assert m2["bytes_transport"] == pytest.approx(52 * (m2["requests"] + 4 * m2["responses"]))


def notif(pattern, server, clients=20, **extra):
    cfg = {"pattern": pattern, "duration": "20s", "warmup": "2s",
           "clients": {"count": clients},
           "server": {"service_time": "0s", "cores": 4, **server},
           "network": {"latency": "1ms"},
           "workload": {"event_rate": "1/s", "event_size": "512B"}, **extra}
    if pattern == "short_polling":  # a section the run's pattern does not read is refused
        cfg["short_polling"] = {"interval": "1s"}
    m, _ = simulate(load(cfg).points[0].config, derive_run_seed(2, 0))
    return m


def test_polls_pay_request_response_and_update_costs():
    m = notif("short_polling", {"cpu_per_request": "30us", "cpu_per_response": "20us",
                                "cpu_per_update": "10us", "cpu_per_kib": "4us"})
    polls = m["responses"]
    updates = m["updates_delivered"]
    expect = polls * 50e-6 + updates * (10e-6 + 4e-6 * 512 / 1024)
    # Updates created just before the window but answered in it, and jobs at
    # the window's edges, shift the sum by a few updates' worth at most.
    assert m["server_cpu_s"] == pytest.approx(expect, rel=0.02)


def test_stream_frames_pay_frame_update_and_kib_costs():
    for pattern in ("sse", "push"):
        m = notif(pattern, {"cpu_per_frame": "40us", "cpu_per_update": "10us",
                            "cpu_per_kib": "8us"})
        frames = m["updates_delivered"]
        assert m["server_cpu_s"] == pytest.approx(frames * (50e-6 + 4e-6), rel=0.02), pattern


@pytest.mark.parametrize("cfg,key", [
    ({"pattern": "sse", "server": {"cpu_per_connection": "100us"}},
     "server.cpu_per_connection"),
    ({"pattern": "short_polling", "server": {"cpu_per_frame": "100us"}},
     "server.cpu_per_frame"),
    ({"pattern": "request_response", "server": {"cpu_per_update": "1us"}},
     "server.cpu_per_update"),
    ({"pattern": "multiplexing", "network": {"segment_overhead": "52B"}},
     "network.segment_overhead"),
])
def test_keys_a_pattern_does_not_apply_are_refused(cfg, key):
    with pytest.raises(ConfigError) as exc:
        load(cfg)
    assert exc.value.key == key
