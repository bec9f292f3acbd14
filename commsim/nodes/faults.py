"""Crashes and restarts: the one fault-injection mechanism of every pattern.

A component that can fail (a server, the broker, a consumer) is a
:class:`Crashable`.  It is *up* or *down* and carries an **epoch**, a counter
bumped at every crash and every restart (and by :meth:`Crashable.invalidate`,
a connection reset that voids outstanding work without taking the component
down).  Work started by the component takes the epoch as a token; when the
work completes it checks :meth:`Crashable.current` and discards itself if the
component crashed (or restarted) meanwhile.  That is the whole *epoch guard*:
a crash drops exactly what was in flight at its instant.

When a component fails and how long it stays down is a :class:`FaultPlan`,
shared by every component it governs:

* scheduled crashes: :meth:`Crashable.crash_at` (absolute simulated times,
  warm-up included);
* random crashes: up-times drawn from ``uptime`` (MTBF; drawn when the
  component comes up, so a crash schedule that restarts re-arms it);
* down-times from ``downtime`` (MTTR: a constant, a sampler, or ``None`` for
  "never restarts").

A crash while down does nothing; a random crash armed in an earlier epoch
does nothing (the component has crashed or restarted since).

Order of a crash, fixed because it decides ties in the event queue:
``up = False``, epoch + 1, the window's crash counter, the component's
:meth:`Crashable.on_crash` hook, then the restart is scheduled.  A restart:
``up = True``, epoch + 1, :meth:`Crashable.on_restart`, then the next random
crash is armed.
"""

from __future__ import annotations

from typing import Callable

from commsim.engine import Counter, call_at, call_later

Sampler = Callable[[], float]


class FaultPlan:
    """When the components it governs fail and how long they stay down.

    Parameters
    ----------
    sim:
        The :class:`~commsim.engine.Simulation`.
    uptime:
        Sampler of up-times between random crashes (MTBF), or ``None``: no
        random crashes.
    downtime:
        Time a crashed component takes to restart: a number, a sampler, or
        ``None`` (it never restarts).
    """

    __slots__ = ("sim", "env", "uptime", "_down", "_down_const")

    def __init__(self, sim, uptime: Sampler | None = None,
                 downtime: float | Sampler | None = None):
        self.sim = sim
        self.env = sim.env
        self.uptime = uptime
        if downtime is None or callable(downtime):
            self._down = downtime
            self._down_const = None
        else:
            self._down = None
            self._down_const = float(downtime)

    @classmethod
    def from_config(cls, sim, stream: str, mtbf=None, mttr=None) -> "FaultPlan":
        """A plan from configuration values: ``mtbf`` a bare mean (exponential
        up-times) or a distribution spec, on stream ``<stream>/mtbf``; ``mttr``
        a distribution spec on ``<stream>/mttr``, or ``None``."""
        uptime = None
        if mtbf is not None:
            if not isinstance(mtbf, dict):  # a bare value: the mean of exponential up-times
                mtbf = {"dist": "exponential", "mean": mtbf}
            uptime = sim.sampler(mtbf, f"{stream}/mtbf")
        downtime = sim.sampler(mttr, f"{stream}/mttr") if mttr is not None else None
        return cls(sim, uptime, downtime)

    @property
    def restarts(self) -> bool:
        return self._down is not None or self._down_const is not None

    def downtime(self) -> float | None:
        if self._down_const is not None:
            return self._down_const
        return self._down() if self._down is not None else None


class Crashable:
    """Mixin of a component that can crash and restart (see the module docstring).

    A subclass calls :meth:`init_faults` in its constructor and overrides the
    hooks :meth:`on_crash` and :meth:`on_restart`.  It reads ``self.up`` and
    ``self.epoch`` directly (plain attributes: no cost on hot paths).
    """

    __slots__ = ("up", "epoch", "_crashes", "faults")

    def init_faults(self, plan: FaultPlan | None, arm: bool = True) -> None:
        """Start up, epoch 0; with ``arm`` and a plan with up-times, arm the
        first random crash now."""
        self.up = True
        self.epoch = 0
        # crashes inside the measurement window (the recorder's Counter applies it)
        self._crashes = Counter(plan.sim) if plan is not None else None
        self.faults = plan
        if arm:
            self.arm()

    @property
    def crashes(self) -> int:
        """Crashes inside the measurement window."""
        return self._crashes.n if self._crashes is not None else 0

    # ----------------------------------------------------------- hooks --
    def on_crash(self) -> None:
        """Called at a crash, after ``up`` and ``epoch`` changed."""

    def on_restart(self) -> None:
        """Called at a restart, after ``up`` and ``epoch`` changed."""

    # ---------------------------------------------------------- guards --
    def current(self, epoch: int) -> bool:
        """Whether work started at ``epoch`` still counts: the component is up
        and has neither crashed nor restarted since."""
        return self.up and epoch == self.epoch

    def invalidate(self) -> None:
        """Void every outstanding token without going down (e.g. the
        component's connection was reset)."""
        self.epoch += 1

    # -------------------------------------------------------- schedule --
    def crash_at(self, times) -> None:
        """Crash at each of the absolute simulated ``times`` (a number or an iterable)."""
        if isinstance(times, (int, float)):
            times = (times,)
        plan = self.faults
        for t in sorted(times):
            call_at(plan.env, t, self._scheduled_crash)

    def arm(self) -> None:
        """Arm the next random crash (if the plan has up-times)."""
        plan = self.faults
        if plan is not None and plan.uptime is not None:
            call_later(plan.env, plan.uptime(), self._random_crash, self.epoch)

    def _scheduled_crash(self, _event) -> None:
        self.crash()

    def _random_crash(self, event) -> None:
        if self.current(event.value):
            self.crash()

    # ---------------------------------------------------------- events --
    def crash(self) -> bool:
        """Crash now (nothing happens while already down); returns whether it crashed."""
        if not self.up:
            return False
        self.up = False
        self.epoch += 1
        plan = self.faults
        self._crashes.add()
        self.on_crash()
        if plan.restarts:
            call_later(plan.env, plan.downtime(), self._restart_event, self.epoch)
        return True

    def _restart_event(self, event) -> None:
        if not self.up and event.value == self.epoch:
            self.restart()

    def restart(self) -> None:
        """Come back up now (nothing happens while up)."""
        if self.up:
            return
        self.up = True
        self.epoch += 1
        self.on_restart()
        self.arm()
