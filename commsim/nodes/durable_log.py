"""A durable log with group commit: the one model of fsync-backed durability
(a database's write-ahead log, a broker's persistent store).

Model and assumptions
---------------------
* Records are numbered by log sequence number (LSN): ``appended`` is the
  last LSN written, ``durable`` the last one a completed flush covers.
* A **flush** (an fsync, or a replica's acknowledgement) lasts
  ``flush_time`` (a constant or a sampler drawn per flush) and makes durable
  every record appended *before it started*.  One flush at a time.
* **Group commit**: a record whose writer waits for durability
  (:meth:`DurableLog.append` with a callback, or :meth:`DurableLog.when_durable`)
  starts a flush if none is running; records appended while a flush runs
  wait for the next one, which starts as soon as the running one ends.  With
  ``interval`` a background flush also starts every ``interval`` if records
  are not yet durable (asynchronous commit).
* **Crash** of the owner (a :class:`~commsim.nodes.faults.Crashable`): every
  record not yet durable is lost (the LSNs are reused after the restart);
  :meth:`DurableLog.crash` returns the tokens of the writers that were
  waiting, in LSN order, so the owner can refuse them.  A flush in progress
  never completes for the log: the device finishes it (the disk does not
  stop when the process dies), its result is void, and no new flush starts
  before it ends.
* Acknowledgements (:meth:`DurableLog.ack`) are recorded so that the
  acknowledged records a crash loses can be counted (``acked_lost``).

With ``disk`` (a one-core :class:`~commsim.nodes.Cpu`) each flush is a job
of that CPU, so the device's busy time is accounted (utilisation); without,
a flush is one timer.  Either way one scheduled event per flush.
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import Any, Callable

from commsim.engine import call_later
from commsim.engine.recorder import Counter


class DurableLog:
    """Group-commit log of one :class:`~commsim.nodes.faults.Crashable` owner.

    Window counters (records acknowledged, lost, acknowledged and lost,
    flushes completed) count events inside the measurement window; the
    ``flush_log`` (start, end), ``ack_times`` and ``crash_log`` record the
    whole run for independent checks.
    """

    def __init__(self, sim, owner, flush_time: float | Callable[[], float], *,
                 disk=None, interval: float | None = None, purpose: str = "fsync"):
        self.sim = sim
        self.env = sim.env
        self.owner = owner
        if callable(flush_time):
            self._flush_time = flush_time
        else:
            const = float(flush_time)
            self._flush_time = lambda: const
        self.disk = disk
        self.purpose = purpose
        self.interval = interval
        self.appended = 0
        self.durable = 0
        self.flushing = False
        self._waiting: deque = deque()  # (lsn, fn, token), in LSN order
        self._acked: deque = deque()    # acknowledged LSNs not yet durable, in LSN order
        self.ack_times = array("d")
        self.flush_log: list[tuple[float, float]] = []
        self.crash_log: list[float] = []
        # window counters (the recorder's instruments)
        self._acked_n = Counter(sim)
        self._lost_n = Counter(sim)
        self._acked_lost_n = Counter(sim)
        self._flushes_n = Counter(sim)
        if interval is not None:
            call_later(self.env, interval, self._tick)

    @property
    def writes_acked(self) -> int:
        return self._acked_n.n

    @property
    def writes_lost(self) -> int:
        return self._lost_n.n

    @property
    def acked_lost(self) -> int:
        return self._acked_lost_n.n

    @property
    def flushes(self) -> int:
        return self._flushes_n.n

    # --------------------------------------------------------- writing --
    def append(self, fn: Callable[[Any], None] | None = None, token: Any = None) -> int:
        """Append one record; with ``fn``, call ``fn(token)`` once it is durable."""
        self.appended += 1
        lsn = self.appended
        if fn is not None:
            self._waiting.append((lsn, fn, token))
            if not self.flushing:
                self._start()
        return lsn

    def when_durable(self, lsn: int, fn: Callable[[Any], None], token: Any = None) -> None:
        """Call ``fn(token)`` once a flush covers ``lsn`` (at once if one has)."""
        if lsn <= self.durable:
            fn(token)
            return
        self._waiting.append((lsn, fn, token))
        if not self.flushing:
            self._start()

    def ack(self, lsn: int) -> None:
        """Record that the write ``lsn`` was acknowledged to its client now."""
        self.ack_times.append(self.env.now)
        self._acked_n.add()
        if lsn > self.durable:
            # acknowledged before it was durable (async commit): acks come in LSN order
            self._acked.append(lsn)

    # -------------------------------------------------------- flushing --
    def _start(self) -> None:
        self.flushing = True
        token = (self.owner.epoch, self.appended, self.env.now)
        if self.disk is not None:
            self.disk.submit(self._flush_time(), self.purpose, self._disk_done, token)
        else:
            call_later(self.env, self._flush_time(), self._timer_done, token)

    def _timer_done(self, event) -> None:
        self._flushed(event.value)

    def _disk_done(self, token, _wait) -> None:
        self._flushed(token)

    def _flushed(self, token) -> None:
        epoch, covers, started = token
        self.flushing = False
        if self.owner.current(epoch):
            now = self.env.now
            self.durable = covers
            self.flush_log.append((started, now))
            self._flushes_n.add()
            acked = self._acked
            while acked and acked[0] <= covers:
                acked.popleft()
            waiting = self._waiting
            while waiting and waiting[0][0] <= covers:
                _lsn, fn, tok = waiting.popleft()
                fn(tok)
        # Group commit: the writes that arrived during this flush go next.
        if self._waiting and self.owner.up and not self.flushing:
            self._start()

    def _tick(self, _event) -> None:
        call_later(self.env, self.interval, self._tick)
        if self.owner.up and not self.flushing and self.appended > self.durable:
            self._start()

    # ----------------------------------------------------------- crash --
    def crash(self) -> list:
        """The owner crashed: lose the volatile tail; return the waiting
        writers' tokens (LSN order)."""
        self.crash_log.append(self.env.now)
        self._lost_n.add(self.appended - self.durable)
        self._acked_lost_n.add(len(self._acked))
        self.appended = self.durable  # the lost LSNs are reused after the restart
        self._acked.clear()
        tokens = [tok for _lsn, _fn, tok in self._waiting]
        self._waiting.clear()
        return tokens

    def resume(self) -> None:
        """The owner restarted: flush what was appended meanwhile, if anyone waits."""
        if self._waiting and not self.flushing:
            self._start()
