"""Every ``network`` key in the notification patterns: loss with
retransmission, handshakes per connection, the message ledger.

Tolerances
----------
* Exact where the model fixes the outcome: periodic polls put a lattice of
  send times in the window, so the count of polls, handshakes and their
  bytes is exact; with one core per client and a constant service time no
  CPU wait exists, so every round trip is the same constant.
* Loss: every transmission is lost independently with probability p, so
  the retransmissions of one message are geometric (mean p/(1-p), variance
  p/(1-p)^2, truncated at max_retries = 30, where p^31 < 1e-21 is
  negligible) and independent across messages.  Means over n messages are
  compared within 4 standard errors computed from that variance (two-sided
  miss probability 6e-5).
"""

from __future__ import annotations

import math

import pytest

import commsim
from commsim.engine import Simulation
from commsim.network.connection import handshake_bytes, round_trips
from commsim.patterns import registry
from helpers import event_driven

D_ONE_WAY = 0.02


def run(cfg: dict, seed: int = 1, drain: float = 0.0) -> dict:
    """Metrics of one run; with ``drain`` it goes on that long past its
    window, on the event-driven path (helpers.event_driven)."""
    config = commsim.load(cfg).points[0].config
    sim = Simulation(config, seed)
    if drain:
        with event_driven():
            model = registry()[config["pattern"]].model(sim)
    else:
        model = registry()[config["pattern"]].model(sim)
    sim.run()
    if drain:
        sim.env.run(until=sim.end + drain)
    m = model.metrics()
    m["_in_flight_now"] = model.net.in_flight()
    return m


def polling_cfg(pattern="short_polling", clients=200, duration=100.0, rate=0.0, warmup=1.0,
                **network):
    return {"pattern": pattern, "duration": duration, "warmup": warmup,
            "clients": {"count": clients},
            "network": {"latency": D_ONE_WAY, **network},
            "server": {"cores": clients, "service_time": 0},
            # only the polling section this pattern reads (another one would be refused)
            **({"short_polling": {"interval": 1.0}} if pattern == "short_polling" else {}),
            **({"long_polling": {"timeout": 5.0}} if pattern == "long_polling" else {}),
            "workload": {"event_rate": rate}}


def test_short_polling_loss_adds_rto_p_over_1_minus_p_per_direction():
    # Each poll and each response is retransmitted G ~ geometric times
    # (mean p/(1-p)), rto apart: poll_rtt = 2 d + rto (G_up + G_down),
    # E = 2 d + 2 rto p/(1-p) = 0.04 + 0.1 for p = 0.2, rto = 0.2 s.
    # n = 20,000 polls; sd(rto (G_up + G_down)) = rto sqrt(2 p)/(1-p) = 0.158,
    # SE = 0.00112; 4 SE = 0.0045.
    p, rto = 0.2, 0.2
    cfg = polling_cfg(loss=p, rto=rto, max_retries=30)
    # drained past the end, so that slow round trips are not censored
    n = 200 * 100
    drained = run(cfg, drain=10)
    expected = 2 * D_ONE_WAY + 2 * rto * p / (1 - p)
    se = rto * math.sqrt(2 * p) / (1 - p) / math.sqrt(n)
    assert abs(drained["poll_rtt_mean"] - expected) < 4 * se
    # Bytes (in the window, not drained): every message is put on the wire
    # 1/(1-p) times on average (all headers: 600 + 271 per exchange, no
    # payload).  2n messages: SE of the mean transmissions
    # = sqrt(p)/(1-p)/sqrt(2n) = 0.0028.
    m = run(cfg)
    assert m["requests"] == n
    first = 600 * m["requests"] + 271 * m["responses"]
    assert m["bytes_header"] - m["bytes_retransmitted"] == first  # exact split
    tx = m["bytes_header"] / (871 * n)
    assert abs(tx - 1 / (1 - p)) < 4 * math.sqrt(p) / (1 - p) / math.sqrt(2 * n)
    assert m["dropped"] == 0


def test_short_polling_without_keepalive_over_tls13_pays_every_handshake():
    # Every poll opens a connection: 2 handshake round trips (TCP + TLS 1.3),
    # the server's TLS CPU on the ClientHello (a core per client: no wait),
    # then the poll's own round trip.  Exact, for every poll.
    tls = 0.001
    m = run(polling_cfg(handshake="tls1.3", keepalive=False, tls_server_cpu=tls))
    n = 200 * 100
    k = round_trips("tls1.3")
    assert m["poll_rtt_mean"] == pytest.approx(2 * D_ONE_WAY * (k + 1) + tls, rel=1e-9)
    assert m["handshakes"] == m["connections_opened"] == m["requests"] == n
    up, down = handshake_bytes("tls1.3")
    assert m["bytes_handshake"] == n * (up + down) == n * 4763
    assert m["bytes_header"] == n * 871
    # TLS CPU is server CPU: n handshakes x 1 ms beside the (zero) poll work
    assert m["server_cpu_s"] == pytest.approx(n * tls, rel=1e-9)


def test_short_polling_with_keepalive_handshakes_once_per_client():
    m = run(polling_cfg(handshake="tls1.2", keepalive=True, duration=20.0, warmup=2.0))
    # first polls (and their handshakes, 3 RTT) happen at t < 1.2 s, inside
    # the 2 s warm-up: no handshake in the window, and no round trip pays one
    assert m["handshakes"] == 0 and m["bytes_handshake"] == 0
    assert m["poll_rtt_mean"] == pytest.approx(2 * D_ONE_WAY, rel=1e-9)


def test_long_polling_without_keepalive_handshakes_per_poll():
    # No updates: every poll is held for the 5 s timeout, then re-sent on a
    # new connection (tcp: 1 round trip) -> each cycle is 5 + 4 d.
    m = run(polling_cfg("long_polling", clients=50, duration=100.0, handshake="tcp",
                        keepalive=False))
    assert m["poll_rtt_mean"] == pytest.approx(5.0 + 4 * D_ONE_WAY, rel=1e-9)
    # 50 clients x 100 s / 5.08 s per cycle; handshakes complete at the
    # instant their poll is sent, so they count alike
    assert m["handshakes"] == m["requests"] == pytest.approx(50 * 100 / 5.08, abs=50)
    up, down = handshake_bytes("tcp")
    # exact but for the handshakes that straddle the window's edges (at most
    # one per client at each edge)
    assert abs(m["bytes_handshake"] - m["handshakes"] * (up + down)) <= 2 * 50 * (up + down)


@pytest.mark.parametrize("pattern", ["sse", "push"])
def test_streams_handshake_per_reconnect(pattern):
    # Every (re)connect opens a new connection and handshakes first, so in
    # the window handshakes = connect requests (each sent at the instant its
    # handshake completes) and bytes are exact per handshake.
    cfg = {"pattern": pattern, "duration": 30, "warmup": 2,
           "clients": {"count": 100},
           "network": {"latency": D_ONE_WAY, "handshake": "tls1.3"},
           "workload": {"event_rate": "1/s",
                        "online_time": {"dist": "exponential", "mean": "3s"},
                        "offline_time": {"dist": "exponential", "mean": "1s"}}}
    if pattern == "sse":
        cfg["sse"] = {"connection_lifetime": "5s", "retry": "100ms"}
    m = run(cfg)
    assert m["reconnects"] > 500
    assert m["handshakes"] == m["requests"]
    assert abs(m["handshakes"] - m["reconnects"]) <= 100  # the connects in flight at the edges
    # exact but for handshakes straddling the window's edges
    assert abs(m["bytes_handshake"] - m["handshakes"] * 4763) <= 2 * 100 * 4763
    assert m["server_cpu_s"] > m["handshakes"] * 0.0005  # tls_server_cpu default 0.5 ms each


@pytest.mark.parametrize("pattern", ["short_polling", "long_polling", "sse", "push"])
def test_lossy_network_loses_no_update_and_the_ledger_balances(pattern):
    # Heavy loss with max_retries 1: links give up on messages (dropped > 0)
    # and their senders send them again, so no update is lost; over TLS
    # without keep-alive (polling) so that handshake flights are lost too.
    network = {"latency": D_ONE_WAY, "loss": 0.3, "rto": "100ms", "max_retries": 1,
               "handshake": "tls1.3", "keepalive": pattern.endswith("polling") is False,
               "bandwidth": "50Mbps"}
    # warm-up 5 s: every stream is open before the window (push loses
    # updates for a client whose connection is not open yet)
    cfg = {"pattern": pattern, "duration": 20, "warmup": 5, "clients": {"count": 100},
           "network": network, "workload": {"event_rate": "1/s"}}
    m = run(cfg, drain=30)
    assert m["dropped"] > 0
    assert m["sent"] == m["delivered"] + m["dropped"] + m["_in_flight_now"]
    assert m["updates_created"] > 1500
    assert m["updates_delivered"] == m["updates_created"]
    assert m["missed"] == 0


@pytest.mark.parametrize("pattern", ["short_polling", "long_polling", "sse", "push"])
def test_ledger_balances_with_offline_clients_loss_and_handshakes(pattern):
    network = {"latency": {"dist": "exponential", "mean": "20ms"}, "loss": 0.1,
               "max_retries": 2, "handshake": "tcp"}
    cfg = {"pattern": pattern, "duration": 20, "warmup": 1, "clients": {"count": 100},
           "network": network,
           "workload": {"event_rate": "1/s", "job_rate": "0.05/s",
                        "online_time": {"dist": "exponential", "mean": "2s"},
                        "offline_time": {"dist": "exponential", "mean": "1s"}}}
    m = run(cfg)
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]
    assert m["duplicates"] == 0


def test_sse_lost_frame_holds_back_the_frames_behind_it():
    # Over one lossy stream the client receives frames in creation order (the
    # transport delivers in order), so with resume and no drops there is no
    # reordering and nothing missed, and the mean latency exceeds the
    # lossless one by at least the retransmission delay of the frame itself.
    base = {"pattern": "sse", "duration": 30, "warmup": 1, "clients": {"count": 50},
            "server": {"cores": 50, "service_time": 0},
            "workload": {"event_rate": "5/s"}}
    lossless = run({**base, "network": {"latency": D_ONE_WAY}}, drain=5)
    p, rto = 0.2, 0.2
    lossy = run({**base, "network": {"latency": D_ONE_WAY, "loss": p, "rto": rto,
                                     "max_retries": 30}}, drain=5)
    assert lossless["latency_mean"] == pytest.approx(D_ONE_WAY, rel=1e-9)
    own = rto * p / (1 - p)  # a frame's own retransmissions
    assert lossy["latency_mean"] > D_ONE_WAY + own  # plus head-of-line waits
    assert lossy["updates_delivered"] == lossy["updates_created"]
