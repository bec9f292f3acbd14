"""The notification patterns' fast paths (issue 14) against their general paths.

Where nothing can happen to a message between its send and its arrival (the
receiver is always online, keeps no queue, no records, a FIFO constant-latency
link), SSE and push post their frames (``Link.post``: counted, no arrival
event) and do the client's bookkeeping when the frame leaves; long polling
does a response's arrival and the client's re-poll in one step.  Each test
runs the same small config both ways and requires every metric to be equal
(bit for bit) except ``events``, which must be smaller on the fast path.
"""

from __future__ import annotations

import math

import pytest

import commsim
from commsim.engine import Simulation
from commsim.patterns import registry
from commsim.patterns.notifications import long_polling, streaming
from helpers import notification_cfg, same_but_events


def _run(cfg: dict, fast: bool, monkeypatch, drain: float = 0.0, seed: int = 3):
    monkeypatch.setattr(streaming, "FAST_FRAMES", fast)
    # These tests are about the posting fast path: the run-ahead modes, which
    # take over where they apply, have their own (tests/test_*_ahead.py).
    monkeypatch.setattr(streaming, "RUN_AHEAD", False)
    monkeypatch.setattr(long_polling, "RUN_AHEAD", False)
    monkeypatch.setattr(long_polling, "FAST_REPOLL", fast, raising=False)
    config = commsim.load(cfg).points[0].config
    sim = Simulation(config, seed)
    model = registry()[config["pattern"]].model(sim)
    sim.run()
    if drain:
        sim.env.run(until=sim.end + drain)
    return model, model.metrics()


_equal_but_events = same_but_events
_cfg = notification_cfg


STREAMING_CASES = {
    "sse": _cfg("sse"),
    "sse_broadcasts_jobs": _cfg("sse", workload={"broadcast_rate": 3.0, "job_rate": 0.2,
                                                 "job_duration": "300ms"}),
    "sse_drops_resume": _cfg("sse", sse={"connection_lifetime": {"dist": "exponential",
                                                                 "mean": "1s"},
                                         "retry": "100ms"}),
    "sse_drops_no_resume": _cfg("sse", sse={"connection_lifetime": "700ms", "retry": "50ms",
                                            "resume": False}),
    "sse_frame_cpu": _cfg("sse", server={"cpu_per_frame": "1ms", "cpu_per_kib": "100us", "cores": 1}),
    "push": _cfg("push", rate=5.0, workload={"event_size": {"dist": "exponential",
                                                            "mean": "300B"}}),
    "push_segments": _cfg("push", network={"segment_overhead": "40B", "mss": "100B"},
                          workload={"event_size": "250B"}),
}


def _fast_equals_general(cfg: dict, monkeypatch) -> None:
    fast_model, fast = _run(cfg, True, monkeypatch)
    general_model, general = _run(cfg, False, monkeypatch)
    assert fast_model.fast and not general_model.fast
    _equal_but_events(fast, general)
    assert fast["updates_delivered"] > 0
    assert fast["events"] < general["events"]


@pytest.mark.parametrize("name", sorted(STREAMING_CASES))
def test_streaming_fast_path_equals_general(name, monkeypatch):
    _fast_equals_general(STREAMING_CASES[name], monkeypatch)


@pytest.mark.parametrize("pattern", ["sse", "push"])
def test_streaming_fast_path_equals_general_when_drained(pattern, monkeypatch):
    """A run continued past the end delivers what was in flight the same way."""
    cfg = _cfg(pattern, duration=4.0)
    _, fast = _run(cfg, True, monkeypatch, drain=1.0)
    _, general = _run(cfg, False, monkeypatch, drain=1.0)
    _equal_but_events(fast, general)
    assert fast["updates_pending"] == 0  # everything created in the window arrived


@pytest.mark.parametrize("sections", [
    {"workload": {"online_time": "2s"}},            # availability: arrivals may find it offline
    {"clients": {"service_time": "10ms", "buffer": 2}},  # a client queue
    {"network": {"loss": 0.01}},                     # not a FIFO delay line
    {"network": {"latency": {"dist": "exponential", "mean": "20ms"}}},
])
def test_streaming_fast_path_off_where_arrivals_matter(sections, monkeypatch):
    model, _ = _run(_cfg("push", duration=2.0, **sections), True, monkeypatch)
    assert not model.fast


def test_streaming_fast_path_events_per_update(monkeypatch):
    """SSE at a steady state: 3 events per update on the general path (the
    feed's, the CPU completion, the frame's arrival), 2 on the fast path."""
    cfg = _cfg("sse", count=200, rate=5.0, duration=20.0, warmup=0.0)
    _, fast = _run(cfg, True, monkeypatch)
    _, general = _run(cfg, False, monkeypatch)
    n = fast["updates_created"]
    assert 2.0 <= fast["events"] / n < 2.1
    assert 3.0 <= general["events"] / n < 3.1


LONG_CASES = {
    "long_polling": _cfg("long_polling"),
    "long_polling_timeouts": _cfg("long_polling", rate=0.5, long_polling={"timeout": "300ms"}),
    "long_polling_no_warmup": _cfg("long_polling", warmup=0.0, long_polling={"timeout": "1s"}),
    "long_polling_broadcasts_costs": _cfg(
        "long_polling", workload={"broadcast_rate": 2.0},
        server={"cpu_per_update": "200us", "cpu_per_kib": "100us", "cores": 1}),
    # Few clients, rare updates, short timeout: long gaps without any callback
    # (a lazy re-poll's hold must still time out on time).
    "long_polling_sparse": _cfg("long_polling", count=1, rate=0.1, duration=40.0,
                                long_polling={"timeout": "400ms"}),
    "long_polling_constant_service": _cfg("long_polling", server={"service_time": "1ms"},
                                          workload={"broadcast_rate": 1.0}),
}


@pytest.mark.parametrize("name", sorted(LONG_CASES))
def test_long_polling_fast_path_equals_general(name, monkeypatch):
    _fast_equals_general(LONG_CASES[name], monkeypatch)


def test_long_polling_fast_path_equals_general_when_drained(monkeypatch):
    cfg = _cfg("long_polling", duration=4.0, long_polling={"timeout": "500ms"})
    _, fast = _run(cfg, True, monkeypatch, drain=1.0)
    _, general = _run(cfg, False, monkeypatch, drain=1.0)
    _equal_but_events(fast, general)


@pytest.mark.parametrize("sections", [
    {"workload": {"online_time": "2s"}},
    {"workload": {"job_rate": 0.1}},
    {"network": {"handshake": "tcp"}},
    {"network": {"bandwidth": "100Mbps"}},
])
def test_long_polling_fast_path_off_where_arrivals_matter(sections, monkeypatch):
    model, _ = _run(_cfg("long_polling", duration=2.0, **sections), True, monkeypatch)
    assert not model.fast


def test_long_polling_fast_path_events_per_update(monkeypatch):
    """Long polling, polls answered by updates (long timeout): per response
    the general path has the CPU completion, the response's arrival and the
    re-poll's arrival; the fast path has the CPU completion, and an event
    for the re-poll's arrival only where it will find an update (one came
    while the response was prepared or the re-poll was in flight).  Each
    update has the feed's event on both; answered holds cost no wake-up of
    the timeout FIFO on either."""
    cfg = _cfg("long_polling", count=200, rate=1.0, duration=60.0, warmup=0.0)
    fast_model, fast = _run(cfg, True, monkeypatch)
    _, general = _run(cfg, False, monkeypatch)
    n, u = fast["responses"], fast["updates_created"]
    needy = fast_model.repoll_events
    assert 0 < needy < 0.1 * n  # 1/s x (2 x 20 ms + service): ~5 %
    first = 2 * 200  # each client's start tick and first poll's arrival
    assert abs(general["events"] - (u + 3 * n + first)) < 0.01 * n
    assert abs(fast["events"] - (u + n + needy + first)) < 0.01 * n


@pytest.mark.parametrize("fast", [True, False])
def test_long_polling_timeout_fifo_compaction_changes_nothing(fast, monkeypatch):
    """The timeout FIFO's arrays are compacted as their head is consumed:
    compacting every few entries gives exactly the metrics of never doing so."""
    cfg = _cfg("long_polling", rate=0.5, duration=10.0, long_polling={"timeout": "400ms"})
    monkeypatch.setattr(long_polling, "COMPACT", 10 ** 9)
    _, never = _run(cfg, fast, monkeypatch)
    monkeypatch.setattr(long_polling, "COMPACT", 8)
    model, often = _run(cfg, fast, monkeypatch)
    assert len(model._dl_t) < 200 < never["responses"]
    assert often == never or all(often[k] == never[k] or (
        isinstance(often[k], float) and math.isnan(often[k]) and math.isnan(never[k]))
        for k in often)


def test_link_post_counts_like_send_and_settles_deliveries():
    """Link.post: sent and bytes at once, no event, delivered once the
    arrival time has passed; a message due exactly at the end is in flight;
    a delayed reply across the window's start and decreasing arrivals are
    refused."""
    from commsim.engine import call_at
    from commsim.network import Message, network_link

    config = commsim.load(_cfg("push", duration=1.0, warmup=0.5)).points[0].config
    sim = Simulation(config, 1)
    link = network_link(sim, "probe")  # latency 20 ms, constant
    assert link.can_post()
    seen = {}

    def at(t, fn):
        call_at(sim.env, t, lambda _e: fn())

    def first():
        events = sim.events_scheduled
        seen["arrive"] = link.post(Message("event", 0, 1, 0, 100, 4))
        seen["events"] = sim.events_scheduled - events
        seen["pending"] = link.pending()
        with pytest.raises(ValueError, match="window starts"):
            link.post(Message("request", 1, 0, 50), leaves=0.55)

    def second():
        seen["pending_later"] = link.pending()
        link.post(Message("event", 0, 1, 0, 10), leaves=0.9)   # arrives 0.92
        with pytest.raises(ValueError, match="must not decrease"):
            link.post(Message("event", 0, 1, 0, 10))           # would arrive 0.62

    at(0.49, first)
    at(0.6, second)
    at(sim.end - 0.02, lambda: link.post(Message("event", 0, 1, 0, 7)))  # due at the end
    sim.run()
    assert seen["arrive"] == 0.49 + 0.02 and seen["events"] == 0 and seen["pending"] == 1
    assert seen["pending_later"] == 0
    b = sim.bytes
    assert link.pending() == 1  # the one due exactly at the end
    assert (b.sent, b.delivered) == (3, 2)
    assert b.payload == 10 + 7 and b.framing == 0  # the first one left before the window
