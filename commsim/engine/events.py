"""Scheduling primitives on bare SimPy events: the engine's public API for
what models need (patterns never touch SimPy's private attributes).

Speed notes (see ``../shared/notes``): hot paths schedule bare SimPy events
with a callback (:func:`call_later`) instead of resuming a generator, and keep
the number of pending events small.
"""

from __future__ import annotations

from typing import Any, Callable

import simpy
from simpy.core import NORMAL
from simpy.events import Event


class _Call(Event):
    """An already-triggered event made without ``Event.__init__`` (one call
    fewer per scheduled callback on the hot path)."""

    def __init__(self):  # noqa: D107 - attributes are set by call_later
        pass


def call_later(env: simpy.Environment, delay: float, callback: Callable[[Event], None],
               value: Any = None) -> Event:
    """Schedule ``callback(event)`` after ``delay``; ``event.value`` is ``value``.

    Equivalent to ``env.timeout(delay, value).callbacks.append(callback)``
    without the generator machinery: one heap entry, one call.
    """
    ev = _Call()
    ev.env = env
    ev.callbacks = [callback]
    ev._ok = True
    ev._value = value
    env.schedule(ev, NORMAL, delay)
    return ev


def call_at(env: simpy.Environment, when: float, callback: Callable[[Event], None],
            value: Any = None) -> Event:
    """Schedule ``callback(event)`` at absolute time ``when`` (not before now)."""
    delay = when - env._now
    return call_later(env, delay if delay > 0 else 0.0, callback, value)
