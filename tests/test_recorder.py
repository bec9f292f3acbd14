"""The recorder's instruments on their own (commsim.engine.recorder), with
exact outcomes."""

import pytest

from commsim.engine import Simulation, call_later
from commsim.network.http import Tier


def _sim(warmup=1.0, duration=4.0):
    return Simulation({"warmup": warmup, "duration": duration}, 1)


def _at(sim, t, fn):
    call_later(sim.env, t, lambda _e: fn())


def test_level_peak_is_over_the_window_not_the_warmup():
    # 5 during the warm-up (0.5-0.8), 2 when the window opens at 1, 3 over
    # [2, 3), 1 to the end (5): peak 3, not 5; area 2*1 + 3*1 + 1*2 = 7.
    sim = _sim()
    lv = sim.recorder.level("q")
    _at(sim, 0.5, lambda: lv.set(5))
    _at(sim, 0.8, lambda: lv.set(2))
    _at(sim, 2.0, lambda: lv.add(1))
    _at(sim, 3.0, lambda: lv.add(-2))
    sim.run()
    assert lv.peak == 3
    assert lv.area == 7.0 and lv.mean == 7.0 / 4.0


def test_a_value_held_from_the_warmup_counts_as_the_window_peak():
    sim = _sim()
    lv = sim.recorder.level("q")
    _at(sim, 0.2, lambda: lv.set(4))  # held through the whole window
    sim.run()
    assert lv.peak == 4 and lv.mean == 4.0


def test_counter_counts_only_inside_the_window():
    sim = _sim()
    c = sim.recorder.counter("x")
    for t in (0.5, 0.99, 1.0, 2.5, 4.9):
        _at(sim, t, c.add)
    _at(sim, 3.0, lambda: c.add(10))
    sim.run()
    assert c.n == 13  # 1.0, 2.5, 4.9 and the 10 at 3.0
    assert sim.recorder.counter("x") is c


def test_samples_keep_operations_started_and_ended_inside_the_window():
    sim = _sim()
    s = sim.recorder.sample("latency")
    _at(sim, 1.5, lambda: s.record(0.5))  # started in the warm-up: completed, not sampled
    _at(sim, 2.0, lambda: s.record(1.25))
    sim.run()
    assert s.completed == 2 and s.values == [0.75]


def test_series_samples_every_period_from_zero():
    sim = _sim(warmup=0.0, duration=1.0)
    n = [0]
    _at(sim, 0.45, lambda: n.__setitem__(0, 7))
    ser = sim.recorder.every("n", 0.25, lambda: n[0])
    sim.run()
    assert ser.t == [0.0, 0.25, 0.5, 0.75]
    assert ser.values == [0, 0, 7, 7]


def test_operations_are_one_record_each():
    sim = _sim()
    ops = sim.recorder.ops("calls")
    ops.record(1, 0.5, 0.75)
    ops.record(2, 1.0, 3.0)
    assert len(ops) == 2 and list(ops.end) == [0.75, 3.0] and list(ops.kind) == [1, 2]


def test_a_level_name_is_unique():
    sim = _sim()
    sim.recorder.level("a")
    with pytest.raises(ValueError):
        sim.recorder.level("a")


def test_http_tier_peak_is_the_most_open_at_once_inside_the_window():
    # Ten connections open in the warm-up and close before the window; two
    # open inside it: peak 2 (it was 10 over the whole run).
    sim = _sim()
    tier = Tier(sim, "client")
    for _ in range(10):
        _at(sim, 0.1, tier.open)
    _at(sim, 0.5, lambda: tier.closed(10))
    _at(sim, 2.0, tier.open)
    _at(sim, 2.5, tier.open)
    sim.run()
    assert tier.peak == 2 and tier.opened == 2 and tier.open_now == 2
