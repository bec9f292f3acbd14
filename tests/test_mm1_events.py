"""Events per M/M/1 customer (issue 14), and the fast paths beside the
general ones giving the same metrics.

* The M/M/1 of experiments/precision_demo.yaml costs 2 heap events per
  customer: its arrival (the open-loop source's one re-armed wake-up) and its
  CPU completion.  Zero-latency hops deliver inside ``Link.send``; the
  request-response server gets no wake-up per message.  The count is exact
  (deterministic), so it is pinned exactly, not as a rate.
* (The run-ahead mode, which takes this M/M/1 over with no event per
  customer, is off here: tests/test_request_response_ahead.py.)
* ``RequestResponse.sync_hops`` (deliver inside send) and
  ``RequestResponse.fast_plain`` (the plain exchange) are fast paths: each
  test runs a config both ways and compares every metric (the event count
  apart, where the fast path removes events on purpose).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from commsim.config import load
from commsim.engine import Simulation
from commsim.experiment.runner import simulate
from commsim.network.link import Link
from commsim.network.message import Message
from commsim.patterns import registry
from commsim.patterns import request_response
from commsim.patterns.request_response import RequestResponse
from helpers import resolved, same

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def event_driven(monkeypatch):
    """These tests are about the event-driven paths: the run-ahead mode,
    which takes the open-loop M/M/1 over, has its own
    (tests/test_request_response_ahead.py)."""
    monkeypatch.setattr(request_response, "RUN_AHEAD", False)


def precision_demo_mm1(duration: float = 20.0, rate: float = 8.0) -> dict:
    exp = load(ROOT / "experiments" / "precision_demo.yaml",
               [f"duration={duration}s", "warmup=1s", "replications=1"])
    (point,) = [p for p in exp.points if p.params["clients.rate"] == rate]
    return point.config


def built(cfg: dict, seed: int = 3):
    sim = Simulation(cfg, seed)
    return sim, registry()[cfg["pattern"]].model(sim)


def test_mm1_two_events_per_customer():
    sim, model = built(precision_demo_mm1())
    assert model.plain and sim.env is model.env
    assert model.net.up._immediate and model.net.down._immediate
    sim.run()
    cpu = model.cpu
    present = cpu.present.value              # jobs still at the server
    requests = (sim.bytes.sent + present) // 2  # sent = requests + responses
    responses = requests - present
    assert sim.bytes.messages("request") > 10_000
    busy = cpu.cores - cpu.free
    # one event per arrival (plus the next one, armed), one per job started,
    # and the run's stop event (scheduled, then re-scheduled as SimPy does)
    assert sim.events_scheduled == (requests + 1) + (responses + busy) + 2
    assert sim.events_scheduled / requests < 2.001
    # before issue 14: 4 per customer (two link wake-ups, the source's
    # timeout resuming a generator, the CPU completion)


def test_closed_loop_two_events_per_operation():
    """Sync clients are callbacks too: an operation costs its think-time
    wake-up and its CPU completion (before: also a process resumed by the
    operation's done event, and one Initialize event per client)."""
    cfg = resolved(BASE, clients={"mode": "sync", "count": 50,
                                  "think_time": {"dist": "exponential", "mean": "60ms"}})
    sim, model = built(cfg)
    sim.run()
    cpu, pop = model.cpu, model.clients
    present = cpu.present.value
    requests = (sim.bytes.sent + present) // 2
    responses = requests - present
    blocked = sum(t is not None for t in pop._blocked_since)
    assert blocked == present and responses > 1000
    thinks = requests + (pop.count - blocked)  # one per operation, plus those pending now
    assert sim.events_scheduled == thinks + (responses + cpu.cores - cpu.free) + 2


def _both(cfg: dict, attr: str, monkeypatch, seed: int = 5):
    fast = simulate(cfg, seed)
    with monkeypatch.context() as mp:
        mp.setattr(RequestResponse, attr, False)
        general = simulate(cfg, seed)
    return fast, general


BASE = {"pattern": "request_response", "seed": 2, "duration": 3.0, "warmup": 0.5,
        "clients": {"count": 20, "mode": "async", "rate": 30},
        "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}}}

PLAIN = {  # configs the plain fast path applies to (one chunk, no encoding, handshake, loss)
    "mm1": dict(request_response={"request_header": 0, "response_header": 0,
                                  "response_body": 0}),
    "sizes_cores": dict(server={"cores": 3, "service_time": {"dist": "lognormal",
                                                             "mean": "2ms", "cv": 1.5}},
                        clients={"rate": 100},
                        request_response={"request_body": {"dist": "exponential",
                                                           "mean": "2KiB"},
                                          "response_body": {"dist": "uniform", "low": 0,
                                                            "high": "8KiB"}}),
    "sync_latency_bandwidth": dict(clients={"mode": "sync", "count": 30,
                                            "think_time": {"dist": "exponential",
                                                           "mean": "50ms"}},
                                   network={"latency": {"dist": "exponential", "mean": "3ms"},
                                            "bandwidth": "20Mbps"}),
    "sync_constant": dict(clients={"mode": "sync", "count": 8, "think_time": "2ms"},
                          server={"cores": 2, "service_time": "1ms"}),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_fast_path_equals_general(name, monkeypatch):
    cfg = resolved(BASE, **PLAIN[name])
    fast, general = _both(cfg, "fast_plain", monkeypatch)
    assert fast.model.plain and not general.model.plain
    assert fast.metrics["requests"] > 50
    same(fast.metrics, general.metrics)


GENERAL = {  # zero-latency configs on the general path (chunks, handshakes, encodings)
    "chunked": dict(request_response={"request_body": {"dist": "exponential", "mean": "6KiB"},
                                      "chunk_size": "2KiB"}),
    "tls_no_keepalive": dict(network={"handshake": "tls1.3", "keepalive": False,
                                      "tls_server_cpu": "200us"}),
    "tcp_idle_close": dict(network={"handshake": "tcp", "idle_timeout": "30ms"},
                           clients={"rate": 5}),
    "encoded_costs": dict(request_response={"encoding": "json", "request_body": "3KiB"},
                          server={"cpu_per_request": "50us"}),
    "sync_clients": dict(clients={"mode": "sync", "count": 10, "think_time": "4ms"},
                         server={"cores": 2, "service_time": "1ms"},
                         network={"handshake": "tcp", "keepalive": True}),
}


CONSTANT_TIMES = {"sync_constant", "sync_clients"}  # constant think and service times


@pytest.mark.parametrize("name", sorted(PLAIN) + sorted(GENERAL))
def test_sync_hops_equal_wakeups(name, monkeypatch):
    """Delivering inside send() at zero latency moves no metric but the
    event count: one wake-up fewer per message delivered where no two
    messages are due on one hop at one instant (random times); with constant
    times one wake-up delivered several, so fewer are saved."""
    cfg = resolved(BASE, **{**PLAIN, **GENERAL}[name])
    fast, general = _both(cfg, "sync_hops", monkeypatch)
    zero = cfg["network"]["latency"] == 0 and cfg["network"]["bandwidth"] is None
    assert fast.model.net.up._immediate == zero
    assert fast.metrics["requests"] > 50
    saved = general.metrics["events"] - fast.metrics["events"]
    if not zero:
        assert saved == 0
    elif name in CONSTANT_TIMES:
        assert 0 < saved < fast.metrics["delivered"]
    else:
        assert saved == fast.metrics["delivered"]
    same({**fast.metrics, "events": 0}, {**general.metrics, "events": 0})


def test_sync_hops_with_records(monkeypatch):
    cfg = resolved(BASE, **GENERAL["chunked"])
    fast = simulate(cfg, 5, records=True)
    with monkeypatch.context() as mp:
        mp.setattr(RequestResponse, "sync_hops", False)
        general = simulate(cfg, 5, records=True)
    ops_f, ops_g = fast.sim.recorder.operations, general.sim.recorder.operations
    assert len(ops_f["request_response"]) == len(ops_g["request_response"]) > 50
    for col in ("kind", "start", "end", "client", "size", "outcome"):
        np.testing.assert_array_equal(np.asarray(getattr(ops_f["request_response"], col)),
                                      np.asarray(getattr(ops_g["request_response"], col)), col)


def test_clustered_and_mesh_models_keep_their_wakeups():
    """Composed models opt out (their senders are not re-entrant-safe)."""
    cfg = resolved(BASE, topology={"servers": 2})
    sim, model = built(cfg)
    assert type(model).__name__ == "ClusteredRequestResponse"
    assert not model.net.up._immediate and not model.plain


# ---------------------------------------------------------------- the link --
def _link(**keys) -> tuple[Link, Simulation]:
    sim = Simulation(resolved(BASE), 1)
    return Link(sim, "hop", keys.pop("latency", 0.0), **keys), sim


@pytest.mark.parametrize("keys, applies", [
    ({}, True),
    ({"latency": 0.001}, False),
    ({"latency": {"dist": "exponential", "mean": 0.001}}, False),
    ({"bandwidth": 1e6}, False),
    ({"loss": 0.1}, False),
])
def test_deliver_at_once_only_for_zero_time_hops(keys, applies):
    link, sim = _link(**keys)
    assert link.deliver_at_once() is applies
    got = []
    link.send(Message("request", 0, "server", 10, 20), got.append)
    assert len(got) == (1 if applies else 0)  # delivered before send returned, or later
    sim.env.run(until=1.0)
    b = sim.bytes
    assert len(got) + b.dropped == 1 and b.sent == 1
    assert b.sent == b.delivered + b.dropped + link.pending()
