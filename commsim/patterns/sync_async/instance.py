"""One sync_async server process: its cores, thread pool or event loops, and
commit log (assumptions in the package docstring).

An :class:`Instance` guards its work with the epoch of a ``node`` (a
:class:`~commsim.nodes.faults.Crashable`): the plain pattern is its own node;
behind a ``topology`` each instance's node is a cluster
:class:`~commsim.nodes.cluster.Server`.
"""

from __future__ import annotations

from collections import deque

from commsim.engine.recorder import ACKED_LOST
from commsim.nodes.durable_log import DurableLog


class _Req:
    """One request inside the server (one attempt of an operation)."""

    __slots__ = ("op", "epoch", "arrived", "lsn")

    def __init__(self, op, epoch, arrived):
        self.op = op
        self.epoch = epoch
        self.arrived = arrived
        self.lsn = 0


def _succeed(event) -> None:
    event.succeed()


class Instance:
    """One sync_async server process: ``cpu`` (its cores), its thread pool or
    event loops, its commit log; work started in it is guarded by the epoch
    of ``node`` (the Crashable that crashes it).  The model ``m`` holds what
    the instances share: samplers, counters, the time-weighted levels (sums
    over instances), the network."""

    __slots__ = ("m", "env", "cpu", "node", "free_threads", "thread_queue", "active", "wal",
                 "n_threads", "n_blocked")

    def __init__(self, m, cpu, node):
        self.m = m
        self.env = m.env
        self.cpu = cpu
        self.node = node
        self.free_threads = m.pool_size
        self.thread_queue: deque = deque()
        self.active: dict = {}  # requests inside the instance, in arrival order
        self.n_threads = m.loop_threads  # this instance's share of m.threads
        self.n_blocked = 0               # ... and of m.blocked
        self.wal = None  # the write-ahead log, a DurableLog (commit: sync or async)
        if m.commit != "none":
            self.wal = DurableLog(m.sim, node, m.fsync_time,
                                  interval=None if m.sync_commit else m.flush_interval)

    def _threads(self, d) -> None:
        self.n_threads += d
        self.m.threads.add(d)

    def _blocked(self, d) -> None:
        self.n_blocked += d
        self.m.blocked.add(d)

    def receive(self, op) -> None:
        req = _Req(op, self.node.epoch, self.env.now)
        self.active[req] = None
        self.env.process(self._handle(req))

    def _run(self, parts):
        """Submit CPU pieces that run back to back on one thread; the returned
        event succeeds when all are done."""
        ev = self.env.event()
        parts = [p for p in parts if p[0] > 0]
        if not parts:
            ev.succeed()
            return ev
        left = [len(parts)]

        def one(_token, _wait):
            left[0] -= 1
            if not left[0]:
                ev.succeed()

        submit = self.cpu.submit
        for work, purpose, wasted in parts:
            submit(work, purpose, one, None, wasted)
        return ev

    def _handle(self, req: _Req):
        m = self.m
        env = self.env
        node = self.node
        epoch = req.epoch
        if m.pool:
            if self.free_threads:
                self.free_threads -= 1
            else:
                ev = env.event()
                self.thread_queue.append(ev)
                yield ev
                if node.epoch != epoch:
                    return
            if req.arrived >= m.sim.start:
                m.thread_wait_sum += env.now - req.arrived
                m.thread_waits += 1
            self._threads(1)
        parts = [(m._cpu_before(), "request", False)]
        for _ in range(m.ios):
            parts = yield from self._io(req, parts, None)
            if parts is None:
                return
        parts.append((m._cpu_after(), "request", False))
        if self.wal is not None:
            yield self._run(parts)
            if node.epoch != epoch:
                return
            parts = []
            req.lsn = self.wal.append()
            if m.sync_commit:
                durable = env.event()
                self.wal.when_durable(req.lsn, _succeed, durable)
                parts = yield from self._io(req, parts, durable)
                if parts is None:
                    return
        if parts:
            yield self._run(parts)
            if node.epoch != epoch:
                return
        self._respond(req)

    def _io(self, req: _Req, parts: list, wait_event):
        """One blocking call (a backend call, or with ``wait_event`` a commit
        wait): run the pending CPU ``parts`` with the model's cost of starting
        the call, wait, and return the CPU parts to run next (``None`` if the
        instance crashed meanwhile)."""
        m = self.m
        env = self.env
        node = self.node
        epoch = req.epoch
        if m.pool:
            # The request's thread runs its CPU, then blocks (a context switch).
            parts.append((m.switch, "context_switch", True))
            m.context_switches.add()
        elif m.per_call:
            # The loop creates a thread for the call; the new thread waits for a
            # core, makes the call and blocks (a context switch).  It exists, and
            # holds its memory, from its creation until it has been woken.
            parts.append((m.spawn, "thread_spawn", True))
            yield self._run(parts)
            if node.epoch != epoch:
                return None
            self._threads(1)
            m.spawned.add()
            m.context_switches.add()
            parts = [(m.switch, "context_switch", True)]
        yield self._run(parts)
        if node.epoch != epoch:
            return None
        blocking = m.pool or m.per_call
        if blocking:
            self._blocked(1)
        if wait_event is None:
            yield env.timeout(m._io_time())
        else:
            yield wait_event
        if node.epoch != epoch:
            return None
        if wait_event is None:
            m.io_calls.add()
        if not blocking:
            return [m.wake_part]
        self._blocked(-1)
        m.context_switches.add()
        if m.pool:
            return [m.wake_part]  # woken: a context switch, then the thread's next CPU
        # thread_per_call: the woken thread hands the result to the loop and exits.
        yield self._run([m.wake_part])
        if node.epoch != epoch:
            return None
        self._threads(-1)
        return []

    def _respond(self, req: _Req) -> None:
        del self.active[req]
        if self.m.pool:
            self._threads(-1)
            if self.thread_queue:
                self.thread_queue.popleft().succeed()  # hand the thread to the next request
            else:
                self.free_threads += 1
        if self.wal is not None:
            self.wal.ack(req.lsn)
        self.m.respond(self, req.op)

    def crash(self) -> list:
        """The process died: lose the log's volatile tail, forget every request
        inside and its threads.  Returns the requests' operations, in arrival
        order (the caller resets them)."""
        if self.wal is not None:
            self.wal.crash()
        ops = [req.op for req in self.active]
        self.active.clear()
        self.thread_queue.clear()
        self.free_threads = self.m.pool_size
        return ops


class RecordedInstance(Instance):
    """An :class:`Instance` that also marks, in the model's per-operation
    records, the operations whose acknowledged write a crash lost (used only
    with records on; ``commsim run --records``).

    ``unsafe`` holds ``(lsn, op, retries)`` for every write acknowledged
    before it was durable (asynchronous commit), pruned as flushes cover them,
    so it is bounded by the log's volatile tail.  At a crash every entry
    beyond the last flush is lost: the operation's row says ``acked_lost`` if
    the client had (or still gets) that acknowledgement, that is if it was not
    sent again after it (``retries`` unchanged)."""

    __slots__ = ("unsafe",)

    def __init__(self, m, cpu, node):
        Instance.__init__(self, m, cpu, node)
        self.unsafe: deque = deque()

    def _respond(self, req: _Req) -> None:
        wal = self.wal
        if wal is not None and req.lsn > wal.durable:
            unsafe = self.unsafe
            while unsafe and unsafe[0][0] <= wal.durable:
                unsafe.popleft()
            op = req.op
            unsafe.append((req.lsn, op, op.retries))
        Instance._respond(self, req)

    def crash(self) -> list:
        wal = self.wal
        if wal is not None:
            ops = self.m.ops
            for lsn, op, retries in self.unsafe:
                if lsn <= wal.durable:
                    continue
                if op.retries != retries:
                    continue  # sent again since: the client never had this acknowledgement
                if ops.end[op.rec] == ops.end[op.rec]:  # answered already (not NaN)
                    ops.outcome[op.rec] = ACKED_LOST
                else:  # its response is on its way: the row says so when it arrives
                    op.lost_at = retries
            self.unsafe.clear()
        return Instance.crash(self)
