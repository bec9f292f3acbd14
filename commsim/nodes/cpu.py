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

Run ahead (:meth:`Cpu.admit_many`): a caller that needs no callback at a job's
completion (it works out what follows from the completion time itself) can
have the CPU compute the job's start and finish at once, without any event:
with FIFO order, non-preemptive service and jobs admitted in order of
arrival, job *n* starts at ``max(arrival_n, earliest time a core is free)``
and takes that core until ``start + work`` (the recursion of the G/G/c FIFO
queue, exact: the same start and finish times the event-driven CPU
produces).  A job that has to wait is held until a later arrival or the
run's end passes its start and accounted then, so jobs are accounted in
start order as the event-driven CPU accounts them, and the held jobs are
its run queue (``max_run_queue`` counts them).  Its accounting is the same: busy time clipped to the window,
the wait counted when the job starts inside the run, the sojourn when it
finishes inside the run, and the time-average of jobs present from each
job's presence clipped to the window (Little's law: the same integral,
summed per job, so it may differ from the event-driven sum in the last
bits).  A CPU used with :meth:`admit_many` is used with nothing else.
"""

from __future__ import annotations

from collections import deque
from heapq import heapreplace
from itertools import compress
from operator import sub
from typing import Any, Callable

from commsim.accounting.cpu import CpuAccount
from commsim.engine.simulation import Overloaded, call_later
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
        self._free_at: list | None = None  # run-ahead mode: when each core is next free

    def submit(self, work: float, purpose: str, done: Callable[[Any, float], None],
               token: Any = None, wasted: bool = False) -> None:
        now = self.env.now
        if self._free_at is not None:
            raise RuntimeError(f"cpu {self.name}: submit() after admit_many(); a CPU runs one way")
        self.present.add(1)
        job = _Job(work, purpose, wasted, done, token, now)
        if self.free:
            self.free -= 1
            self._start(job, now)
        else:
            self.queue.append(job)
            if len(self.queue) >= self.sim.max_run_queue:
                raise Overloaded(f"the run queue of cpu {self.name!r} reached "
                                 f"{len(self.queue):,} jobs (max_run_queue)")

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

    def _run_ahead(self) -> list:
        """Switch to run-ahead mode: every core free from time 0."""
        if self.free != self.cores or self.queue:
            raise RuntimeError(f"cpu {self.name}: admit_many() after submit(); a CPU runs one way")
        self._free_at = [0.0] * self.cores
        self._waiting: deque = deque()  # queued jobs, accounted when they start
        self.sim.at_end(self._close_ahead)
        return self._free_at

    def admit_many(self, arrivals: list, works: list, wasted: list, purpose: str) -> list:
        """Run ahead: jobs of one purpose arriving at ``arrivals`` (in order,
        none earlier than the previous batch's) asking ``works`` seconds
        (``wasted[i]``: job i is wasted work); returns their finish times.
        No event is scheduled: the caller handles what follows.  The recursion runs job by job.  Each job is accounted when it
        starts, in start order as the event-driven CPU does: a job that has
        to wait is held (start, finish, arrival) until a later arrival or the
        end of the run passes its start, and those held are the run queue
        ``max_run_queue`` counts.  A batch wholly inside the window in which
        no job waits (the common case) is accounted in bulk, in job order."""
        free_at = self._free_at if self._free_at is not None else self._run_ahead()
        starts: list = []
        out: list = []
        put_start, put_finish = starts.append, out.append
        queued = False
        for at, work in zip(arrivals, works):
            first = free_at[0]
            if first > at:
                start = first
                queued = True
            else:
                start = at
            finish = start + work
            heapreplace(free_at, finish)
            put_start(start)
            put_finish(finish)
        lo = self.sim.start
        hi = self.sim.end
        waiting = self._waiting
        if not queued and not waiting and arrivals[0] >= lo and max(out) < hi:
            account = self.account
            used = list(map(sub, out, starts))
            account.by_purpose[purpose] = sum(used, account.by_purpose.get(purpose, 0.0))
            account.wasted = sum(compress(used, wasted), account.wasted)
            self.wait_sum = sum(map(sub, starts, arrivals), self.wait_sum)
            self.waits += len(out)
            present = list(map(sub, out, arrivals))
            self.sojourn_sum = sum(present, self.sojourn_sum)
            self.completed += len(out)
            self.present.area = sum(present, self.present.area)
            return out
        limit = self.sim.max_run_queue
        account_job = self._account_job
        for at, start, finish, waste in zip(arrivals, starts, out, wasted):
            while waiting and waiting[0][0] <= at:  # started by now (FIFO: in order)
                account_job(*waiting.popleft())
            if start > at:
                waiting.append((start, finish, at, waste, purpose))
                if len(waiting) >= limit:
                    raise Overloaded(f"the run queue of cpu {self.name!r} reached "
                                     f"{len(waiting):,} jobs (max_run_queue)")
            else:
                account_job(start, finish, at, waste, purpose)
        return out

    def _account_job(self, start: float, finish: float, at: float, waste: bool,
                     purpose: str) -> None:
        """Run ahead: one job's accounting, as the event-driven CPU's (busy
        time and wait if it starts inside the run, sojourn if it finishes
        inside it, presence clipped to the window)."""
        lo = self.sim.start
        hi = self.sim.end
        if start < hi:
            if at >= lo:
                self.wait_sum += start - at
                self.waits += 1
            self.account.add(start, finish, purpose, waste)
            if finish < hi and at >= lo:
                self.sojourn_sum += finish - at
                self.completed += 1
        t0 = at if at > lo else lo
        t1 = finish if finish < hi else hi
        if t1 > t0:
            self.present.area += t1 - t0

    def _close_ahead(self) -> None:
        """At the end of the run (or its overload stop): the jobs still
        queued; those starting before the end count as the event-driven CPU
        counts them, the others are present until the end."""
        waiting = self._waiting
        while waiting:
            self._account_job(*waiting.popleft())

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
    def queued(self) -> int:
        """Jobs waiting in the run queue now (run ahead: admitted jobs not
        yet started by the last arrival), the count ``max_run_queue`` bounds."""
        return len(self._waiting) if self._free_at is not None else len(self.queue)

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
