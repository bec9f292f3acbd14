"""network.idle_timeout: the connection module closes a kept-alive connection
idle for longer than the timeout; the next request pays a new handshake.

Tolerances
----------
* Short polling is exact: periodic polls put a lattice of times (phase + kT)
  on every client, and any half-open window of length a multiple of T holds
  exactly duration/T of them, however the lattice is shifted (each handshake
  flight, request and idle close is the poll time plus a constant), so
  counts and bytes are equalities.
* request_response: with zero latency a sync client's connection is idle for
  exactly its think time, so each request pays a handshake with probability
  P(think > tau) = exp(-tau/m) independently; the fraction over replications
  (independent seeds) is checked with :func:`helpers.within_t` (99% Student-t
  interval that must also be narrower than 5% of the expected value).
"""

from __future__ import annotations

import math

import pytest
from helpers import within_t

import commsim
from commsim.engine import Simulation
from commsim.errors import ConfigError
from commsim.experiment.runner import collect
from commsim.network.connection import handshake_bytes, round_trips
from commsim.patterns import registry

D = 0.02  # one-way latency


def run(cfg: dict, seed: int = 1) -> dict:
    config = commsim.load(cfg).points[0].config
    sim = Simulation(config, seed)
    model = registry()[config["pattern"]].model(sim)
    sim.run()
    return collect(sim, model)  # the model's metrics and the standard ones, as the runner


def polling(clients=200, duration=20.0, warmup=2.0, interval=1.0, **network):
    return {"pattern": "short_polling", "duration": duration, "warmup": warmup,
            "clients": {"count": clients},
            "network": {"latency": D, **network},
            "server": {"cores": clients, "service_time": 0},
            "short_polling": {"interval": interval},
            "workload": {"event_rate": 0}}


def test_short_polling_idle_longer_than_timeout_pays_a_handshake_per_poll():
    # T = 1 s > idle time: a poll's exchange ends 6 d + tls after it starts
    # (TCP + TLS 1.3: 2 round trips, then the poll's own), the server closes
    # the connection tau = 0.5 s later, before the next poll (0.621 < 1).
    tls = 0.001
    n = 200 * 20  # clients x duration / T
    m = run(polling(handshake="tls1.3", tls_server_cpu=tls, idle_timeout=0.5))
    k = round_trips("tls1.3")
    assert m["poll_rtt_mean"] == pytest.approx(2 * D * (k + 1) + tls, rel=1e-9)
    assert m["requests"] == m["connections_opened"] == m["handshakes"] == n
    assert m["connections_idle_closed"] == n
    up, down = handshake_bytes("tls1.3")
    assert m["bytes_handshake"] == n * (up + down)
    assert m["server_cpu_s"] == pytest.approx(n * tls, rel=1e-9)  # TLS CPU per new handshake
    # a connection is open 0.621 s of every second, not all the time
    assert m["connections_max"] < 200
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]


def test_short_polling_idle_shorter_than_timeout_handshakes_once_per_online_period():
    # T = 1 s < tau = 2 s: every client's connection stays open; with no
    # warm-up the first polls (phases in [0, 1 s)) are in the window and
    # are the only ones that pay the handshake (tcp: one round trip).
    m = run(polling(warmup=0.0, handshake="tcp", idle_timeout=2.0))
    assert m["connections_opened"] == m["handshakes"] == 200
    assert m["connections_idle_closed"] == 0
    up, down = handshake_bytes("tcp")
    assert m["bytes_handshake"] == 200 * (up + down)
    # 20 polls per client, the first one 2 d longer; a poll sent less than 2 d
    # before the end is not sampled (at most one per client): 3800-4000 samples
    assert 2 * D * (1 + 200 / 4000) - 1e-12 <= m["poll_rtt_mean"] <= 2 * D * (1 + 200 / 3800)
    assert m["connections_max"] == 200


def test_default_is_never_and_no_metric_is_added():
    m = run(polling(handshake="tcp"))
    assert "connections_idle_closed" not in m


@pytest.mark.parametrize("pattern", ["request_response", "sync_async"])
def test_fraction_of_requests_paying_a_handshake_is_p_think_longer_than_tau(pattern):
    mean_think, tau = 1.0, 0.5
    cfg = {"pattern": pattern, "duration": 60, "warmup": 5,
           "clients": {"count": 100, "think_time": {"dist": "exponential", "mean": mean_think}},
           "server": {"cores": 100, "service_time": 0},
           "network": {"handshake": "tcp", "idle_timeout": tau}}
    if pattern == "sync_async":  # its CPU is sync_async.cpu_before/after, not service_time
        del cfg["server"]["service_time"]
    fractions = []
    for seed in range(1, 6):
        m = run(cfg, seed)
        assert m["requests"] > 5000
        fractions.append(m["handshakes"] / m["requests"])
        # every close is followed by a handshake, but for one per client at the edges
        assert abs(m["connections_idle_closed"] - m["handshakes"]) <= 100
    within_t(fractions, math.exp(-tau / mean_think), 0.05)


@pytest.mark.parametrize("network,why", [
    ({"idle_timeout": "5s"}, "network.handshake"),
    ({"idle_timeout": "5s", "handshake": "tcp", "keepalive": False}, "keepalive: false"),
])
def test_meaningless_combinations_are_refused(network, why):
    with pytest.raises(ConfigError) as err:
        commsim.load({"pattern": "request_response", "network": network})
    assert err.value.key == "network.idle_timeout" and why in err.value.message


@pytest.mark.parametrize("pattern,why", [
    ("long_polling", "never idle"), ("sse", "websocket.idle_timeout"),
    ("push", "not modelled"), ("websocket", "websocket.idle_timeout"),
    ("multiplexing", "warm_connections"), ("sidecar", "sidecar.mtls"),
])
def test_patterns_that_do_not_model_it_refuse_it(pattern, why):
    with pytest.raises(ConfigError) as err:
        commsim.load({"pattern": pattern, "network": {"idle_timeout": "5s"}})
    assert err.value.key == "network.idle_timeout" and why in err.value.message


def test_connections_on_their_own_close_exactly_tau_after_the_last_activity():
    # The part alone: latency 10 ms, TCP.  Client "a" opens at 0 (open at
    # 20 ms), answers at 0.1 s -> closed at exactly 0.1 + tau; client "b" is
    # used again before its deadline and stays open; "c" has a request
    # outstanding and is never closed; a reset abandons "d"'s handshake.
    from commsim.engine.events import call_at
    from commsim.network import Network
    from commsim.network.connection import Connections

    cfg = commsim.load({"pattern": "request_response", "duration": 10, "warmup": 0,
                        "network": {"latency": "10ms", "handshake": "tcp",
                                    "idle_timeout": "1s"}}).points[0].config
    sim = Simulation(cfg, 1)
    conns = Connections(sim, Network(sim))
    closed, opened = [], []
    conns.on_idle_close = lambda c: closed.append((c, sim.now))

    def at(t, fn):
        call_at(sim.env, t, lambda _e: fn())

    for c in "abc":
        at(0.0, lambda c=c: conns.ensure(c, lambda extra, c=c: opened.append((c, sim.now, extra))))
    at(0.1, lambda: conns.done("a"))
    at(0.1, lambda: conns.done("b"))
    at(0.9, lambda: conns.use("b"))
    at(1.0, lambda: conns.done("b"))       # idle again from 1.0: closed at 2.0
    at(3.0, lambda: conns.ensure("d", lambda extra: opened.append(("d", sim.now, extra))))
    at(3.005, conns.reset)                 # "d"'s SYN-ACK is still on its way
    sim.env.run(until=5.0)
    assert opened == [(c, pytest.approx(0.02), 52) for c in "abc"]
    assert closed == [("a", pytest.approx(1.1, abs=1e-12)), ("b", pytest.approx(2.0, abs=1e-12))]
    assert conns.idle_closed.n == 2 and "c" not in conns.open  # reset closed "c" (busy, kept till then)
    assert conns.handshakes == 3 and conns.opened == 4


@pytest.mark.parametrize("pattern", ["request_response", "sync_async", "short_polling"])
@pytest.mark.parametrize("tau", [None, 0.5])
def test_behind_a_topology_an_idle_closed_connection_is_routed_again(pattern, tau):
    """One client, two instances, round robin, one request (poll) a second.
    A kept-alive connection stays pinned to its first pick: one instance does
    all the work.  With an idle timeout below the gap every request opens a
    new connection, which the balancer routes again: the two instances
    alternate, so each serves half (exactly, up to one request)."""
    network = {"latency": D, "handshake": "tcp"}
    if tau is not None:
        network["idle_timeout"] = tau
    cfg = {"pattern": pattern, "duration": 40, "warmup": 2,
           "clients": {"count": 1, "think_time": 1.0},
           "server": {"cores": 1, "service_time": 0.01},
           "network": network, "topology": {"servers": 2, "balancer": "round_robin"}}
    if pattern == "sync_async":  # constant CPU per request, as server.service_time elsewhere
        cfg["sync_async"] = {"cpu_before": 0.005, "io_time": 0.01, "cpu_after": 0.005}
        del cfg["server"]["service_time"]
    if pattern == "short_polling":
        cfg["short_polling"] = {"interval": 1.0}
        cfg["workload"] = {"event_rate": 0}
        del cfg["clients"]["think_time"]
    m = run(cfg)
    if tau is None:
        assert m["utilization_min"] == 0 and m["utilization_max"] > 0
    else:
        assert m["connections_idle_closed"] >= 35  # ~one per second of the window
        busy = (m["utilization_min"], m["utilization_max"])
        assert busy[0] > 0 and (busy[1] - busy[0]) / busy[1] < 0.06, busy
