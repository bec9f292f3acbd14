"""The mesh ingress: a topology's balancer as an L7 mesh proxy in front of
instances that each have a sidecar (``topology.sidecar: sidecar``).

The request-shaped part any composed pattern plugs into (used by
:mod:`commsim.patterns.request_response_mesh`; meant for the other
request-shaped patterns, e.g. sync_async's requests, when they are composed).
Model and assumptions are those of docs/topologies.md, "Sidecar proxies
inside a topology"; in short:

* ``request(key, data, header, payload)``: a request reached the ingress.
  Each try picks an instance (``topology.balancer`` keyed by ``key``,
  skipping ejected ones: :class:`~commsim.nodes.mesh.CircuitBreaker`),
  opens or reuses the pooled mTLS connection to its proxy
  (:class:`~commsim.nodes.mesh.ConnectionPool`,
  :class:`~commsim.nodes.mesh.MtlsHandshake` over a zero-latency datacentre
  link pair), runs the proxy's request leg, crosses the loopback and hands
  the try to the pattern: ``app(att)``.
* ``lost(att)`` (optional): a try failed; the pattern undoes what the try
  had taken (e.g. a poll's updates).
* The pattern runs the work on ``att.srv.cpu`` and calls
  :meth:`served` (``att``, response sizes) when it is done; the response
  crosses the loopback and the proxy's response leg back to the ingress.
* A try fails on a crash of its instance (:meth:`crashed`, the pattern's
  cluster hook) or on the per-try timeout; it is retried by the
  :class:`~commsim.nodes.mesh.RetryPolicy`.  The outcome goes to the
  pattern: ``answer(req, att)`` (success) or ``refuse(req)`` (no instance
  up, or the tries exhausted: the pattern sends its 503).
* The ingress has no CPU and never fails.

Counters (the recorder's, window): ``<prefix>/calls``, ``attempts``,
``timeouts``, ``ejections``, ``errors`` (503), ``crash_resets``; samples of
the mesh-added time per successful request in :attr:`added`.
"""

from __future__ import annotations

import math

from commsim.engine.simulation import call_later
from commsim.metrics.collect import percentiles
from commsim.network import Message
from commsim.network.link import loopback_link
from commsim.nodes.mesh import TLS13_LAST, CircuitBreaker, ConnectionPool, MtlsHandshake, RetryPolicy
from commsim.nodes.proxy import SidecarProxy


class MeshRequest:
    """One request at the ingress, over its tries."""

    __slots__ = ("key", "data", "header", "payload", "t_in", "tries", "counted")

    def __init__(self, key, data, header, payload, now, counted):
        self.key = key
        self.data = data          # the pattern's own (e.g. the client's message)
        self.header = header      # sizes of the request, for its loopback crossing
        self.payload = payload
        self.t_in = now
        self.tries = 0
        self.counted = counted    # arrived inside the window


class MeshTry:
    """One try of a request on one instance."""

    __slots__ = ("req", "srv", "epoch", "live", "t_app", "inner", "token")

    def __init__(self, req, srv):
        self.req = req
        self.srv = srv
        self.epoch = srv.epoch
        self.live = True
        self.t_app = 0.0   # entered the application
        self.inner = 0.0   # the application's own time (entry to answer)
        self.token = None  # the pattern's


def _ignore(_msg) -> None:
    pass


def _call(fn) -> None:
    fn()


def _no_cpu(then) -> None:
    """The ingress's end of a handshake: no CPU in this model."""
    then()


class MeshIngress:
    """See the module docstring.  ``sc`` is the resolved ``sidecar`` section."""

    def __init__(self, sim, sc: dict, lb, app, answer, refuse, prefix: str = "mesh",
                 lost=None, stream: bool = False):
        self.sim = sim
        self.env = sim.env
        self.sc = sc
        self.lb = lb
        self._app = app
        self._answer = answer
        self._refuse = refuse
        self._lost = lost   # lost(att): a try failed (the pattern undoes what it took)
        rec = sim.recorder
        self.calls = rec.counter(f"{prefix}/calls")
        self.attempts = rec.counter(f"{prefix}/attempts")
        self.timeouts = rec.counter(f"{prefix}/timeouts")
        self.ejections = rec.counter(f"{prefix}/ejections")
        self.errors = rec.counter(f"{prefix}/errors")
        self.resets = rec.counter(f"{prefix}/crash_resets")
        self.retry = RetryPolicy(sim, sc["retries"], sc["timeout"], sc["backoff"], f"{prefix}/backoff")
        self.breaker = (CircuitBreaker(self.env, sc["breaker_errors"], sc["breaker_open"],
                                       self.ejections)
                        if sc["breaker_errors"] is not None else None)
        self.mtls = sc["mtls"]
        self.mtls_leg = sc["mtls_cpu"] / 2 if self.mtls else 0.0
        # Streams (mesh_streaming.py) put callables in the pool: each runs
        # when the connection is open; requests put their tries.
        self.pool = ConnectionPool(sc["requests_per_connection"], self._open_conn,
                                   _call if stream else self._to_proxy)
        self.servers: list = []
        self.hops: dict = {}          # instance -> (ingress->proxy, proxy->ingress) links
        self.outstanding: dict = {}   # instance -> {try: None} sent, not ended
        self.added: list[float] = []

    # ----------------------------------------------------------- set-up --
    def attach(self, s) -> None:
        """A new instance (the cluster's ``on_add``): its sidecar and hops."""
        sc = self.sc
        s.proxy = SidecarProxy(self.sim, f"server{s.index}/proxy", sc["proxy_workers"],
                               sc["proxy_cpu"], sc["proxy_delay"], sc["loopback_latency"])
        self.servers.append(s)
        self.outstanding[s] = {}
        if self.mtls:
            self.hops[s] = (loopback_link(self.sim, f"mesh/ingress->server{s.index}"),
                            loopback_link(self.sim, f"mesh/server{s.index}->ingress"))

    # ---------------------------------------------------------- ingress --
    def request(self, key, data, header: int, payload: int) -> None:
        """A request reached the ingress."""
        now = self.env.now
        self.calls.add()
        self._try(MeshRequest(key, data, header, payload, now, now >= self.sim.start))

    def _try(self, req: MeshRequest) -> None:
        lb = self.lb
        s = self.breaker.pick(lb, req.key) if self.breaker is not None else lb.pick(req.key)
        if s is None:
            self.errors.add()
            self._refuse(req)
            return
        att = MeshTry(req, s)
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

    def _end(self, att: MeshTry, ok: bool) -> None:
        """The try ended (answered, timed out, reset by a crash)."""
        att.live = False
        s = att.srv
        self.outstanding[s].pop(att, None)
        if s.current(att.epoch):
            s.active -= 1
        if self.breaker is not None:
            self.breaker.record(s, ok)
        req = att.req
        if not ok and self._lost is not None:
            self._lost(att)
        if ok:
            if req.counted:
                self.added.append((self.env.now - req.t_in) - att.inner)
            self._answer(req, att)
        elif self.retry.exhausted(req.tries):
            self.errors.add()
            self._refuse(req)
        else:
            call_later(self.env, self.retry.wait(req.tries), self._retry, req)

    def _timed_out(self, event) -> None:
        att: MeshTry = event.value
        if att.live:
            self.timeouts.add()
            self._end(att, False)

    # ------------------------------------------------------------- mTLS --
    def _open_conn(self, s, conn) -> None:
        up, down = self.hops[s]
        epoch = s.epoch
        proxy = f"server{s.index}/proxy"

        def send(direction, size, label, deliver, exchange) -> None:
            link, a, b = (up, "ingress", proxy) if direction == "up" else (down, proxy, "ingress")
            link.send(Message("handshake", a, b, handshake=size, created=self.env.now,
                              data=exchange, label=label), deliver)

        def server_cpu(resume) -> None:
            s.proxy.cpu.submit(self.sc["mtls_handshake_cpu"], "handshake", self._hs_cpu_done,
                               (resume, s, epoch))

        def opened(last) -> None:
            if not self.pool.current(s, conn):
                return  # reset by a crash while opening
            if last:  # the ingress's final flights ride with its first request
                up.send(Message("handshake", "ingress", proxy, handshake=last,
                                created=self.env.now, label="handshake last"), _ignore)
            self.pool.opened(conn)

        MtlsHandshake(send, opened, _no_cpu, server_cpu, last=TLS13_LAST).start()

    @staticmethod
    def _hs_cpu_done(token, _wait) -> None:
        resume, s, epoch = token
        if s.current(epoch):
            resume()

    # ------------------------------------------------------------ proxy --
    def current(self, att: MeshTry) -> bool:
        """The try's instance has not crashed since it was sent."""
        return att.srv.current(att.epoch)

    def _to_proxy(self, att: MeshTry) -> None:
        if att.live and att.srv.current(att.epoch):
            att.srv.proxy.leg(True, self.mtls_leg, self._proxy_in, att)

    def _proxy_in(self, att: MeshTry) -> None:
        if not att.srv.current(att.epoch):
            return
        req = att.req
        att.srv.proxy.lo_in.send(Message("loopback", "proxy", "app", req.header, req.payload,
                                         0, 0, self.env.now, att, "request"), self._app_in)

    def _app_in(self, msg) -> None:
        att: MeshTry = msg.data
        if att.srv.current(att.epoch):
            att.t_app = self.env.now
            self._app(att)

    def served(self, att: MeshTry, header: int, payload: int) -> None:
        """The pattern's work for ``att`` is done: its answer goes back."""
        s = att.srv
        if not s.current(att.epoch):
            return
        att.inner = self.env.now - att.t_app
        s.proxy.lo_out.send(Message("loopback", "app", "proxy", header, payload, 0, 0,
                                    self.env.now, att, "response"), self._app_out)

    def _app_out(self, msg) -> None:
        att: MeshTry = msg.data
        if att.srv.current(att.epoch):
            att.srv.proxy.leg(False, self.mtls_leg, self._answered, att)

    def _answered(self, att: MeshTry) -> None:
        if att.srv.current(att.epoch) and att.live:
            self._end(att, True)
        # else: crashed meanwhile, or timed out already (the late answer is dropped)

    # ------------------------------------------------------------ crash --
    def crashed(self, s) -> None:
        """``s`` crashed: the pooled connection resets, every try there fails;
        its proxy's queued work is dropped (the pattern drops the app's)."""
        self.pool.reset(s)
        for att in list(self.outstanding[s]):
            if att.live:
                self.resets.add()
                self._end(att, False)
        s.proxy.cpu.drop_queued()

    # ---------------------------------------------------------- metrics --
    def in_flight(self) -> int:
        n = sum(s.proxy.in_flight() for s in self.servers)
        for up, down in self.hops.values():
            n += up.pending() + down.pending()
        return n

    def metrics(self) -> dict:
        proxies = [s.proxy for s in self.servers]
        proxy_cpu = sum(p.cpu.account.total for p in proxies)
        passes = sum(p.passes for p in proxies)
        added = self.added
        out = {"hop_added_mean": sum(added) / len(added) if added else math.nan}
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
