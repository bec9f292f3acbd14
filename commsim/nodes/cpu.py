"""A node's CPU: ``cores`` identical cores serving one FIFO run queue.

Model and assumptions
---------------------
* A job asks for ``work`` seconds of one core.  If a core is free it starts at
  once, otherwise it waits in FIFO order (an M/G/c queue when arrivals are
  Poisson).  No preemption, no context-switch cost unless a pattern adds it
  as a job of its own.
* Busy time is accounted by purpose, useful or wasted, in the node's
  :class:`~commsim.accounting.cpu.CpuAccount`.  Service is non-preemptive, so
  a job's busy interval is known when it starts and is accounted then,
  clipped to the window (a job still running when the window closes counts
  up to the end).
* The CPU records each job's wait in queue and the time-average number of
  jobs present (queued plus in service) over the window, for Little's law.

Implementation: callback-driven (one scheduled event per job: its
completion), with a deque as run queue so that long queues stay O(1).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from commsim.accounting.cpu import CpuAccount
from commsim.engine.simulation import call_later
from commsim.metrics.collect import Level


class _Job:
    __slots__ = ("work", "purpose", "wasted", "done", "token", "submitted", "started")

    def __init__(self, work, purpose, wasted, done, token, submitted):
        self.work = work
        self.purpose = purpose
        self.wasted = wasted
        self.done = done
        self.token = token
        self.submitted = submitted
        self.started = 0.0


class Cpu:
    """``cores`` cores and a FIFO run queue, with accounting.

    ``submit(work, purpose, done, token)`` runs ``done(token, wait)`` when
    the job completes, where ``wait`` is the time it spent queued.
    """

    def __init__(self, sim, name: str, cores: int):
        self.sim = sim
        self.env = sim.env
        self.name = name
        self.cores = cores
        self.free = cores
        self.queue: deque = deque()
        self.account = CpuAccount(sim, name, cores)
        # Jobs present (queued + in service) over time, and wait statistics.
        self.present = Level(sim)
        self.wait_sum = 0.0
        self.waits = 0
        self.sojourn_sum = 0.0
        self.completed = 0

    def submit(self, work: float, purpose: str, done: Callable[[Any, float], None],
               token: Any = None, wasted: bool = False) -> None:
        now = self.env.now
        self.present.add(1)
        job = _Job(work, purpose, wasted, done, token, now)
        if self.free:
            self.free -= 1
            self._start(job, now)
        else:
            self.queue.append(job)

    # ------------------------------------------------------------------
    def _start(self, job: _Job, now: float) -> None:
        job.started = now
        # by hand: per job (hot), a sum and a count (Samples would keep every wait)
        if job.submitted >= self.sim.start:
            self.wait_sum += now - job.submitted
            self.waits += 1
        # Non-preemptive: the busy interval is known now, so it is accounted
        # now (clipped to the window) and nothing is left open at the end.
        self.account.add(now, now + job.work, job.purpose, job.wasted)
        call_later(self.env, job.work, self._finish, job)

    def _finish(self, event) -> None:
        job = event.value
        now = self.env.now
        self.present.add(-1)
        if job.submitted >= self.sim.start:  # by hand: as in _start
            self.sojourn_sum += now - job.submitted
            self.completed += 1
        if self.queue:
            self._start(self.queue.popleft(), now)
        else:
            self.free += 1

        job.done(job.token, job.started - job.submitted)

    def drop_queued(self) -> list:
        """Remove every job still waiting in the run queue (a node crash);
        returns their tokens.  Jobs already running finish normally; their
        ``done`` callbacks must check whether the node is still the same
        incarnation."""
        dropped = [job.token for job in self.queue]
        if dropped:
            self.present.add(-len(dropped))
            self.queue.clear()
        return dropped

    # ------------------------------------------------------------ metrics --
    @property
    def wait_mean(self) -> float:
        return self.wait_sum / self.waits if self.waits else float("nan")

    @property
    def sojourn_mean(self) -> float:
        return self.sojourn_sum / self.completed if self.completed else float("nan")

    @property
    def jobs_mean(self) -> float:
        """Time-average number of jobs present over the window."""
        return self.present.mean
