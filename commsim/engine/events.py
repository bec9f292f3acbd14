"""The engine's public API over SimPy: the environment, scheduling
primitives on bare events, and re-armable wake-ups.  Models outside
``commsim/engine/`` never touch SimPy's private attributes (``_now``,
``_value``, ``_ok``, ``_queue``, ``_eid`` ...); tests/test_engine_privates.py
fails if one does.

Zero-cost by design (the hot paths of every model read the clock and an
event's value on each callback):

* :class:`Environment` keeps the clock in the plain attribute ``env.now``
  (SimPy's ``now`` is a property: a Python call per read, ~40 ns against
  ~11 ns for an attribute).
* events scheduled by :func:`call_later` / :func:`call_at` carry their value
  in the plain attribute ``event.value`` (SimPy's ``value`` is a property),
  and :class:`Waker` re-schedules one event object without allocating.

Speed notes (see ``../shared/notes``): hot paths schedule bare SimPy events
with a callback (:func:`call_later`) instead of resuming a generator, and keep
the number of pending events small.
"""

from __future__ import annotations

import operator
from heapq import heappop, heappush
from typing import Any, Callable

import simpy
from simpy.core import NORMAL, EmptySchedule, StopSimulation
from simpy.events import URGENT, Event

#: C-level getters of the clock and of any triggered SimPy event's value
#: (``env.now`` / ``event.value`` work everywhere too; with an engine
#: :class:`Environment` and events from :func:`call_later` those are plain
#: attributes and cheaper still).  ``value_of`` is for events SimPy made
#: (timeouts, processes), whose ``value`` is a property.
clock = operator.attrgetter("_now")
value_of = operator.attrgetter("_value")


class Environment(simpy.Environment):
    """SimPy's environment with the clock also in the plain attribute ``now``.

    ``now`` is an ordinary instance attribute (the class attribute below
    shadows SimPy's read-only property), set together with SimPy's own
    ``_now`` in :meth:`step`, the one place time advances.  Everything else
    is SimPy's, so event order and event ids are exactly SimPy's.
    """

    now: float = 0.0

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self.now = self._now

    def step(self) -> None:
        """Process the next event (SimPy 4.1's contract: set the clock, run
        the event's callbacks once, re-raise an undefused failure; a
        :class:`StopSimulation` from a callback keeps the later callbacks for
        when the run resumes)."""
        try:
            t, _, _, event = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        self._now = self.now = t
        callbacks = event.callbacks
        event.callbacks = None
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1:]
            self.schedule(event, URGENT - 1)
            raise
        if not event._ok and not hasattr(event, "_defused"):
            _crash(event)

    def run(self, until: Any = None) -> Any:
        """SimPy's ``run``; ``until`` a time runs one loop with :meth:`step`
        written out (no method call per event).

        The same events in the same order as SimPy: the stop is an urgent
        event scheduled at ``until`` now (one event id, as in SimPy), and the
        run returns when it comes off the heap, the clock at ``until``.
        """
        if until is None or isinstance(until, Event):
            return super().run(until)
        at = until if isinstance(until, int) else float(until)
        if at <= self._now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        stop = Event(self)
        stop._ok = True
        stop._value = None
        self.schedule(stop, URGENT, at - self._now)
        queue = self._queue
        while True:
            try:
                t, _, _, event = heappop(queue)
            except IndexError:
                raise RuntimeError(f'No scheduled events left but "until" event was not '
                                   f"triggered: {stop}") from None
            self._now = self.now = t
            callbacks = event.callbacks
            event.callbacks = None
            if event is stop:
                # SimPy's stop callback re-schedules the (now callback-less)
                # stop event when it ends the run: do the same, so the event
                # count and the heap are SimPy's.
                stop.callbacks = []
                self.schedule(stop, URGENT - 1)
                return None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                _crash(event)


def _crash(event: Event) -> None:
    """Raise a failed, undefused event's exception (a fresh copy whose cause
    is the original, as SimPy does): it ends the run."""
    cause = event._value
    exc = type(cause)(*cause.args)
    exc.__cause__ = cause
    raise exc


def events_scheduled(env: simpy.Environment) -> int:
    """Events scheduled so far in ``env`` (SimPy's event-id counter)."""
    # _eid is an itertools.count; its repr shows the next value without consuming it.
    return int(repr(env._eid)[6:-1])


class _Call(Event):
    """An already-triggered event made without ``Event.__init__`` (one call
    fewer per scheduled callback on the hot path).  Its value is the plain
    attribute ``value`` (shadowing SimPy's property); SimPy's own machinery
    reads it as ``_value`` (a process may still yield such an event)."""

    _ok = True
    value: Any = None

    def __init__(self):  # noqa: D107 - attributes are set by call_later
        pass

    @property
    def _value(self):
        return self.value


def call_later(env: simpy.Environment, delay: float, callback: Callable[[Event], None],
               value: Any = None) -> Event:
    """Schedule ``callback(event)`` after ``delay``; ``event.value`` is ``value``.

    Equivalent to ``env.timeout(delay, value).callbacks.append(callback)``
    without the generator machinery: one heap entry, one call.
    """
    ev = _Call()
    ev.env = env
    ev.callbacks = [callback]
    ev._ok = True  # an instance attribute reads faster in the run loop than the class's
    ev.value = value
    # Environment.schedule written out (SimPy 4.1's: the same heap entry and
    # event id), one Python call fewer per scheduled callback.
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), ev))
    return ev


def call_at(env: simpy.Environment, when: float, callback: Callable[[Event], None],
            value: Any = None) -> Event:
    """Schedule ``callback(event)`` at absolute time ``when`` (not before now)."""
    delay = when - env._now
    return call_later(env, delay if delay > 0 else 0.0, callback, value)


class Waker(_Call):
    """One event object re-scheduled again and again: a node's single
    pending wake-up (a link's delay line, a polling population's next tick).

    SimPy leaves a processed event alone (it only sets its ``callbacks`` to
    ``None``), so re-arming it needs fresh callbacks and a heap entry: no
    allocation per wake-up.  ``callback(event)`` runs at each wake-up; arm
    the waker again only after it fired (one pending wake-up at a time: it
    is the caller's job not to arm it twice).  Scheduling is exactly
    :func:`call_later`'s (same priority, one event id per arming), so
    replacing a ``call_later`` chain by a waker keeps the event order.
    """

    def __init__(self, env: simpy.Environment, callback: Callable[[Event], None]):
        self.env = env
        self.callbacks = None
        self._ok = True
        # SimPy never mutates a callbacks list it processed (it replaces the
        # event's with None), so one list object serves every arming.
        self._callbacks = [callback]

    def arm(self, delay: float) -> None:
        """Wake up after ``delay`` (a negative delay counts as 0)."""
        self.callbacks = self._callbacks
        env = self.env  # Environment.schedule written out, as in call_later
        heappush(env._queue, (env._now + (delay if delay > 0 else 0.0), NORMAL, next(env._eid), self))

    def arm_at(self, when: float) -> None:
        """Wake up at absolute time ``when`` (now if ``when`` has passed)."""
        self.callbacks = self._callbacks
        env = self.env
        delay = when - env._now
        heappush(env._queue, (env._now + (delay if delay > 0 else 0.0), NORMAL, next(env._eid), self))
