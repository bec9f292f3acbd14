"""Validation of the stateful vs stateless pattern (commsim/patterns/stateful/); its
network conditions (loss, handshakes, keep-alive): tests/test_stateful_network.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import resolved

from commsim import theory
from commsim.engine import Simulation
from commsim.engine.simulation import call_at
from commsim.errors import ConfigError
from commsim.experiment.runner import collect, simulate
from commsim.nodes.load_balancer import LoadBalancer
from commsim.patterns import registry
from commsim.patterns.stateful import StatefulModel

BASE = {
    "pattern": "stateful",
    "duration": "30s",
    "warmup": "2s",
    "clients": {"count": 120, "mode": "sync", "think_time": {"dist": "exponential", "mean": "0.5s"}},
    "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "5ms"}},
    "network": {"latency": "2ms"},
    "stateful": {"servers": 4, "requests_per_session": 10},
}


def config(**sections) -> dict:
    return resolved(BASE, **sections)


def build(cfg, seed=1):
    sim = Simulation(cfg, seed)
    return sim, StatefulModel(sim)


def test_same_latency_without_faults_and_zero_store_latency():
    """Common random numbers: each operation's service time, each login's CPU
    and session length are drawn from their own streams, so with a store that
    takes no time the two modes do exactly the same work at the same instants."""
    zero = {"store_latency": "0s", "store_service_time": "0s"}
    a, _ = simulate(config(stateful={"mode": "stateful", **zero}), 3)
    b, _ = simulate(config(stateful={"mode": "stateless", **zero}), 3)
    assert a["throughput"] > 100  # ~120 clients / (0.5 s think + ~20 ms) ~ 230 ops/s
    for m in ("latency_mean", "latency_p50", "latency_p99", "throughput", "logins"):
        assert b[m] == pytest.approx(a[m], rel=1e-9, abs=1e-12), m
    assert b["store_ops"] > 0 and a["store_ops"] == 0
    # Control: the same comparison with a 1 ms store is NOT equal, and the
    # gap is the store round trips: (1 + logins/ops) x (2 x 1 ms + service ~0)
    # (closed form at low load; store utilisation ~2 %, app queueing shifts a little).
    c, _ = simulate(config(stateful={"mode": "stateless", "store_latency": "1ms",
                                     "store_service_time": "0s"}), 3)
    ops = c["throughput"] * 30
    expected = theory.stateless_store_added_latency(1e-3, 0.0, c["logins"] / ops)
    assert c["latency_mean"] - a["latency_mean"] == pytest.approx(expected, rel=0.15)


def _crash_cfg(mode):
    return config(duration="40s", warmup="0s",
                  stateful={"mode": mode, "crash_at": "20s", "crash_server": 1, "mttr": None,
                            "requests_per_session": 100000, "detect_time": "1s"})


def test_stateful_crash_loses_exactly_the_sessions_on_that_server():
    cfg = _crash_cfg("stateful")
    sim, model = build(cfg, seed=5)
    snap = {}

    def probe(_e):
        snap["victim"] = set(model.servers[1].sessions)
        snap["others"] = {s.index: set(s.sessions) for s in model.servers if s.index != 1}
    call_at(sim.env, 20.0 - 1e-9, probe)
    sim.run()
    m = collect(sim, model)
    victims = snap["victim"]
    assert len(victims) > 10  # ~120 clients over 4 servers
    assert m["sessions_lost"] == len(victims)
    assert model.crash_log[0][2] == frozenset(victims)
    # Exactly those clients (each sends again within the remaining 20 s, think 0.5 s)
    # pay a relogin, and nobody else does: sessions never end in this run.
    relogged = {cid for t, cid in model.relogin_log if t >= 20.0}
    assert relogged == victims
    assert m["relogins"] == len(victims)
    # The other servers kept their sessions.
    for s in model.servers:
        if s.index != 1:
            assert snap["others"][s.index] <= set(s.sessions) | victims
    assert m["failed_requests"] > 0 and m["availability"] < 1.0
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]


def test_stateless_crash_loses_no_session():
    m, _ = simulate(_crash_cfg("stateless"), 5)
    assert m["sessions_lost"] == 0
    assert m["relogins"] == 0
    assert m["failed_requests"] > 0          # the crash did hit requests in progress
    assert m["availability_crash"] < 1.0
    m2, _ = simulate(config(duration="40s", stateful={"mode": "stateless", "stateless_state": "token",
                                                      "crash_at": "20s", "mttr": None}), 5)
    assert m2["sessions_lost"] == 0 and m2["relogins"] == 0


def test_consistent_hash_scale_out_relogs_exactly_the_moved_clients():
    cfg = config(duration="30s", warmup="0s",
                 stateful={"mode": "stateful", "balancer": "consistent_hash", "scale_out_at": "15s",
                           "scale_out_servers": 1, "requests_per_session": 100000})
    sim, model = build(cfg, seed=2)
    snap = {}

    def probe(_e):
        snap["owner"] = {cid: model.lb.owner(cid).index for cid in range(120)}
        snap["live"] = {cid for cid in range(120) if model.session[cid] is not None}
    call_at(sim.env, 15.0 - 1e-9, probe)
    sim.run()
    moved = {cid for cid in snap["live"] if model.lb.owner(cid).index != snap["owner"][cid]}
    relogged = {cid for t, cid in model.relogin_log if t >= 15.0}
    assert relogged == moved
    # About 1/5 of the clients move from 4 to 5 servers (64 virtual nodes each:
    # the new server's share of the ring varies, so a loose band).
    frac = len(moved) / len(snap["live"])
    assert 0.05 < frac < 0.4, frac
    assert theory.consistent_hash_moved_fraction(4, 5) == pytest.approx(0.2)
    assert len(model.servers) == 5 and model.servers[4].created == pytest.approx(15.0)


def test_sticky_scale_out_new_servers_start_empty():
    cfg = config(duration="40s", warmup="0s",
                 stateful={"mode": "stateful", "balancer": "sticky", "scale_out_at": "20s",
                           "scale_out_servers": 2, "requests_per_session": 200})
    m, sim = simulate(cfg, 4)
    assert m["relogins"] == 0          # sticky: nobody is moved
    assert m["servers_end"] == 6
    assert m["imbalance_end"] > 1.3    # new servers still light 20 s later
    assert m["utilization_min"] < 0.5 * m["utilization_max"]


def test_round_robin_breaks_stateful_but_not_stateless():
    a, _ = simulate(config(stateful={"mode": "stateful", "balancer": "round_robin"}), 1)
    b, _ = simulate(config(stateful={"mode": "stateless", "balancer": "round_robin"}), 1)
    assert a["relogins"] > 0.3 * a["logins"]
    assert a["availability"] < 0.9
    assert b["relogins"] == 0 and b["availability"] == 1.0
    assert b["imbalance"] < 1.1


def test_token_mode_costs_bytes_not_round_trips():
    s, _ = simulate(config(stateful={"mode": "stateful"}), 2)
    t, _ = simulate(config(stateful={"mode": "stateless", "stateless_state": "token"}), 2)
    # Each request carries the 1 KiB token on two links (client->LB, LB->server)
    # and each login's answer carries it back on two (server->LB, LB->client);
    # both runs do the same logins (CRN), so the gap is exact up to the few
    # operations in flight at the window edges.
    ops = t["throughput"] * 30
    expected = 2 * 1024 * (1 + t["logins"] / ops)
    assert t["bytes_per_request"] - s["bytes_per_request"] == pytest.approx(expected, rel=0.01)
    assert t["store_ops"] == 0


def test_determinism_and_ledger():
    cfg = config(stateful={"mode": "stateless", "mtbf": "20s", "mttr": "3s", "servers": 3})
    a, _ = simulate(cfg, 9)
    b, _ = simulate(cfg, 9)
    assert {k: v for k, v in a.items() if not (isinstance(v, float) and math.isnan(v))} == \
        {k: v for k, v in b.items() if not (isinstance(v, float) and math.isnan(v))}
    assert a["sent"] == a["delivered"] + a["dropped"] + a["in_flight"]


def test_config_errors():
    with pytest.raises(ConfigError) as e:
        config(stateful={"crash_at": "1s", "crash_server": 4})
    assert e.value.key == "stateful.crash_server"
    with pytest.raises(ConfigError):
        config(stateful={"balancer": "roundrobin"})


class _B:
    def __init__(self, i):
        self.index = i
        self.routable = True
        self.active = 0


def test_load_balancer_policies():
    bs = [_B(i) for i in range(3)]
    rr = LoadBalancer("round_robin", bs)
    assert [rr.pick().index for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    bs[1].routable = False
    assert [rr.pick().index for _ in range(4)] == [0, 2, 0, 2]
    bs[1].routable = True
    lc = LoadBalancer("least_connections", bs)
    bs[0].active, bs[1].active, bs[2].active = 3, 1, 2
    assert lc.pick().index == 1
    st = LoadBalancer("sticky", bs)
    first = st.pick("alice")
    assert all(st.pick("alice") is first for _ in range(5))
    first.routable = False
    assert st.pick("alice") is not first
    for b in bs:
        b.routable = False
    assert st.pick("bob") is None


def test_mtbf_bare_value_means_exponential_up_times():
    """A bare mtbf is the mean of exponential up-times (not a constant, which
    would crash every server at the same instants).  2,000 draws: the sample
    mean's standard error is 10 s / sqrt(2000) = 0.22 s, tolerance 5 SE; the
    coefficient of variation of an exponential is 1 (a constant's is 0)."""
    cfg = config(stateful={"mtbf": "10s", "mttr": "1s", "servers": 3})
    sim = Simulation(cfg, 5)
    model = registry()["stateful"].model(sim)
    draws = np.array([model.faults.uptime() for _ in range(2000)])
    assert abs(draws.mean() - 10.0) < 5 * 10.0 / math.sqrt(2000)
    assert draws.std() / draws.mean() == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ConfigError) as e:
        config(stateful={"mtbf": 0, "mttr": 0})
    assert e.value.key == "stateful.mtbf"
