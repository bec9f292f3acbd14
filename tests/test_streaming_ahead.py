"""SSE's and push's run-ahead mode (_Streaming._run_ahead) against the
event-driven paths it replaces where it applies: every metric equal (counts,
bytes, CPU time, latency samples in order of arrival), except the event count
(the point of the mode) and sums of times that are added in another order
(the CPU's wait, sojourn and jobs present: per job as admitted, or per batch
with ``sum()``), which may differ in the last bits of a double (relative
1e-12; a changed service time or a reordered latency sample moves them far
more: latency_trend by ~0.4 %)."""

from __future__ import annotations

import pytest

import commsim
from commsim.config import load
from commsim.engine import Simulation
from commsim.experiment.runner import simulate
from commsim.patterns import registry
from commsim.patterns.notifications import streaming
from helpers import notification_cfg, same_but_events, stops_exactly

#: Sums of times added in admission order (run ahead) instead of in finish
#: order (events): equal up to rounding.
REORDERED = {"server_jobs_mean", "server_sojourn_mean", "wait_mean"}


def _run(cfg: dict, ahead: bool, monkeypatch, seed: int = 3, fast: bool = True):
    with monkeypatch.context() as m:
        m.setattr(streaming, "RUN_AHEAD", ahead)
        m.setattr(streaming, "FAST_FRAMES", fast)
        config = commsim.load(cfg).points[0].config
        sim = Simulation(config, seed)
        model = registry()[config["pattern"]].model(sim)
    sim.run()
    assert model.ahead is ahead
    return model.metrics()


_cfg = notification_cfg


CASES = {
    "sse": _cfg("sse"),
    "sse, no warm-up": _cfg("sse", warmup=0.0),
    "sse, resume off": _cfg("sse", sse={"resume": False}),
    "sse, CPU per frame and per KiB, one core": _cfg(
        "sse", server={"cpu_per_frame": "1ms", "cpu_per_kib": "100us", "cores": 1}),
    "sse, shorter than the connects (0.5 s)": _cfg("sse", duration=0.5, warmup=0.0),
    "sse, warm-up inside the connects": _cfg("sse", warmup=0.4, duration=3.0),
    "sse, overloaded (1.8x), one core": _cfg("sse", count=200, rate=3.0, server={"cores": 1}),
    "sse, zero latency": _cfg("sse", latency=0.0),
    "sse, long latency": _cfg("sse", latency=0.4, duration=4.0),
    "sse, constant service": _cfg("sse", server={"service_time": "1ms"}),
    "push": _cfg("push", rate=5.0, workload={"event_size": {"dist": "exponential",
                                                            "mean": "300B"}}),
    "push, no warm-up": _cfg("push", rate=5.0, warmup=0.0),
    "push, connect CPU": _cfg("push", server={"cpu_per_request": "3ms"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_ahead_equals_the_event_driven_paths(name, monkeypatch):
    cfg = CASES[name]
    ahead = _run(cfg, True, monkeypatch)
    posted = _run(cfg, False, monkeypatch)                 # frames posted, CPU events
    general = _run(cfg, False, monkeypatch, fast=False)    # every frame an arrival event
    assert ahead["updates_delivered"] > 10
    assert ahead["events"] < posted["events"] / 3
    same_but_events(ahead, posted, REORDERED)
    same_but_events(ahead, general, REORDERED)


def test_a_case_where_updates_wait_for_their_stream(monkeypatch):
    """The cases above exercise what they claim: SSE's resume replays updates
    that came before a stream opened, push loses them, some frames are still
    on their way at the end, and the one-core case queues."""
    sse = _run(CASES["sse, no warm-up"], True, monkeypatch)
    push = _run(CASES["push, no warm-up"], True, monkeypatch)
    assert sse["missed"] == 0 and push["missed"] > 0
    assert sse["server_cpu_wasted_s"] < push["server_cpu_wasted_s"]  # a connect with a replay is useful
    assert push["in_flight"] > 0 and push["updates_pending"] > 0
    assert _run(CASES["sse, overloaded (1.8x), one core"], True, monkeypatch)["wait_mean"] > 0.01


@pytest.mark.parametrize("pattern,over", [
    ("sse", {"sse": {"connection_lifetime": "2s"}}),
    ("sse", {"network": {"handshake": "tcp"}}),
    ("sse", {"network": {"loss": 0.01}}),
    ("sse", {"network": {"bandwidth": "100Mbps"}}),
    ("sse", {"network": {"latency": {"dist": "uniform", "low": "10ms", "high": "30ms"}}}),
    ("sse", {"network": {"segment_overhead": "40B"}}),
    ("sse", {"workload": {"job_rate": 0.01}}),
    ("sse", {"workload": {"broadcast_rate": 1}}),
    ("sse", {"workload": {"online_time": "5s", "offline_time": "1s"}}),
    ("sse", {"topology": {"servers": 2}}),
    ("push", {"clients": {"buffer": 2, "service_time": "1ms"}}),
    ("push", {"network": {"handshake": "tls1.3"}}),
], ids=lambda o: o if isinstance(o, str) else ".".join([*o, *next(iter(o.values()))]))
def test_run_ahead_only_where_exact(pattern, over):
    """Anything that acts on a frame's arrival, reorders a hop or brings the
    server other jobs keeps the event-driven path."""
    cfg = _cfg(pattern, duration=2, warmup=0, count=20, **over)
    r = simulate(load(cfg).points[0].config, 3)
    assert getattr(r.model, "ahead", False) is False
    assert streaming.streams_ahead(load(cfg).points[0].config) is False or \
        "clients" in over  # the client queue is checked on the config too
    assert streaming.streams_ahead(load(_cfg(pattern)).points[0].config) is True


def test_records_keep_the_event_driven_path():
    cfg = _cfg("sse", duration=2, warmup=0, count=20)
    r = simulate(load(cfg).points[0].config, 3, records=True)
    assert r.model.ahead is False


def test_a_run_continued_past_its_window_fails_instead_of_standing_still():
    cfg = _cfg("push", duration=2, warmup=0, count=20)
    r = simulate(load(cfg).points[0].config, 3)
    assert r.model.ahead
    with pytest.raises(RuntimeError, match="ran ahead to the end of the window"):
        r.sim.env.run(until=r.sim.end + 1)


@pytest.mark.parametrize("pattern,count,rate,cores,service,limit", [
    ("sse", 1000, 3.0, 1, "1ms", 2000),   # 3x capacity, stops after the connects
    ("push", 1000, 3.0, 1, "1ms", 2000),
    ("sse", 2000, 0.5, 1, "2ms", 300),    # stops while the streams open
    ("sse", 300, 3.0, 2, "2.5ms", 500),   # two cores
])
def test_run_ahead_overload_stops_where_the_event_driven_path_stops(
        pattern, count, rate, cores, service, limit, monkeypatch):
    """Overloaded: the run queue reaches max_run_queue and the run stops.
    Near the limit a batch ends before any job that could fill the queue and
    the next wake-up is at its arrival, so the stop is the event-driven
    one: the same instant, counts, bytes and latencies; only what was queued
    then is never answered, on both paths."""
    from commsim.experiment.stability import reasons

    cfg = _cfg(pattern, count=count, rate=rate, duration=20.0, warmup=0.0 if cores == 1 else 1.0,
               server={"cores": cores, "service_time": {"dist": "exponential", "mean": service}})
    cfg["max_run_queue"] = limit
    config = load(cfg).points[0].config
    ahead = simulate(config, 3).metrics
    # The reference is the general path: the posting fast path counts a
    # frame's arrival when it leaves, against the end as it was then.
    monkeypatch.setattr(streaming, "RUN_AHEAD", False)
    monkeypatch.setattr(streaming, "FAST_FRAMES", False)
    events = simulate(config, 3).metrics
    assert events["updates_created"] - events["updates_delivered"] > limit / 2
    # A job in service at the stop (one per core), its sojourn under 3x the
    # mean, moves the sojourn mean by under 3 cores / n and the jobs present
    # by less.
    stops_exactly(ahead, events, REORDERED, 3 * cores / events["responses"])
    assert "stopped" in " ".join(reasons(ahead, config))


def test_run_ahead_events_per_update(monkeypatch):
    """A wake-up per AHEAD_BATCH of simulated time at most, not 2 per update."""
    cfg = _cfg("sse", count=200, rate=5.0, duration=20.0, warmup=0.0)
    m = _run(cfg, True, monkeypatch)
    assert m["events"] <= 20.0 / streaming._Streaming.AHEAD_BATCH + 50
    assert m["events"] < 0.2 * m["updates_created"]


def test_feed_taken_in_pieces_and_put_back_is_the_same_sequence():
    """EventFeed.take_before with ``most`` and put_back (a batch cut short)
    give the updates of one take_before, in order, across block refills."""
    import random

    from commsim.engine import Simulation
    from commsim.workload import BLOCK, EventFeed

    config = load({"pattern": "sse", "clients": {"count": 10},
                   "workload": {"event_rate": 300}}).points[0].config

    def feed():
        return EventFeed(Simulation(config, 1), 10, config["workload"])

    whole = feed().take_before(100.0)
    assert len(whole[0]) > 3 * BLOCK
    rng = random.Random(3)
    f, got, t = feed(), ([], [], []), 0.0
    while t < 100.0:
        t = min(100.0, t + rng.random() * 0.3)
        part = f.take_before(t, rng.choice([None, 1, 7, 500, 20000]))
        keep = rng.randint(0, len(part[0]))
        if rng.random() < 0.4:
            f.put_back(*(x[keep:] for x in part))
            part = tuple(x[:keep] for x in part)
        for mine, taken in zip(got, part):
            mine += taken
    for mine, taken in zip(got, f.take_before(100.0)):
        mine += taken
    assert got == whole
