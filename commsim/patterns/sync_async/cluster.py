"""sync_async behind a topology: N full sync_async servers behind a load balancer.

Built only when :func:`commsim.nodes.cluster.active` says the config asks for
a cluster (the default is the plain :class:`SyncAsync`, bit-identical).

Model and assumptions (beside :mod:`commsim.nodes.cluster`'s)
-------------------------------------------------------------
* Each instance is a whole sync_async server
  (:class:`~commsim.patterns.sync_async.instance.Instance`): its own cores (a
  :class:`~commsim.nodes.cluster.Server`'s ``Cpu``, ``server.cores``), its
  own thread pool or event loops, its own commit log (a ``DurableLog`` with
  the instance as owner).  The samplers (one stream per purpose), counters
  and time-weighted levels are shared: ``threads_*``, ``io_blocked_s`` and
  ``server_down_s`` are sums over instances (``threads_max`` the peak of the
  total, ``server_down_s`` instance-seconds down).
* Routing: with ``network.keepalive`` a client's connection is pinned to the
  instance the balancer picked when it was opened; every later request on it
  goes there.  Without keep-alive every request picks again (and opens its
  own connection).  A new connection (after a reset or a link giving up)
  picks again.  ``least_connections`` counts the requests sent to an
  instance and not yet answered.  TLS CPU runs on the picked instance.
* Crashes are the cluster's (``topology.crash_at``/``crash_server``,
  ``mtbf``/``mttr``: the one mechanism, :class:`~commsim.nodes.faults.Crashable`);
  ``sync_async.crash_at``, ``crash_mtbf`` and ``restart_time`` are refused.
  At a crash of an instance: its log loses the volatile tail (``writes_lost``,
  ``acked_writes_lost``: the pattern's durability semantics, per instance);
  the jobs queued in its CPU are dropped and running ones discarded (epoch
  guard); its threads are gone; and **every request sent to it and not yet
  answered** (in flight to it, in a connection set-up to it, waiting for a
  thread, on its CPU, blocked in I/O or waiting for a flush) is reset: the
  balancer, which learns of the crash at once, sends the client a reset
  (40 B) at once, and the connections pinned to it are closed.  This is the
  pattern's own failure semantics (reset, then the client retries after
  ``sync_async.retry_backoff``), plus uniform [0, ``topology.reconnect_jitter``];
  the retry goes through the balancer to a survivor on a new connection.
  The operation never fails while an instance is up; its latency includes
  the retry.  A response already on the wire arrives normally; a copy of a
  voided request still in flight is ignored on arrival.  With no instance
  up the client retries after ``topology.reconnect_backoff``, doubled per
  failed try (at most 64x).  A restarted instance comes back empty, with its
  loop threads.
* ``requests_reset`` (= ``crash_resets``) counts the requests so reset in the
  window; ``crashes``, ``utilization_*``, ``imbalance``, ``servers_end`` are as
  for the other composed patterns; the server CPU metrics sum over instances.
"""

from __future__ import annotations

from commsim.clients import ClientPopulation
from commsim.engine import call_at, call_later
from commsim.metrics import cluster as _defs  # noqa: F401  (defines the metrics)
from commsim.network.connection import Connections
from commsim.nodes.cluster import Cluster, Server
from commsim.patterns.sync_async.instance import Instance
from commsim.patterns.sync_async.model import SyncAsync, _Op


class _COp(_Op):
    """An operation and where its current attempt went."""

    __slots__ = ("srv", "epoch", "sent_at", "attempt", "tries")

    def __init__(self, client, done):
        super().__init__(client, done)
        self.srv = None
        self.epoch = -1
        self.sent_at = -1.0
        self.attempt = 0
        self.tries = 0  # consecutive tries that found no instance up


class _Hooked(Server):
    """A cluster :class:`Server` that also tells the pattern of its restart
    (the Cluster calls the pattern only at a crash).  Each run makes a
    subclass with its own ``restarted`` hook and gives it to its servers."""

    __slots__ = ()
    restarted = None

    def on_restart(self) -> None:
        Server.on_restart(self)
        self.restarted(self)


class ClusteredSyncAsync(SyncAsync):
    """:class:`SyncAsync` with N instances behind a :class:`~commsim.nodes.cluster.Cluster`."""

    def __init__(self, sim):
        self._setup(sim)
        t = sim.config["topology"]
        self.cluster = Cluster(sim, self._crashed)
        self._hooked = type("_Hooked", (_Hooked,), {"__slots__": (),
                                                    "restarted": staticmethod(self._restarted)})
        self.instances: dict = {}    # Server -> Instance
        self.outstanding: dict = {}  # Server -> {op: None} sent to it, not answered
        for s in self.cluster.servers:
            self._adopt(s)
        if t["scale_out_at"] is not None:  # after the cluster's own scale-out event
            call_at(self.env, t["scale_out_at"], self._adopt_new)
        self.cpu = self.cluster.servers[0].cpu
        self.conns = Connections(sim, self.net, self.cpu)
        self.conns.cpu_of = self._cpu_of
        self.keepalive = sim.config["network"]["keepalive"]
        self.pinned: dict = {}       # client -> (Server, epoch) of its kept-alive connection
        self._next = None            # the instance of the connection being opened
        self.backoff = t["reconnect_backoff"]
        j = t["reconnect_jitter"]
        self.jitter = (sim.sampler({"dist": "uniform", "low": 0, "high": j},
                                   "topology/reconnect_jitter") if j > 0 else None)
        self.clients = ClientPopulation(sim, self.start_op if self.ops is None
                                        else self._start_recorded)

    # --------------------------------------------------------- instances --
    def _adopt(self, s) -> Instance:
        s.__class__ = self._hooked
        inst = self.instances[s] = self.instance_class(self, s.cpu, s)
        self.outstanding[s] = {}
        if len(self.instances) > 1:  # the threads level starts with one instance's loops
            self.threads.add(self.loop_threads)
        return inst

    def _adopt_new(self, _event) -> None:
        for s in self.cluster.servers:
            if s not in self.instances:
                self._adopt(s)

    def _restarted(self, s) -> None:
        inst = self.instances[s]
        self.down.add(-1)
        inst.n_threads = self.loop_threads
        self.threads.add(self.loop_threads)

    # ----------------------------------------------------------- clients --
    op_class = _COp  # also for recorded operations (--records)

    def start_op(self, client, done) -> None:
        self._send(_COp(client, done))

    def _release(self, op: _COp) -> None:
        s = op.srv
        if s is not None:
            if self.outstanding[s].pop(op, 0) is None:
                s.active -= 1
            op.srv = None

    def _route(self, c):
        """The instance for the client's next request (None: none is up)."""
        if self.keepalive:
            p = self.pinned.get(c)
            if (p is not None and p[0].current(p[1])
                    and (not self.conns.enabled or c in self.conns.open)):
                return p[0]
        s = self.cluster.pick(c)
        if s is None:
            return None
        if s not in self.instances:  # a scale-out instance at its first instant
            self._adopt(s)
        if self.keepalive:
            self.conns.close(c)  # a new connection, to the picked instance
            self.pinned[c] = (s, s.epoch)
        return s

    def _send(self, op: _COp) -> None:
        self._release(op)
        s = self._route(op.client)
        if s is None:  # nothing up: try again later, doubling the wait
            wait = self.backoff * (1 << min(op.tries, 6))
            op.tries += 1
            if op.attempt == 0:  # its first try failed too: it will be retried
                op.retries += 1
            call_later(self.env, wait, lambda _e: self._send(op))
            return
        op.tries = 0
        op.attempt += 1
        op.srv, op.epoch = s, s.epoch
        self.outstanding[s][op] = None
        s.active += 1
        if self.conns.enabled:
            self._next = s
            a = op.attempt
            self.conns.ensure(op.client, lambda extra: self._connected(op, a, s, extra))
        else:
            self._request(op, 0)

    def _cpu_of(self, _client):
        return self._next.cpu

    def _connected(self, op: _COp, attempt: int, s, extra: int) -> None:
        if op.attempt == attempt and op.srv is s and s.current(op.epoch):
            self._request(op, extra)
        # else: the instance crashed during the set-up; the reset retries the op

    def _request(self, op: _COp, extra_handshake: int) -> None:
        op.sent_at = self.env.now
        super()._request(op, extra_handshake)

    def _client_reset(self, msg) -> None:
        op = msg.data
        op.retries += 1
        if self.conns.enabled:
            self.conns.open.discard(op.client)  # a reset closes the connection
        wait = self.retry_backoff + (self.jitter() if self.jitter is not None else 0.0)
        call_later(self.env, wait, lambda _e: self._send(op))

    # ------------------------------------------------------------ server --
    def server_receive(self, msg) -> None:
        op = msg.data
        s = op.srv
        if s is None or msg.created != op.sent_at or not s.current(op.epoch):
            return  # a copy voided by a crash (its client was reset and retries)
        self.instances[s].receive(op)

    def respond(self, inst: Instance, op: _COp) -> None:
        self._release(op)
        super().respond(inst, op)

    def _crashed(self, s) -> None:
        """The cluster's crash hook (after ``s`` went down)."""
        inst = self.instances[s]
        inst.crash()
        s.cpu.drop_queued()
        self.threads.add(-inst.n_threads)
        self.blocked.add(-inst.n_blocked)
        inst.n_threads = inst.n_blocked = 0
        self.down.add(1)
        for c in [c for c, p in self.pinned.items() if p[0] is s]:
            del self.pinned[c]
            self.conns.close(c)
        voided = self.outstanding[s]
        self.outstanding[s] = {}
        s.active = 0
        for op in voided:
            op.srv = None
            self._reset(op)

    # ----------------------------------------------------------- metrics --
    def metrics(self) -> dict:
        cpus = [s.cpu for s in self.cluster.servers]
        by: dict = {}
        for cpu in cpus:
            for k, v in cpu.account.by_purpose.items():
                by[k] = by.get(k, 0.0) + v
        out = self._metrics(self.cpu, list(self.instances.values()), by, self.cluster.crashes)
        out.update(self.cluster.cpu_metrics())
        out["crash_resets"] = self.resets.n
        return out


def model(sim):
    """The model factory of ``sync_async``: plain, or behind a topology."""
    from commsim.nodes import cluster

    return (ClusteredSyncAsync if cluster.active(sim.config) else SyncAsync)(sim)
