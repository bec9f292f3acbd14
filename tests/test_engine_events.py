"""The engine's public API over SimPy (commsim.engine.events), with exact
outcomes: the plain-attribute clock, call_later's event values, Waker."""

import pytest
import simpy

from commsim.engine import Environment, Waker, call_at, call_later
from commsim.engine.events import events_scheduled


def _trace(env_cls):
    """A mixed SimPy workload (processes, timeouts, a resource, callbacks)
    recording (time, what) in processing order."""
    env = env_cls()
    log = []
    res = simpy.Resource(env, 1)

    def user(i):
        with res.request() as req:
            yield req
            log.append((env.now, "got", i))
            yield env.timeout(0.5 + i * 0.1)
        log.append((env.now, "left", i))

    for i in range(4):
        env.process(user(i))
    for t in (0.25, 0.5, 0.5, 1.7):
        call_at(env, t, lambda e: log.append((env.now, "call", e.value)), t)
    env.run(until=3)
    return log, events_scheduled(env), env.now


def test_environment_processes_events_exactly_as_simpy():
    assert _trace(Environment) == _trace(simpy.Environment)


def test_now_is_a_plain_attribute_equal_to_simpys_clock():
    env = Environment(2.0)
    assert env.now == 2.0 and "now" in vars(env)
    seen = []
    call_later(env, 1.5, lambda e: seen.append((env.now, simpy.Environment.now.fget(env))))
    env.run()
    assert seen == [(3.5, 3.5)]


def test_a_failed_event_still_crashes_the_run():
    env = Environment()

    def boom():
        yield env.timeout(1)
        raise KeyError("x")

    env.process(boom())
    with pytest.raises(KeyError):
        env.run()
    assert env.now == 1


def test_a_failed_event_crashes_a_run_until_a_time_too():
    env = Environment()
    ev = env.event()
    call_later(env, 1, lambda e: ev.fail(ValueError("bad")))
    with pytest.raises(ValueError, match="bad"):
        env.run(until=5)
    assert env.now == 1


def test_run_until_stops_at_the_time_and_resumes_like_simpy():
    def trace(env_cls):
        env = env_cls()
        log = []
        for t in (1.0, 2.0, 2.0, 3.5):
            call_at(env, t, lambda e: log.append(env.now))
        env.run(until=2.0)  # urgent stop: the events at 2.0 stay for later
        first = (list(log), env.now)
        env.run(until=10)
        return first, log, env.now, events_scheduled(env)

    assert trace(Environment) == trace(simpy.Environment)
    assert trace(Environment)[0] == ([1.0], 2.0)


def test_call_later_value_is_seen_by_callbacks_and_processes():
    env = Environment()
    got = []
    ev = call_later(env, 2, lambda e: got.append(e.value), "v")

    def waiter():
        got.append((yield ev))

    env.process(waiter())
    env.run()
    assert got == ["v", "v"] and ev.ok and ev.triggered and ev.value == "v"


def test_waker_reuses_one_event_and_keeps_call_laters_order():
    env = Environment()
    log = []

    def wake(event):
        log.append((env.now, event is waker))
        if len(log) < 4:
            waker.arm(1.0)

    waker = Waker(env, wake)
    waker.arm_at(0.5)
    # Same instant: the event scheduled first runs first.  call_at's at 1.5
    # was scheduled (at 0) before the re-arming at 0.5; the re-arming at 1.5
    # before the call_at scheduled at 2.0 for 2.5.
    call_at(env, 1.5, lambda e: log.append((env.now, "early")))
    call_at(env, 2.0, lambda e: call_at(env, 2.5, lambda e: log.append((env.now, "late"))))
    env.run()
    assert log == [(0.5, True), (1.5, "early"), (1.5, True), (2.5, True), (2.5, "late")]
    assert events_scheduled(env) == 6  # one event id per arming (3), one per call_at (3)


def test_waker_arm_at_a_past_time_wakes_now():
    env = Environment()
    log = []
    waker = Waker(env, lambda e: log.append(env.now))
    call_at(env, 2.0, lambda e: waker.arm_at(1.0))
    env.run()
    assert log == [2.0]
