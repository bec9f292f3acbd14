"""Short polling's run-ahead mode (ShortPolling._run_ahead) against the
event-driven path it replaces where it applies: every metric equal (counts,
bytes, CPU time, latency samples in order), except the event count (the
point of the mode) and sums of times: three are added in a different order,
and the CPU's are added per batch with ``sum()`` (sequential on CPython
3.11, compensated from 3.12), so floats may differ in the last bits of a
double (relative 1e-12; a reordered latency sample moves latency_trend by
~0.4 %, a changed service time moves everything far more)."""

from __future__ import annotations

import math

import pytest

from commsim.config import load
from commsim.experiment.runner import simulate
from commsim.patterns.notifications.polling import ShortPolling
from helpers import same_but_events

#: Sums of times added per poll in send order (run ahead) instead of in
#: arrival or finish order (events): equal up to rounding.
REORDERED = {"poll_rtt_mean", "server_jobs_mean", "server_sojourn_mean"}


def _run(cfg: dict, ahead: bool, monkeypatch, seed: int = 7, held: bool = False):
    with monkeypatch.context() as m:
        if not ahead:
            m.setattr(ShortPolling, "_can_run_ahead", lambda self: False)
        if held:  # as if a stop could come at any time: every batch admitted and counted late
            m.setattr(ShortPolling, "_no_stop_before", lambda self: -math.inf)
        r = simulate(load(cfg).points[0].config, seed)
    assert r.model.ahead is ahead
    return r.metrics


def _base(**over) -> dict:
    cfg = {"pattern": "short_polling", "duration": 12, "warmup": 2, "clients": {"count": 400},
           "network": {"latency": "20ms"},
           "server": {"cores": 2, "service_time": {"dist": "exponential", "mean": "1ms"}},
           "workload": {"event_rate": 0.3}}
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


CASES = {
    "stable, two cores": _base(),
    "overloaded (1.2x), one core": _base(server={"cores": 1, "service_time": {"dist": "exponential",
                                                                              "mean": "3ms"}}),
    "no warm-up, long latency, several updates per poll": _base(
        warmup=0, clients={"count": 60}, short_polling={"interval": "0.5s"},
        network={"latency": "150ms"}, workload={"event_rate": 3, "event_size": {
            "dist": "exponential", "mean": "300B"}}),
    "constant service, per-update CPU": _base(server={"cores": 3, "service_time": "2ms",
                                                      "cpu_per_update": "100us"}),
    "zero latency": _base(network={"latency": "0s"}),
}


@pytest.mark.parametrize("held", [False, True], ids=["counted at once", "held"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_run_ahead_equals_the_event_driven_path(name, held, monkeypatch):
    """Where no overload stop can come, batches are admitted and counted at
    once; held, they are admitted once the clock reaches their arrival at
    the server and counted once it has passed their responses: the same
    results either way."""
    cfg = CASES[name]
    ahead, events = _run(cfg, True, monkeypatch, held=held), _run(cfg, False, monkeypatch)
    assert ahead["requests"] > 1000 and ahead["updates_delivered"] > 100
    assert ahead["events"] < events["events"] / 3
    same_but_events(ahead, events, REORDERED)


@pytest.mark.parametrize("over", [
    {"short_polling": {"jitter": "0.1s"}},
    {"network": {"keepalive": False, "handshake": "tcp"}},  # (refused with handshake none)
    {"network": {"handshake": "tcp"}},
    {"network": {"loss": 0.01}},
    {"network": {"bandwidth": "100Mbps"}},
    {"network": {"latency": {"dist": "uniform", "low": "10ms", "high": "30ms"}}},
    {"network": {"segment_overhead": "40B"}},
    {"network": {"idle_timeout": "0.5s", "handshake": "tcp"}},
    {"workload": {"job_rate": 0.01}},
    {"workload": {"broadcast_rate": 1}},
    {"workload": {"online_time": "5s", "offline_time": "1s"}},
    {"topology": {"servers": 2}},
], ids=lambda o: ".".join([*o, *next(iter(o.values()))]))
def test_run_ahead_only_where_exact(over, monkeypatch):
    """Anything that reads or writes the server's state between polls, or
    reorders a hop, keeps the event-driven path."""
    cfg = _base(duration=2, warmup=0, clients={"count": 20}, **over)
    r = simulate(load(cfg).points[0].config, 3)
    assert getattr(r.model, "ahead", False) is False


def test_records_keep_the_event_driven_path():
    cfg = _base(duration=2, warmup=0, clients={"count": 20})
    r = simulate(load(cfg).points[0].config, 3, records=True)
    assert r.model.ahead is False


def test_run_ahead_overload_ends_quickly_and_is_flagged(monkeypatch):
    """2.5x the server's capacity (its queue stays below max_run_queue here):
    the run ends, and the stability checks flag it."""
    from commsim.experiment.stability import reasons

    cfg = _base(duration=10, warmup=1, clients={"count": 2000},
                server={"cores": 1, "service_time": {"dist": "exponential", "mean": "1.25ms"}})
    m = _run(cfg, True, monkeypatch)
    why = " ".join(reasons(m, load(cfg).points[0].config))
    assert "queue growing" in why and "server saturated" in why
    assert m["responses"] < 0.5 * m["requests"]


def test_a_run_continued_past_its_window_fails_instead_of_standing_still():
    cfg = _base(duration=2, warmup=0, clients={"count": 20})
    r = simulate(load(cfg).points[0].config, 3)
    assert r.model.ahead
    with pytest.raises(RuntimeError, match="ran ahead to the end of the window"):
        r.sim.env.run(until=r.sim.end + 1)


#: Server overloaded (4000 polls/s against 1000 or 2000 answers/s) until the
#: run queue reaches max_run_queue, about 0.7 and 1.05 s in.
STOPS = {
    "one core, no warm-up": _base(duration=10, warmup=0, clients={"count": 4000},
                                  max_run_queue=2000, server={"cores": 1}),
    "two cores, warm-up, per-update CPU": _base(
        duration=10, warmup=0.5, clients={"count": 4000}, max_run_queue=2000,
        server={"cores": 2, "cpu_per_update": "100us"}),
}


@pytest.mark.parametrize("name", sorted(STOPS))
def test_run_ahead_stopped_by_overload_counts_nothing_after_the_stop(name, monkeypatch):
    """A run stopped by max_run_queue: run ahead works responses out long
    before they happen (the queue is seconds long), yet counts only what
    happened by its stop, as the event-driven path does.

    The two stops are not the same instant: the event-driven path stops at
    the arrival of the poll that fills the run queue, run ahead at the
    wake-up that admits its batch, the first at or after the batch's first
    arrival (wake-ups are one batch plus at most one gap between polls
    apart, here 1/4000 s): less than two batches (2 ms) apart.  In 2 ms
    4000 polls/s send 8 polls and the server answers at most 4: counts of
    ~700 to ~6000 messages differ by well under 1 %, the RTT mean over ~700
    responses or more by a similar share, while what run ahead counted
    before this fix (every response worked out, e.g. 2698 responses instead
    of 699 and an RTT mean of 1.0 s instead of 0.28 s) is off by far more."""
    cfg = STOPS[name]
    ahead, events = _run(cfg, True, monkeypatch, seed=3), _run(cfg, False, monkeypatch, seed=3)
    assert ahead["stopped"] == events["stopped"] == 1
    assert ahead["stopped_at"] == pytest.approx(events["stopped_at"],
                                                abs=2 * ShortPolling.AHEAD_BATCH)
    assert events["responses"] > 600 and events["in_flight"] > 50
    assert ahead["events"] < events["events"] / 3
    for key in ("requests", "responses", "empty_responses", "sent", "delivered", "bytes_total",
                "updates_created", "poll_rtt_mean", "server_utilization"):
        assert ahead[key] == pytest.approx(events[key], rel=0.01), key
    # 8 polls and 4 responses more or less in flight; updates reach clients
    # at ~30 a second: one or two more or less.
    assert ahead["in_flight"] == pytest.approx(events["in_flight"], abs=12)
    assert ahead["updates_delivered"] == pytest.approx(events["updates_delivered"], abs=2)
    assert ahead["updates_pending"] == pytest.approx(events["updates_pending"], rel=0.01, abs=2)
