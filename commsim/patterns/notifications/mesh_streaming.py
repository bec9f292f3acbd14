"""SSE and push behind a topology with sidecar proxies (``topology.sidecar: sidecar``).

A mixin over :class:`.clustered.ClusteredStreaming`: routing per (re)connect,
crashes and reconnects exactly as there, plus a
:class:`~commsim.nodes.proxy.SidecarProxy` beside every instance (attached
by :class:`~commsim.nodes.mesh_ingress.MeshIngress`, whose pooled mTLS
connections to the proxies it also uses).

Model and assumptions (beside docs/topologies.md's)
---------------------------------------------------
* The balancer is the mesh ingress: the client's connection (and its TLS:
  ``network.tls_server_cpu`` > 0 is refused) ends there; each stream is
  routed when it (re)connects and stays on its instance.
* The connect request crosses the instance's proxy (a request leg: half of
  ``proxy_cpu`` + half of ``mtls_cpu``, ``proxy_delay``) and the loopback
  into the application; every message the application sends on the stream
  (the opening response, every event frame) crosses the loopback and one
  proxy leg (half of ``proxy_cpu`` + half of ``mtls_cpu``, ``proxy_delay``)
  on its way out.  Frames of one stream keep their order on the client's
  link; inside a proxy with several workers two frames may finish out of
  order (Envoy would serve one connection on one worker): an approximation.
* mTLS: before a connect reaches an instance's proxy the ingress's pooled
  connection to it must be open (a handshake at first use, every
  ``requests_per_connection`` streams, after a restart).
* A crash resets the instance's streams as without sidecars; what was inside
  its proxy or on its loopback is lost with it: frames are orphaned exactly
  like frames lost in the instance's CPU (replayed with ``sse.resume``, else
  missed), opening responses are lost (the client is reset anyway).
* ``sidecar.retries``, ``timeout``, ``backoff``, ``breaker_errors`` and
  ``breaker_open`` are refused if set: a stream's frames are not requests to
  retry, and a broken stream is reconnected by the client
  (``sse.retry``, ``topology.reconnect_jitter``/``reconnect_backoff``).
* Metrics: ``proxy_cpu_s``, ``proxy_utilization_max``.
"""

from __future__ import annotations

from commsim.metrics.collect import ledger_metrics
from commsim.network import Message
from commsim.nodes.mesh_ingress import MeshIngress
from commsim.patterns.notifications.clustered import ClusteredStreaming

_THROUGH_PROXY = ("response", "event")


class _ProxiedDown:
    """The streams' down link as the base sees it: messages the application
    sends on a stream go through the instance's loopback and proxy first."""

    __slots__ = ("link", "model")

    def __init__(self, link, model):
        self.link = link
        self.model = model

    def __getattr__(self, name):
        return getattr(self.link, name)

    def send_ordered(self, msg, deliver, key) -> None:
        m = self.model
        s = m.assigned[key] if msg.kind in _THROUGH_PROXY else None
        if s is None:
            self.link.send_ordered(msg, deliver, key)
            return
        s.proxy.lo_out.send(Message("loopback", "app", "proxy", msg.header, msg.payload,
                                    msg.framing, 0, m.env.now, (msg, deliver, key, s, s.epoch),
                                    msg.label), m._out_lo)


class MeshStreaming(ClusteredStreaming):
    """Mixin: put before an :class:`._Streaming` subclass (module docstring)."""

    def __init__(self, sim):
        self.ingress = MeshIngress(sim, sim.config["sidecar"], None, None, None, None,
                                   stream=True)
        self._on_add = self.ingress.attach
        super().__init__(sim)
        self.down = _ProxiedDown(self.down, self)
        self.mtls_leg = self.ingress.mtls_leg

    # --------------------------------------------------------------- in --
    def _server_connect(self, msg) -> None:
        s, epoch, gen = msg.data
        if gen != self.gen[msg.src] or not s.current(epoch):
            return
        if self.ingress.mtls:
            self.ingress.pool.ensure(s, lambda: self._connect_in(msg))
        else:
            self._connect_in(msg)

    def _connect_in(self, msg) -> None:
        s, epoch, _gen = msg.data
        if s.current(epoch):
            s.proxy.leg(True, self.mtls_leg, self._connect_lo, msg)

    def _connect_lo(self, msg) -> None:
        s, epoch, _gen = msg.data
        if s.current(epoch):
            s.proxy.lo_in.send(Message("loopback", "proxy", "app", msg.header, 0, 0, 0,
                                       self.env.now, msg, "connect"), self._connect_app)

    def _connect_app(self, lmsg) -> None:
        super()._server_connect(lmsg.data)  # voided there if the instance crashed

    # -------------------------------------------------------------- out --
    def _out_lo(self, lmsg) -> None:
        token = lmsg.data
        s = token[3]
        if s.current(token[4]):
            s.proxy.leg(False, self.mtls_leg, self._out_sent, token)
        else:
            self._out_lost(token)

    def _out_sent(self, token) -> None:
        msg, deliver, key, s, epoch = token
        if s.current(epoch):
            self.down.link.send_ordered(msg, deliver, key)
        else:
            self._out_lost(token)

    def _out_lost(self, token) -> None:
        """Lost in the proxy or on the loopback with a crash: a frame is
        orphaned like one lost in the CPU; an opening response just goes."""
        msg, _deliver, key = token[0], token[1], token[2]
        if msg.kind == "event":
            self._orphan(key, msg.created, msg.payload, msg.data)

    # ------------------------------------------------------------ crash --
    def _build_cluster(self) -> None:
        super()._build_cluster()
        self.ingress.lb = self.cluster.lb

    def _server_crashed(self, s) -> None:
        self.ingress.pool.reset(s)
        super()._server_crashed(s)
        for t in s.proxy.cpu.drop_queued():
            if len(t) == 2:  # a proxy leg (done, token); else an mTLS handshake job
                t[0](t[1])   # its continuation sees the crash (orphans its frame)

    def metrics(self) -> dict:
        out = super().metrics()
        proxies = [s.proxy for s in self.cluster.servers]
        out["proxy_cpu_s"] = sum(p.cpu.account.total for p in proxies)
        out["proxy_utilization_max"] = max(p.cpu.account.utilization() for p in proxies)
        out.update(ledger_metrics(self.sim, self.net.in_flight() + self.ingress.in_flight()))
        return out
