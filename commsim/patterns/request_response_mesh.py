"""Request-response behind a topology with sidecar proxies (``topology.sidecar: sidecar``).

Built by :func:`commsim.patterns.request_response_cluster.model` when the
config asks for sidecars.  The parts are the shared ones: the instances and
the balancer of :class:`~commsim.nodes.cluster.Cluster`, a
:class:`~commsim.nodes.proxy.SidecarProxy` beside every instance, and the
mesh features of :mod:`commsim.nodes.mesh` (retry policy, circuit breaker,
mTLS handshake, pooled connections), configured from the ``sidecar``
section's keys that mean the same thing as in ``pattern: sidecar``.

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

import math

from commsim.engine.simulation import call_later
from commsim.metrics import cluster as _defs  # noqa: F401  (defines the metrics)
from commsim.metrics import topology as _sidecar_defs  # noqa: F401
from commsim.metrics.collect import percentiles
from commsim.network import Message
from commsim.network.link import loopback_link
from commsim.nodes.cluster import Cluster
from commsim.nodes.mesh import TLS13_LAST, CircuitBreaker, ConnectionPool, MtlsHandshake, RetryPolicy
from commsim.nodes.proxy import SidecarProxy
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


class _Request:
    """One request (chunk) at the ingress, over its tries."""

    __slots__ = ("msg", "t_in", "tries", "counted")

    def __init__(self, msg, now, counted):
        self.msg = msg
        self.t_in = now
        self.tries = 0
        self.counted = counted


class _Try:
    __slots__ = ("req", "srv", "epoch", "live", "t_app", "inner", "token")

    def __init__(self, req, srv):
        self.req = req
        self.srv = srv
        self.epoch = srv.epoch
        self.live = True
        self.t_app = 0.0
        self.inner = 0.0
        self.token = None


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

    def __init__(self, sim):
        super().__init__(sim)
        cfg = sim.config
        sc = cfg["sidecar"]
        t = cfg["topology"]
        self.sc = sc
        self.backoff = t["reconnect_backoff"]
        rec = sim.recorder
        self.calls = rec.counter("mesh/calls")
        self.attempts = rec.counter("mesh/attempts")
        self.timeouts = rec.counter("mesh/timeouts")
        self.ejections = rec.counter("mesh/ejections")
        self.errors = rec.counter("mesh/errors")
        self.resets = rec.counter("mesh/crash_resets")
        self.retry = RetryPolicy(sim, sc["retries"], sc["timeout"], sc["backoff"], "mesh/backoff")
        self.breaker = (CircuitBreaker(self.env, sc["breaker_errors"], sc["breaker_open"],
                                       self.ejections)
                        if sc["breaker_errors"] is not None else None)
        self.mtls = sc["mtls"]
        self.mtls_leg = sc["mtls_cpu"] / 2 if self.mtls else 0.0
        self.pool = ConnectionPool(sc["requests_per_connection"], self._open_conn, self._to_proxy)
        self.hops: dict = {}          # instance -> (ingress->proxy link, proxy->ingress link)
        self.outstanding: dict = {}   # instance -> {try: None} sent, not ended
        self.added: list[float] = []
        self._app = _AppCpu(self)
        self.cluster = Cluster(sim, self._crashed, self.cpu, on_add=self._add_proxy)

    # ----------------------------------------------------------- set-up --
    def _add_proxy(self, s) -> None:
        sc = self.sc
        s.proxy = SidecarProxy(self.sim, f"server{s.index}/proxy", sc["proxy_workers"],
                               sc["proxy_cpu"], sc["proxy_delay"], sc["loopback_latency"])
        self.outstanding[s] = {}
        if self.mtls:
            self.hops[s] = (loopback_link(self.sim, f"mesh/ingress->server{s.index}"),
                            loopback_link(self.sim, f"mesh/server{s.index}->ingress"))

    def start_op(self, client, done) -> None:
        _MeshUpload(self, client, done, self._req_body(), self._resp_body()).next_chunk()

    # ---------------------------------------------------------- ingress --
    def server_receive(self, msg) -> None:
        """A request (chunk) reached the ingress."""
        now = self.env.now
        self.calls.add()  # window counters (the recorder's)
        self._try(_Request(msg, now, now >= self.sim.start))

    def _try(self, req: _Request) -> None:
        c = req.msg.data.client
        lb = self.cluster.lb
        s = self.breaker.pick(lb, c) if self.breaker is not None else lb.pick(c)
        if s is None:
            self._refuse(req)
            return
        att = _Try(req, s)
        req.tries += 1
        self.attempts.add()
        s.active += 1
        self.outstanding[s][att] = None
        if self.retry.timeout is not None:
            call_later(self.env, self.retry.timeout, self._timed_out, att)
        if self.mtls:
            self.pool.ensure(s, att)
        else:
            self._to_proxy(att)

    def _retry(self, event) -> None:
        self._try(event.value)

    def _refuse(self, req: _Request) -> None:
        """503: no instance up, or the tries are exhausted."""
        self.errors.add()
        up = req.msg.data
        msg = Message("error", "ingress", req.msg.src, self.resp_header, 0, 0, 0,
                      self.env.now, up, "503")
        self.net.down.send(msg, up.refused)

    def _end(self, att: _Try, ok: bool) -> None:
        """The try ended (answered, timed out, reset by a crash)."""
        att.live = False
        s = att.srv
        self.outstanding[s].pop(att, None)
        if s.current(att.epoch):
            s.active -= 1
        if self.breaker is not None:
            self.breaker.record(s, ok)
        req = att.req
        if ok:
            if req.counted:
                self.added.append((self.env.now - req.t_in) - att.inner)
            RequestResponse._respond(self, att.token, 0.0)
        elif self.retry.exhausted(req.tries):
            self._refuse(req)
        else:
            call_later(self.env, self.retry.wait(req.tries), self._retry, req)

    def _timed_out(self, event) -> None:
        att: _Try = event.value
        if att.live:
            self.timeouts.add()
            self._end(att, False)

    # ------------------------------------------------------------- mTLS --
    def _open_conn(self, s, conn) -> None:
        up, down = self.hops[s]
        epoch = s.epoch

        def send(direction, size, label, deliver, exchange) -> None:
            link, a, b = (up, "ingress", f"server{s.index}/proxy") if direction == "up" else \
                (down, f"server{s.index}/proxy", "ingress")
            link.send(Message("handshake", a, b, handshake=size, created=self.env.now,
                              data=exchange, label=label), deliver)

        def server_cpu(resume) -> None:
            s.proxy.cpu.submit(self.sc["mtls_handshake_cpu"], "handshake", self._hs_cpu_done,
                               (resume, s, epoch))

        def opened(last) -> None:
            if not self.pool.current(s, conn):
                return  # reset by a crash while opening
            if last:  # the ingress's final flights ride with its first request
                up.send(Message("handshake", "ingress", f"server{s.index}/proxy", handshake=last,
                                created=self.env.now, label="handshake last"), _ignore)
            self.pool.opened(conn)

        MtlsHandshake(send, opened, _now, server_cpu, last=TLS13_LAST).start()

    @staticmethod
    def _hs_cpu_done(token, _wait) -> None:
        resume, s, epoch = token
        if s.current(epoch):
            resume()

    # ------------------------------------------------------------ proxy --
    def _to_proxy(self, att: _Try) -> None:
        if att.live and att.srv.current(att.epoch):
            att.srv.proxy.leg(True, self.mtls_leg, self._proxy_in, att)

    def _proxy_in(self, att: _Try) -> None:
        s = att.srv
        if not s.current(att.epoch):
            return
        msg = att.req.msg
        s.proxy.lo_in.send(Message("loopback", "proxy", "app", msg.header, msg.payload, 0, 0,
                                   self.env.now, att, "request"), self._app_in)

    def _app_in(self, msg) -> None:
        att: _Try = msg.data
        if not att.srv.current(att.epoch):
            return
        att.t_app = self.env.now
        self._app.att = att
        cpu = self.cpu
        self.cpu = self._app
        try:
            super().server_receive(att.req.msg)
        finally:
            self.cpu = cpu

    def _served(self, att: _Try, _wait) -> None:
        s = att.srv
        if not s.current(att.epoch):
            return
        att.inner = self.env.now - att.t_app
        resp_body = att.token[1]
        s.proxy.lo_out.send(Message("loopback", "app", "proxy", self.resp_header, resp_body, 0, 0,
                                    self.env.now, att, "response"), self._app_out)

    def _app_out(self, msg) -> None:
        att: _Try = msg.data
        if att.srv.current(att.epoch):
            att.srv.proxy.leg(False, self.mtls_leg, self._answered, att)

    def _answered(self, att: _Try) -> None:
        if not att.srv.current(att.epoch):
            return
        if att.live:
            self._end(att, True)
        # else: timed out already; the late answer is dropped at the ingress

    # ------------------------------------------------------------ crash --
    def _crashed(self, s) -> None:
        """Reset the ingress's connection to ``s``; every try there fails."""
        self.pool.reset(s)
        for att in list(self.outstanding[s]):
            if att.live:
                self.resets.add()
                self._end(att, False)
        s.cpu.drop_queued()
        s.proxy.cpu.drop_queued()

    # ---------------------------------------------------------- metrics --
    def in_flight(self) -> int:
        n = self.net.in_flight()
        for s in self.cluster.servers:
            n += s.proxy.in_flight()
        for up, down in self.hops.values():
            n += up.pending() + down.pending()
        return n

    def metrics(self) -> dict:
        out = super().metrics()
        out.update(self.cluster.cpu_metrics())
        proxies = [s.proxy for s in self.cluster.servers]
        proxy_cpu = sum(p.cpu.account.total for p in proxies)
        passes = sum(p.passes for p in proxies)
        added = self.added
        out["hop_added_mean"] = sum(added) / len(added) if added else math.nan
        out.update(percentiles(added, "hop_added", qs=(50, 90, 99)))
        out["proxy_cpu_s"] = proxy_cpu
        out["proxy_vcpu_per_krps"] = proxy_cpu / passes * 1000 if passes else math.nan
        out["proxy_utilization_max"] = max(p.cpu.account.utilization() for p in proxies)
        calls, attempts = self.calls.n, self.attempts.n
        out["calls"] = calls
        out["attempts"] = attempts
        out["retry_amplification"] = attempts / calls if calls else math.nan
        out["timeouts"] = self.timeouts.n
        out["ejections"] = self.ejections.n
        out["mesh_errors"] = self.errors.n
        out["crash_resets"] = self.resets.n
        return out


def _now(then) -> None:
    """The ingress's handshake CPU: none (it has no CPU in this model)."""
    then()


def _ignore(_msg) -> None:
    pass
