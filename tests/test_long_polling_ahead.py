"""Long polling's run-ahead mode (LongPolling._run_ahead) against the
event-driven paths it replaces where it applies: every metric equal (counts,
bytes, CPU time, connections held, latency samples in order of arrival),
except the event count (the point of the mode) and sums of times added in
another order (round trips per batch as responses are counted, not as they
leave; the CPU's wait, sojourn and jobs present per job as admitted), which
may differ in the last bits of a double (relative 1e-12; a changed service
time or a reordered latency sample moves them far more: latency_trend by
~0.4 %)."""

from __future__ import annotations

import pytest

import commsim
from commsim.config import load
from commsim.engine import Simulation
from commsim.experiment.runner import simulate
from commsim.patterns import registry
from commsim.patterns.notifications import long_polling
from helpers import notification_cfg, same_but_events, stops_exactly

#: Sums of times added in another order (see the module docstring).
REORDERED = {"poll_rtt_mean", "server_jobs_mean", "server_sojourn_mean", "wait_mean"}


def _run(cfg: dict, ahead: bool, monkeypatch, seed: int = 3, fast: bool = True):
    with monkeypatch.context() as m:
        m.setattr(long_polling, "RUN_AHEAD", ahead)
        m.setattr(long_polling, "FAST_REPOLL", fast)
        config = commsim.load(cfg).points[0].config
        sim = Simulation(config, seed)
        model = registry()[config["pattern"]].model(sim)
    sim.run()
    assert model.ahead is ahead
    return model.metrics()


def _cfg(**kw) -> dict:
    return notification_cfg("long_polling", **kw)


CASES = {
    "default": _cfg(),
    "no warm-up": _cfg(warmup=0.0),
    "timeouts (300 ms, 0.7 updates/s)": _cfg(rate=0.7, long_polling={"timeout": "300ms"}),
    "mostly timeouts (2 clients)": _cfg(count=2, rate=0.03, duration=60.0, warmup=0.0,
                                        long_polling={"timeout": "300ms"}),
    "300 clients, 2 s timeout, 40 s": _cfg(count=300, rate=0.7, duration=40.0, warmup=3.0,
                                           long_polling={"timeout": "2s"}),
    "CPU per update and per KiB, one core": _cfg(
        server={"cpu_per_update": "1ms", "cpu_per_kib": "100us", "cores": 1}),
    "overloaded (1.2x), one core": _cfg(count=200, rate=3.0, server={"cores": 1}),
    "constant service": _cfg(server={"service_time": "1ms"}),
    "long latency (400 ms)": _cfg(latency=0.4, duration=6.0),
    "round trip shorter than a batch (1 ms)": _cfg(latency=0.0005),
    "shorter than the first polls (0.5 s)": _cfg(duration=0.5, warmup=0.0),
    "warm-up inside the first polls": _cfg(warmup=0.4, duration=3.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_ahead_equals_the_event_driven_paths(name, monkeypatch):
    cfg = CASES[name]
    ahead = _run(cfg, True, monkeypatch)
    lazy = _run(cfg, False, monkeypatch)                 # the fast (lazy re-poll) path
    general = _run(cfg, False, monkeypatch, fast=False)  # every message an arrival event
    assert ahead["events"] <= lazy["events"]
    same_but_events(ahead, lazy, REORDERED)
    same_but_events(ahead, general, REORDERED)


def test_the_cases_exercise_what_they_claim(monkeypatch):
    """Timeouts (wasted CPU, empty responses), held connections, messages in
    flight at the end, a queue at the CPU, and far fewer events where there
    are many updates."""
    m = _run(CASES["timeouts (300 ms, 0.7 updates/s)"], True, monkeypatch)
    assert m["empty_responses"] > 100 and m["server_cpu_wasted_s"] > 0
    assert m["connections_max"] > 30 and m["in_flight"] > 0
    assert _run(CASES["mostly timeouts (2 clients)"], True, monkeypatch)["empty_responses"] > 300
    over = _run(CASES["overloaded (1.2x), one core"], True, monkeypatch)
    assert over["wait_mean"] > 0.01
    many = CASES["300 clients, 2 s timeout, 40 s"]
    assert _run(many, True, monkeypatch)["events"] < _run(many, False, monkeypatch)["events"] / 3


@pytest.mark.parametrize("over", [
    {"network": {"latency": "0s"}},
    {"network": {"handshake": "tcp"}},
    {"network": {"loss": 0.01}},
    {"network": {"bandwidth": "100Mbps"}},
    {"network": {"latency": {"dist": "uniform", "low": "10ms", "high": "30ms"}}},
    {"network": {"segment_overhead": "40B"}},
    {"workload": {"job_rate": 0.01}},
    {"workload": {"broadcast_rate": 1}},
    {"workload": {"online_time": "5s", "offline_time": "1s"}},
    {"topology": {"servers": 2}},
], ids=lambda o: ".".join([*o, *next(iter(o.values()))]))
def test_run_ahead_only_where_exact(over):
    """Anything that acts on a message's arrival, reorders a hop, brings the
    server other work, or leaves no round trip to bound a batch keeps the
    event-driven path."""
    cfg = _cfg(duration=2, warmup=0, count=20, **over)
    config = load(cfg).points[0].config
    r = simulate(config, 3)
    assert r.model.ahead is False
    assert long_polling.polls_ahead(config) is False
    assert long_polling.polls_ahead(load(_cfg()).points[0].config) is True


def test_records_keep_the_event_driven_path():
    r = simulate(load(_cfg(duration=2, warmup=0, count=20)).points[0].config, 3, records=True)
    assert r.model.ahead is False


def test_a_run_continued_past_its_window_fails_instead_of_standing_still():
    r = simulate(load(_cfg(duration=2, warmup=0, count=20)).points[0].config, 3)
    assert r.model.ahead
    with pytest.raises(RuntimeError, match="ran ahead to the end of the window"):
        r.sim.env.run(until=r.sim.end + 1)


@pytest.mark.parametrize("count,rate,cores,service,limit,timeout,warmup", [
    (1000, 3.0, 1, "2ms", 600, "30s", 0.0),    # stops while the first polls arrive
    (3000, 1.0, 2, "2ms", 900, "30s", 0.5),    # two cores, after the window opens
    (1000, 0.2, 1, "3ms", 400, "300ms", 0.0),  # mostly timeouts
])
def test_run_ahead_overload_stops_where_the_event_driven_path_stops(
        count, rate, cores, service, limit, timeout, warmup, monkeypatch):
    """Overloaded: the run queue reaches max_run_queue and the run stops (a
    client has one poll at the server at most, so the queue is bounded by
    the clients and the limits are below them).  Near the limit a batch
    ends before any answer that could fill the queue and the next wake-up is
    at its time, so the stop is the event-driven one: the same instant,
    counts, bytes and latencies."""
    cfg = _cfg(count=count, rate=rate, duration=20.0, warmup=warmup,
               long_polling={"timeout": timeout},
               server={"cores": cores, "service_time": {"dist": "exponential", "mean": service}})
    cfg["max_run_queue"] = limit
    config = load(cfg).points[0].config
    ahead = simulate(config, 3).metrics
    # The reference is the general path: the lazy fast path counts a
    # response's updates when it leaves, against the end as it was then.
    monkeypatch.setattr(long_polling, "RUN_AHEAD", False)
    monkeypatch.setattr(long_polling, "FAST_REPOLL", False)
    events = simulate(config, 3).metrics
    assert events["requests"] - events["responses"] > limit / 2
    # One job in service per core at the stop (see helpers.stops_exactly).
    stops_exactly(ahead, events, REORDERED, 3 * cores / events["responses"])


def test_run_ahead_events(monkeypatch):
    """A wake-up per AHEAD_BATCH of simulated time at most, not 2 per update."""
    cfg = _cfg(count=200, rate=5.0, duration=20.0, warmup=0.0)
    m = _run(cfg, True, monkeypatch)
    assert m["events"] <= 20.0 / long_polling.LongPolling.AHEAD_BATCH + 50
    assert m["events"] < 0.2 * m["updates_created"]
