"""Request-response behind a topology with sidecar proxies (``topology.sidecar: sidecar``).

Built by :func:`commsim.patterns.request_response_cluster.model` when the
config asks for sidecars.  The parts are the shared ones: the instances and
the balancer of :class:`~commsim.nodes.cluster.Cluster`, the
:class:`~commsim.nodes.mesh_ingress.MeshIngress` (a
:class:`~commsim.nodes.proxy.SidecarProxy` beside every instance; the mesh
features of :mod:`commsim.nodes.mesh`: retry policy, circuit breaker, mTLS
handshake, pooled connections), configured from the ``sidecar`` section's
keys that mean the same thing as in ``pattern: sidecar``.  This module is
only the pattern's side: what a request is, what the instance does with it,
how the client gets an answer or a 503.

```
client --network--> ingress (balancer) ==mTLS, datacentre hop==> proxy i -lo-> app i
client <--network-- ingress            <======================== proxy i <-lo- app i
```

Model and assumptions (beside :mod:`commsim.nodes.cluster`'s)
-------------------------------------------------------------
* **The balancer is the mesh ingress** (an L7 proxy such as Istio's ingress
  gateway): the client's connection (``network.handshake``,
  ``network.keepalive``) ends there, so a crash of an instance resets no
  client connection.  Like the balancer without sidecars it has **no CPU**
  and never fails: its own proxy work, its TLS termination and its end of
  the mTLS handshakes cost nothing (``network.tls_server_cpu`` > 0 with a
  TLS handshake is refused for that reason), and it learns of a crash and
  of a restart at once.
* **Routing per request** (chunk): the ingress picks an instance for every
  try with ``topology.balancer`` (keyed by the client), skipping the
  instances its circuit breaker has ejected (all ejected: it ignores the
  ejections).
* **The sidecar** of each instance (``sidecar.proxy_workers`` cores,
  ``proxy_cpu`` per request, half on the request leg and half on the
  response leg, ``proxy_delay`` per leg without CPU) handles every request
  into the instance and every response out of it; proxy and application
  talk over loopback (``loopback_latency`` one way, once in each
  direction).  One request therefore costs exactly 2 proxy legs and 2
  loopback crossings more than without sidecars: at low load
  ``theory.sidecar_added_latency(1, proxy_cpu, loopback, mtls_cpu,
  proxy_delay)`` (the sidecar pattern's two-proxy call has a second proxy
  on the caller's side, which here is the CPU-less ingress).
* **mTLS** (``sidecar.mtls``) between the ingress and each proxy: one
  pooled connection per instance, opened (a TLS 1.3 handshake: the flights
  of :mod:`commsim.network.connection` over a zero-latency datacentre link
  pair, its bytes counted under ``handshake``, the ingress's final flight
  included; ``mtls_handshake_cpu`` on the proxy when it reads the
  ClientHello) at first use, every ``requests_per_connection`` requests,
  and after the instance restarts; requests wait while it opens.  Record
  encryption costs ``mtls_cpu`` per request on the proxy (half per leg).
* **Retries, timeouts, circuit breaking at the ingress**
  (``sidecar.retries``, ``timeout``, ``backoff``, ``breaker_errors``,
  ``breaker_open``): a try fails when the instance crashes with it (the
  pooled connection is reset: the ingress sees it at once) or when the
  per-try timeout expires (the late answer is dropped; the instance did the
  work).  A failed try is retried after the full-jitter back-off on a new
  pick; when the retries are exhausted, or no instance is up, the ingress
  answers the client ``503`` (a header-only ``error`` message) and the
  client sends the chunk again after ``topology.reconnect_backoff`` (not
  doubled): an operation is retried, never failed, as without sidecars,
  and its latency includes everything.
* A crash voids the instance's work in its CPU and in its proxy (queues
  dropped, running jobs discarded by the epoch guard, messages on the
  loopback discarded on arrival); ``crash_resets`` counts the tries so
  reset (inside the window).
* Bytes: the client's hop as without sidecars; the loopback crossings are
  links too and their bytes count in ``bytes_*`` (each request and response
  once more, as in ``pattern: sidecar``; message kind ``loopback``, so
  ``requests`` and ``responses`` still count the client's); the ingress <->
  proxy hop carries the mTLS handshakes only (requests on it are not
  modelled, as without sidecars).
* Metrics (definitions shared with ``pattern: sidecar``): ``hop_added_*``
  (per successful request: time from arrival at the ingress to the answer
  leaving it, minus the application's own time in the instance: proxies,
  loopback, mTLS, handshake waits, failed tries and back-off),
  ``proxy_cpu_s``, ``proxy_vcpu_per_krps``, ``proxy_utilization_max``,
  ``calls`` (requests reaching the ingress), ``attempts``,
  ``retry_amplification``, ``timeouts``, ``ejections``, ``mesh_errors``
  (503 answers).
"""

from __future__ import annotations

from commsim.engine.simulation import call_later
from commsim.metrics import cluster as _defs  # noqa: F401  (defines the metrics)
from commsim.metrics import topology as _sidecar_defs  # noqa: F401
from commsim.network import Message
from commsim.nodes.cluster import Cluster
from commsim.nodes.mesh_ingress import MeshIngress
from commsim.patterns.request_response import RequestResponse, _Upload


class _MeshUpload(_Upload):
    """An operation whose chunks the ingress may answer 503."""

    __slots__ = ()

    def refused(self, _msg) -> None:
        m = self.model
        if m.conns.enabled:
            m.conns.done(self.client)
        self.sent -= 1
        call_later(m.env, m.backoff, self._again)

    def _again(self, _event) -> None:
        self.next_chunk()


class _AppCpu:
    """What the base model's ``server_receive`` sees as ``self.cpu``: it
    computes the request's work (service, encoding, per-kind costs) exactly
    as without sidecars; the job runs on the try's instance."""

    __slots__ = ("model", "att")

    def __init__(self, model):
        self.model = model
        self.att = None

    def submit(self, work, purpose, _done, token=None, wasted=False) -> None:
        att = self.att
        att.token = token
        att.srv.cpu.submit(work, purpose, self.model._served, att, wasted)


class MeshRequestResponse(RequestResponse):
    """:class:`RequestResponse` behind a cluster whose instances have sidecars."""

    upload_class = _MeshUpload  # also for recorded operations (--records)
    sync_hops = False  # the ingress's senders are not checked re-entrant-safe: keep the wake-ups

    def __init__(self, sim):
        super().__init__(sim)
        cfg = sim.config
        self.backoff = cfg["topology"]["reconnect_backoff"]
        self._app = _AppCpu(self)
        self.ingress = MeshIngress(sim, cfg["sidecar"], None, self._app_in, self._answer,
                                   self._refuse)
        self.cluster = Cluster(sim, self._crashed, self.cpu, on_add=self.ingress.attach)
        self.ingress.lb = self.cluster.lb

    @property
    def outstanding(self) -> dict:
        return self.ingress.outstanding

    def start_op(self, client, done) -> None:
        _MeshUpload(self, client, done, self._req_body(), self._resp_body()).next_chunk()

    def server_receive(self, msg) -> None:
        """A request (chunk) reached the ingress."""
        self.ingress.request(msg.data.client, msg, msg.header, msg.payload)

    def _app_in(self, att) -> None:
        """The try entered the instance's application: the base model's work."""
        self._app.att = att
        cpu = self.cpu
        self.cpu = self._app
        try:
            super().server_receive(att.req.data)
        finally:
            self.cpu = cpu

    def _served(self, att, _wait) -> None:
        if self.ingress.current(att):
            self.ingress.served(att, self.resp_header, att.token[1])

    def _answer(self, _req, att) -> None:
        RequestResponse._respond(self, att.token, 0.0)

    def _refuse(self, req) -> None:
        """503: no instance up, or the tries are exhausted."""
        msg = req.data
        up = msg.data
        self.net.down.send(Message("error", "ingress", msg.src, self.resp_header, 0, 0, 0,
                                   self.env.now, up, "503"), up.refused)

    def _crashed(self, s) -> None:
        self.ingress.crashed(s)
        s.cpu.drop_queued()

    def in_flight(self) -> int:
        return self.net.in_flight() + self.ingress.in_flight()

    def metrics(self) -> dict:
        out = super().metrics()
        out.update(self.cluster.cpu_metrics())
        out.update(self.ingress.metrics())
        return out
