"""The sync_async model (assumptions in the package docstring)."""

from __future__ import annotations

import math
from collections import deque

from commsim.clients import ClientPopulation
from commsim.engine.simulation import call_later
from commsim.metrics import io as _io_metrics  # noqa: F401  (registers the metric definitions)
from commsim.metrics.collect import Level, client_server_metrics
from commsim.network import Message, Network
from commsim.network.connection import Connections
from commsim.nodes import Cpu
from commsim.nodes.durable_log import DurableLog
from commsim.nodes.faults import Crashable, FaultPlan
from commsim.patterns.sync_async.config import RESET_BYTES


# ---------------------------------------------------------------- helpers --
class _Op:
    """One client operation (retried after a reset until it succeeds)."""

    __slots__ = ("client", "done", "resets")

    def __init__(self, client, done):
        self.client = client
        self.done = done
        self.resets = 0


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


# ------------------------------------------------------------------ model --
class SyncAsync(Crashable):
    """The sync/async I/O and commit model on one :class:`~commsim.engine.Simulation`."""

    def __init__(self, sim):
        cfg = sim.config
        sa = cfg["sync_async"]
        self.sim = sim
        self.env = sim.env
        self.cfg = sa
        self.net = Network(sim)
        self.net.up.on_drop = self.net.down.on_drop = self._lost
        self.cores = cfg["server"]["cores"]
        self.cpu = Cpu(sim, "server", self.cores)
        # network.handshake / keepalive: one connection per client (the shared
        # connection module), set up before a request when the client has none.
        self.conns = Connections(sim, self.net, self.cpu)
        self.io_model = sa["io_model"]
        self.pool = self.io_model == "thread_pool"
        self.per_call = self.io_model == "thread_per_call"
        self.pool_size = sa["threads"]
        self._cpu_before = sim.sampler(sa["cpu_before"], "sync_async/cpu_before")
        self._cpu_after = sim.sampler(sa["cpu_after"], "sync_async/cpu_after")
        self._io_time = sim.sampler(sa["io_time"], "sync_async/io_time")
        self.ios = sa["ios_per_request"]
        self.switch = sa["context_switch"]
        self.spawn = sa["thread_spawn_cpu"]
        self.thread_memory = sa["thread_memory"]
        if self.io_model == "event_loop":
            self.wake_part = (sa["readiness_cpu"], "io_readiness", False)
        elif self.io_model == "io_uring":
            self.wake_part = (sa["completion_cpu"], "io_completion", False)
        else:
            self.wake_part = (self.switch, "context_switch", True)
        self.req_header = int(sa["request_header"])
        self.resp_header = int(sa["response_header"])
        self.retry_backoff = sa["retry_backoff"]

        # Threads: a counting pool, separate from the cores.
        self.free_threads = self.pool_size
        self.thread_queue: deque = deque()
        self.loop_threads = 0 if self.pool else self.cores
        self.threads = Level(sim, self.loop_threads)
        self.blocked = Level(sim)
        self.down = Level(sim)
        self.thread_wait_sum = 0.0
        self.thread_waits = 0
        rec = sim.recorder  # window counters
        self.context_switches = rec.counter("sync_async/context_switches")
        self.spawned = rec.counter("sync_async/threads_spawned")
        self.io_calls = rec.counter("sync_async/io_calls")
        self.resets = rec.counter("sync_async/requests_reset")

        mtbf = None
        if sa["crash_mtbf"] is not None:
            mtbf = sim.sampler({"dist": "exponential", "mean": sa["crash_mtbf"]},
                               "sync_async/crash")
        self.init_faults(FaultPlan(sim, uptime=mtbf, downtime=sa["restart_time"]), arm=False)
        self.active: dict = {}  # requests inside the server, in arrival order
        self.sync_commit = sa["commit"] == "sync"
        self.wal = None  # the write-ahead log, a DurableLog (commit: sync or async)
        if sa["commit"] != "none":
            self.wal = DurableLog(sim, self, sim.sampler(sa["fsync_time"], "sync_async/fsync"),
                                  interval=None if self.sync_commit else sa["flush_interval"])

        self.crash_at(sa["crash_at"] or ())
        self.arm()
        self.clients = ClientPopulation(sim, self.start_op)

    # ----------------------------------------------------------- clients --
    def start_op(self, client, done) -> None:
        self._send(_Op(client, done))

    def _send(self, op: _Op) -> None:
        if self.conns.enabled:
            self.conns.ensure(op.client, lambda extra: self._request(op, extra))
        else:
            self._request(op, 0)

    def _request(self, op: _Op, extra_handshake: int) -> None:
        msg = Message("request", op.client, "server", header=self.req_header,
                      handshake=extra_handshake, created=self.env.now, data=op)
        self.net.up.send(msg, self.server_receive)

    def _lost(self, msg) -> None:
        """A request, response or reset the link gave up on (loss beyond
        ``network.max_retries``): the client retries the request after
        ``retry_backoff``, as after a reset, so no client waits forever.  A
        lost handshake flight is sent again by its sender."""
        op = msg.data
        if not isinstance(op, _Op):
            op.resend()
            return
        if self.conns.enabled:
            self.conns.open.discard(op.client)  # the connection is taken as broken
        call_later(self.env, self.retry_backoff, lambda _e: self._send(op))

    def _client_response(self, msg) -> None:
        if self.conns.enabled:
            self.conns.done(msg.data.client)
        msg.data.done()

    def _client_reset(self, msg) -> None:
        op = msg.data
        op.resets += 1
        if self.conns.enabled:
            self.conns.open.discard(op.client)  # a reset closes the connection
        call_later(self.env, self.retry_backoff, lambda _e: self._send(op))

    def _reset(self, op: _Op) -> None:
        self.resets.add()
        msg = Message("reset", "server", op.client, header=RESET_BYTES, created=self.env.now,
                      data=op, label="reset")
        self.net.down.send(msg, self._client_reset)

    # ------------------------------------------------------------ server --
    def server_receive(self, msg) -> None:
        if not self.up:
            self._reset(msg.data)
            return
        req = _Req(msg.data, self.epoch, self.env.now)
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
        env = self.env
        epoch = req.epoch
        if self.pool:
            if self.free_threads:
                self.free_threads -= 1
            else:
                ev = env.event()
                self.thread_queue.append(ev)
                yield ev
                if self.epoch != epoch:
                    return
            if req.arrived >= self.sim.start:
                self.thread_wait_sum += env.now - req.arrived
                self.thread_waits += 1
            self.threads.add(1)
        parts = [(self._cpu_before(), "request", False)]
        for _ in range(self.ios):
            parts = yield from self._io(req, parts, None)
            if parts is None:
                return
        parts.append((self._cpu_after(), "request", False))
        if self.wal is not None:
            yield self._run(parts)
            if self.epoch != epoch:
                return
            parts = []
            req.lsn = self.wal.append()
            if self.sync_commit:
                durable = self.env.event()
                self.wal.when_durable(req.lsn, _succeed, durable)
                parts = yield from self._io(req, parts, durable)
                if parts is None:
                    return
        if parts:
            yield self._run(parts)
            if self.epoch != epoch:
                return
        self._respond(req)

    def _io(self, req: _Req, parts: list, wait_event):
        """One blocking call (a backend call, or with ``wait_event`` a commit
        wait): run the pending CPU ``parts`` with the model's cost of starting
        the call, wait, and return the CPU parts to run next (``None`` if the
        server crashed meanwhile)."""
        env = self.env
        epoch = req.epoch
        if self.pool:
            # The request's thread runs its CPU, then blocks (a context switch).
            parts.append((self.switch, "context_switch", True))
            self.context_switches.add()
        elif self.per_call:
            # The loop creates a thread for the call; the new thread waits for a
            # core, makes the call and blocks (a context switch).  It exists, and
            # holds its memory, from its creation until it has been woken.
            parts.append((self.spawn, "thread_spawn", True))
            yield self._run(parts)
            if self.epoch != epoch:
                return None
            self.threads.add(1)
            self.spawned.add()
            self.context_switches.add()
            parts = [(self.switch, "context_switch", True)]
        yield self._run(parts)
        if self.epoch != epoch:
            return None
        blocking = self.pool or self.per_call
        if blocking:
            self.blocked.add(1)
        if wait_event is None:
            yield env.timeout(self._io_time())
        else:
            yield wait_event
        if self.epoch != epoch:
            return None
        if wait_event is None:
            self.io_calls.add()
        if not blocking:
            return [self.wake_part]
        self.blocked.add(-1)
        self.context_switches.add()
        if self.pool:
            return [self.wake_part]  # woken: a context switch, then the thread's next CPU
        # thread_per_call: the woken thread hands the result to the loop and exits.
        yield self._run([self.wake_part])
        if self.epoch != epoch:
            return None
        self.threads.add(-1)
        return []

    def _respond(self, req: _Req) -> None:
        del self.active[req]
        if self.pool:
            self.threads.add(-1)
            if self.thread_queue:
                self.thread_queue.popleft().succeed()  # hand the thread to the next request
            else:
                self.free_threads += 1
        if self.wal is not None:
            self.wal.ack(req.lsn)
        op = req.op
        msg = Message("response", "server", op.client, header=self.resp_header,
                      created=self.env.now, data=op)
        self.net.down.send(msg, self._client_response)

    # ----------------------------------------------------------- crashes --
    def on_crash(self) -> None:
        """The server process died (:class:`~commsim.nodes.faults.Crashable`):
        lose the log's volatile tail, reset every request inside."""
        if self.wal is not None:
            self.wal.crash()
        for req in self.active:
            self._reset(req.op)
        self.active.clear()
        self.thread_queue.clear()
        self.free_threads = self.pool_size
        self.threads.set(0)
        self.blocked.set(0)
        self.down.set(1)

    def on_restart(self) -> None:
        self.down.set(0)
        self.threads.set(self.loop_threads)

    # ----------------------------------------------------------- metrics --
    def in_flight(self) -> int:
        return self.net.in_flight()

    def metrics(self) -> dict:
        out = client_server_metrics(self.sim, self.cpu, self.clients)
        by = self.cpu.account.by_purpose
        out.update({
            "threads_mean": self.threads.mean,
            "threads_max": self.threads.peak,
            "thread_memory_max": self.threads.peak * self.thread_memory,
            "thread_wait_mean": ((self.thread_wait_sum / self.thread_waits if self.thread_waits
                                  else math.nan) if self.pool else 0.0),
            "threads_spawned": self.spawned.n,
            "io_blocked_s": self.blocked.area,
            "io_calls": self.io_calls.n,
            "context_switches": self.context_switches.n,
            "io_overhead_cpu_s": by.get("io_readiness", 0.0) + by.get("io_completion", 0.0),
            "crashes": self.crashes,
            "requests_reset": self.resets.n,
            "server_down_s": self.down.area,
            "connections_opened": self.conns.opened,
            "handshakes": self.conns.handshakes,
            **self.conns.metrics(),  # connections_idle_closed with network.idle_timeout
        })
        wal = self.wal
        out.update({
            "writes_acked": wal.writes_acked if wal else 0,
            "writes_lost": wal.writes_lost if wal else 0,
            "acked_writes_lost": wal.acked_lost if wal else 0,
            "flushes": wal.flushes if wal else 0,
        })
        return out
