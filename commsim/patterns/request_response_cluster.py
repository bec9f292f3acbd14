"""Request-response behind a topology: N instances, a load balancer, crashes.

Built only when :func:`commsim.nodes.cluster.active` says the config asks for
a cluster (the default is the plain :class:`RequestResponse`, bit-identical).

Model and assumptions (beside :mod:`commsim.nodes.cluster`'s)
-------------------------------------------------------------
* Routing: with ``network.keepalive`` a client's connection is pinned to the
  instance the balancer picks for its first request (or handshake) and
  every later request on it goes there; without keep-alive every request
  (chunk) picks again, on its new connection; so does the next request after
  ``network.idle_timeout`` closed the connection.  TLS CPU runs on the instance.
* A crash resets every connection pinned to the instance and voids every
  request (chunk) sent to it and **not yet answered** (in flight to it,
  queued or running in its CPU: the epoch guard).  The client learns of it
  by the reset (a zero-byte close on the down link, one way later) and
  sends that chunk again (after uniform [0, ``topology.reconnect_jitter``])
  through the balancer, on a new connection
  (handshake on a survivor): the operation *retries*; it never fails while
  an instance is up, and its latency includes the retry.  A response
  already on the wire arrives normally.  With no instance up the client
  retries after ``topology.reconnect_backoff`` (not doubled).
* ``crash_resets`` counts the chunks so retried; ``crashes``,
  ``utilization_*``, ``imbalance``, ``servers_end`` are as for the other
  composed patterns; the server CPU metrics sum over instances.
"""

from __future__ import annotations

from commsim.engine.simulation import call_later
from commsim.metrics import cluster as _defs  # noqa: F401  (defines the metrics)
from commsim.network import Message
from commsim.nodes.cluster import Cluster, Guarded, NoCpu
from commsim.patterns.request_response import RequestResponse, _Upload


class _RoutedUpload(_Upload):
    __slots__ = ("srv", "epoch", "sent_at")

    def __init__(self, model, client, done, body, response_body):
        super().__init__(model, client, done, body, response_body)
        self.srv = None
        self.epoch = -1
        self.sent_at = -1.0

    def _send(self, extra_handshake: int) -> None:
        m = self.model
        s = m.route(self.client)
        if s is None:  # nothing up: try again later
            call_later(m.env, m.backoff, self._again)
            return
        if self.srv is not None:  # a re-send (reset, or the link gave up): not there any more
            m.outstanding.get(self.srv.index, {}).pop(self, None)
        self.srv, self.epoch, self.sent_at = s, s.epoch, m.env.now
        m.outstanding[s.index][self] = None
        super()._send(extra_handshake)

    def _again(self, _event) -> None:
        self.next_chunk()

    def reset(self, _msg) -> None:
        """The client saw its connection reset: send this chunk again (after
        uniform [0, topology.reconnect_jitter])."""
        self.sent -= 1
        m = self.model
        if m.jitter is not None:
            call_later(m.env, m.jitter(), self._again)
        else:
            self.next_chunk()


class ClusteredRequestResponse(RequestResponse):
    """:class:`RequestResponse` behind a :class:`~commsim.nodes.cluster.Cluster`."""

    upload_class = _RoutedUpload  # also for recorded operations (--records)
    sync_hops = False  # _crashed sends resets in a loop, then drops the queue: not re-entrant

    def __init__(self, sim):
        super().__init__(sim)
        cfg = sim.config
        self.cluster = Cluster(sim, self._crashed, self.cpu)
        self.backoff = cfg["topology"]["reconnect_backoff"]
        j = cfg["topology"]["reconnect_jitter"]
        self.jitter = (sim.sampler({"dist": "uniform", "low": 0, "high": j},
                                   "topology/reconnect_jitter") if j > 0 else None)
        self.keepalive = cfg["network"]["keepalive"]
        self.pinned: dict = {}
        self._hs_pick: dict = {}
        self.outstanding: dict = {}   # instance index -> {upload: None} sent, not answered
        self.crash_resets = 0
        self._guards: dict = {}
        self._nocpu = NoCpu()
        self.conns.cpu_of = self._cpu_of
        # network.idle_timeout: a connection the server closed for idleness is
        # gone; the client's next one is routed by the balancer again
        self.conns.on_idle_close = lambda c: self.pinned.pop(c, None)

    def start_op(self, client, done) -> None:
        _RoutedUpload(self, client, done, self._req_body(), self._resp_body()).next_chunk()

    def route(self, c):
        if self.keepalive:
            s = self.pinned.get(c)
        else:  # the instance this request's own handshake went to, if any
            s = self._hs_pick.pop(c, None)
        if s is None or not s.up:
            s = self.cluster.pick(c)
            if s is None:
                return None
            if self.keepalive:
                self.pinned[c] = s
        self.outstanding.setdefault(s.index, {})
        return s

    def _cpu_of(self, c):
        s = self.route(c)
        if s is None:
            return self._nocpu
        if not self.keepalive:
            self._hs_pick[c] = s
        return s.cpu

    def server_receive(self, msg) -> None:
        u = msg.data
        s = u.srv
        if msg.created != u.sent_at or not s.current(u.epoch):
            # a copy voided by a crash (the client was reset and has re-sent
            # the chunk, maybe elsewhere), or sent to an instance that crashed
            return
        g = self._guards.get(s)
        if g is None:
            g = self._guards[s] = Guarded(s, lambda _token: None)  # the reset retries it
        cpu = self.cpu
        self.cpu = g
        try:
            super().server_receive(msg)
        finally:
            self.cpu = cpu

    def _respond(self, token, wait) -> None:
        u = token[0].data
        self.outstanding[u.srv.index].pop(u, None)
        super()._respond(token, wait)

    def _crashed(self, s) -> None:
        env = self.env
        counted = env.now >= self.sim.start
        for c in [c for c, p in self.pinned.items() if p is s]:
            del self.pinned[c]
            if self.conns.enabled:
                self.conns.close(c)
        voided = self.outstanding.pop(s.index, {})
        for u in voided:
            u.sent_at = -1.0  # its copy in flight, if any, is void (see _lost)
            if counted:
                self.crash_resets += 1
            if self.conns.enabled:
                self.conns.close(u.client)
            # data=u: if the link gives the reset up, _lost retries the chunk
            # just the same (the client's own timeout, not modelled apart).
            self.net.down.send(Message("close", "server", u.client, created=env.now, data=u,
                                       label="reset"), u.reset)
        s.cpu.drop_queued()

    def _lost(self, msg) -> None:
        u = msg.data
        if msg.kind == "request" and isinstance(u, _RoutedUpload) and msg.created != u.sent_at:
            return  # a copy voided by a crash, already retried after the reset
        super()._lost(msg)

    def metrics(self) -> dict:
        out = super().metrics()
        out.update(self.cluster.cpu_metrics())
        out["crash_resets"] = self.crash_resets
        return out


def model(sim):
    """The model factory of ``request_response``: plain, or behind a topology."""
    from commsim.nodes import cluster

    cfg = sim.config
    if cluster.active(cfg) and cfg["topology"]["sidecar"] == "sidecar":
        from commsim.patterns.request_response_mesh import MeshRequestResponse

        return MeshRequestResponse(sim)
    return (ClusteredRequestResponse if cluster.active(cfg) else RequestResponse)(sim)
