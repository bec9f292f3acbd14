"""The sync_async model (assumptions in the package docstring).

:class:`Instance` is one server process (its cores, thread pool or event
loops, commit log) whose work is guarded by the epoch of a ``node`` (a
:class:`~commsim.nodes.faults.Crashable`); :class:`SyncAsync` is the pattern
with one instance that is its own node.  Behind a ``topology`` the pattern
runs N instances (:mod:`commsim.patterns.sync_async.cluster`).
"""

from __future__ import annotations

import math

from commsim.clients import ClientPopulation
from commsim.engine.recorder import ACKED_LOST, OK, REQUEST, RETRIED, UNFINISHED
from commsim.engine.simulation import call_later
from commsim.metrics import io as _io_metrics  # noqa: F401  (registers the metric definitions)
from commsim.metrics.collect import Level, client_server_metrics
from commsim.network import Message, Network
from commsim.network.connection import Connections
from commsim.nodes import Cpu
from commsim.nodes.faults import Crashable, FaultPlan
from commsim.patterns.sync_async.config import RESET_BYTES
from commsim.patterns.sync_async.instance import Instance, RecordedInstance


# ---------------------------------------------------------------- helpers --
class _Op:
    """One client operation (sent again after a reset or a link giving up,
    until it is answered).  ``retries`` counts those re-sends; ``rec`` (its
    row in the recorder's ``Operations``) and ``lost_at`` are set only when
    records are asked for."""

    __slots__ = ("client", "done", "retries", "rec", "lost_at")

    def __init__(self, client, done):
        self.client = client
        self.done = done
        self.retries = 0


# ------------------------------------------------------------------ model --
class SyncAsync(Crashable):
    """The sync/async I/O and commit model on one :class:`~commsim.engine.Simulation`:
    one :class:`Instance`, crashed by the pattern's own keys (``crash_at``,
    ``crash_mtbf``, ``restart_time``)."""

    def __init__(self, sim):
        self._setup(sim)
        sa = self.cfg
        mtbf = None
        if sa["crash_mtbf"] is not None:
            mtbf = sim.sampler({"dist": "exponential", "mean": sa["crash_mtbf"]},
                               "sync_async/crash")
        self.init_faults(FaultPlan(sim, uptime=mtbf, downtime=sa["restart_time"]), arm=False)
        self.cpu = Cpu(sim, "server", self.cores)
        # network.handshake / keepalive: one connection per client (the shared
        # connection module), set up before a request when it has none.
        self.conns = Connections(sim, self.net, self.cpu)
        self.server = self.instance_class(self, self.cpu, self)
        self.wal = self.server.wal
        self.crash_at(sa["crash_at"] or ())
        self.arm()
        self.clients = ClientPopulation(sim, self.start_op if self.ops is None
                                        else self._start_recorded)

    def _setup(self, sim) -> None:
        """What every instance shares (also :class:`ClusteredSyncAsync`'s)."""
        cfg = sim.config
        sa = cfg["sync_async"]
        self.sim = sim
        self.env = sim.env
        self.cfg = sa
        self.net = Network(sim)
        self.net.up.on_drop = self.net.down.on_drop = self._lost
        self.cores = cfg["server"]["cores"]
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
        self.commit = sa["commit"]
        self.sync_commit = self.commit == "sync"
        self.flush_interval = sa["flush_interval"]
        self.fsync_time = (sim.sampler(sa["fsync_time"], "sync_async/fsync")
                           if self.commit != "none" else None)

        # Threads: a counting pool per instance, separate from the cores; the
        # levels are sums over instances.
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
        # Per-operation records (commsim run --records) only when asked for:
        # otherwise the clients call start_op and the instances are plain.
        self.ops = rec.ops("sync_async") if rec.records else None
        self.instance_class = Instance if self.ops is None else RecordedInstance
        self.op_bytes = self.req_header + self.resp_header

    # ----------------------------------------------------------- clients --
    #: The operation class (the cluster's routes its attempts).
    op_class = _Op

    def start_op(self, client, done) -> None:
        self._send(_Op(client, done))

    def _start_recorded(self, client, done) -> None:
        """start_op that also records the operation (sent, answered, bytes,
        outcome); used only with records on.  ``lost_at``: the value of
        ``retries`` when the write of the attempt a later crash lost was
        acknowledged (-1: none lost), so the row says ``acked_lost`` only if
        that acknowledgement is the one the client got
        (:class:`~commsim.patterns.sync_async.instance.RecordedInstance`)."""
        ops = self.ops
        env = self.env
        i = len(ops)
        ops.record(REQUEST, env.now, math.nan, client, self.op_bytes, UNFINISHED)

        def finished() -> None:
            ops.end[i] = env.now
            ops.outcome[i] = (ACKED_LOST if op.lost_at == op.retries
                              else RETRIED if op.retries else OK)
            done()

        op = self.op_class(client, finished)
        op.rec = i
        op.lost_at = -1
        self._send(op)

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
        op.retries += 1
        if self.conns.enabled:
            self.conns.open.discard(op.client)  # the connection is taken as broken
        call_later(self.env, self.retry_backoff, lambda _e: self._send(op))

    def _client_response(self, msg) -> None:
        if self.conns.enabled:
            self.conns.done(msg.data.client)
        msg.data.done()

    def _client_reset(self, msg) -> None:
        op = msg.data
        op.retries += 1
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
        self.server.receive(msg.data)

    def respond(self, _inst: Instance, op: _Op) -> None:
        """The instance answers ``op`` (its CPU, I/O and commit are done)."""
        msg = Message("response", "server", op.client, header=self.resp_header,
                      created=self.env.now, data=op)
        self.net.down.send(msg, self._client_response)

    # ----------------------------------------------------------- crashes --
    def on_crash(self) -> None:
        """The server process died (:class:`~commsim.nodes.faults.Crashable`):
        lose the log's volatile tail, reset every request inside."""
        for op in self.server.crash():
            self._reset(op)
        self.server.n_threads = self.server.n_blocked = 0
        self.threads.set(0)
        self.blocked.set(0)
        self.down.set(1)

    def on_restart(self) -> None:
        self.down.set(0)
        self.server.n_threads = self.loop_threads
        self.threads.set(self.loop_threads)

    # ----------------------------------------------------------- metrics --
    def in_flight(self) -> int:
        return self.net.in_flight()

    def metrics(self) -> dict:
        return self._metrics(self.cpu, [self.server], self.cpu.account.by_purpose, self.crashes)

    def _metrics(self, cpu, instances, by, crashes) -> dict:
        out = client_server_metrics(self.sim, cpu, self.clients)
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
            "crashes": crashes,
            "requests_reset": self.resets.n,
            "server_down_s": self.down.area,
            "connections_opened": self.conns.opened,
            "handshakes": self.conns.handshakes,
            **self.conns.metrics(),  # connections_idle_closed with network.idle_timeout
        })
        wals = [i.wal for i in instances if i.wal is not None]
        out.update({
            "writes_acked": sum(w.writes_acked for w in wals),
            "writes_lost": sum(w.writes_lost for w in wals),
            "acked_writes_lost": sum(w.acked_lost for w in wals),
            "flushes": sum(w.flushes for w in wals),
        })
        return out
