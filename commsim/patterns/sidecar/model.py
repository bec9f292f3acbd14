"""The sidecar model (assumptions in the package docstring)."""

from __future__ import annotations

import math

from commsim.clients import ClientPopulation
from commsim.engine.simulation import call_later
from commsim.metrics.collect import latency_metrics
from commsim.metrics.collect import percentiles
from commsim.network import Link, Message
from commsim.network.connection import FlightExchange
from commsim.nodes import Cpu
from commsim.nodes.load_balancer import LoadBalancer
from commsim.nodes.mesh import CircuitBreaker, ConnectionPool, RetryPolicy
from commsim.nodes.proxy import SidecarProxy
from commsim.patterns.sidecar.parts import _Attempt, _Call, _cpu_then, _Handshake, _Node


class SidecarModel:
    def __init__(self, sim):
        cfg = sim.config
        sc = cfg["sidecar"]
        self.sim = sim
        self.env = sim.env
        self.cfg = sc
        self.mode = sc["mode"]
        self.mesh = self.mode != "none"
        self.depth = sc["depth"]
        self.fan_out = sc["fan_out"]
        net = cfg["network"]
        self.latency = net["latency"]
        # Network hops (node to node) apply network.bandwidth and loss; the
        # app <-> proxy loopback legs are the proxies' own latency-only links.
        self._link_kw = dict(bandwidth=net["bandwidth"], loss=net["loss"], rto=net["rto"],
                             max_retries=net["max_retries"])
        self.req_size = int(sc["request_size"])
        self.resp_size = int(sc["response_size"])
        self.mtls = self.mesh and sc["mtls"]
        self.mtls_leg = sc["mtls_cpu"] / 2 if self.mtls else 0.0
        self.timeout = sc["timeout"] if self.mesh else None
        self.breaker = sc["breaker_errors"] if self.mesh else None
        self._links: dict = {}
        self._service = sim.sampler(cfg["server"]["service_time"], "server/service")
        self._uniform = sim.sampler({"dist": "uniform", "low": 0, "high": 1}, "sidecar/faults", "number")
        self.retry = RetryPolicy(sim, sc["retries"] if self.mesh else 0, self.timeout,
                                 sc["backoff"], "sidecar/backoff")
        if self.mode == "library":
            self._library = sim.sampler(sc["library_cpu"], "sidecar/library_cpu")
        self.services: list[list[_Node]] = []
        for k in range(self.depth):
            self.services.append([self._node(f"s{k}i{j}", k, j, sc["app_cores"])
                                  for j in range(sc["instances"])])
        self.client = self._node("client", -1, 0, 64)
        fs = sc["fault_service"] % self.depth
        for node in self.services[fs][:sc["fault_instances"]]:
            node.error_rate = sc["fault_error_rate"]
            node.slowdown = sc["fault_slowdown"]
        # counters (window)
        self.lat: list[float] = []
        self.ops_ok = 0
        self.ops_failed = 0
        self.added: list[float] = []
        rec = sim.recorder  # window counters
        self.calls = rec.counter("sidecar/calls")
        self.attempts = rec.counter("sidecar/attempts")
        self.ejections = rec.counter("sidecar/ejections")
        self.timeouts = rec.counter("sidecar/timeouts")
        for node in self.nodes():
            if self.breaker is not None:
                node.breaker = CircuitBreaker(self.env, self.breaker, sc["breaker_open"],
                                              self.ejections)
            if self.mtls:
                node.pool = ConnectionPool(sc["requests_per_connection"],
                                           lambda up, conn, node=node: _Handshake(
                                               self, node, up, conn).start(), self._send)
        # Per-operation records (commsim run --records) only when asked for
        # (sidecar/records.py); otherwise the clients call start_op directly.
        self.records = None
        if rec.records:
            from commsim.patterns.sidecar.records import SidecarRecords

            self.records = SidecarRecords(self, rec.ops("sidecar"))
        self.clients = ClientPopulation(sim, self.start_op if self.records is None
                                        else self.records.start)

    def _node(self, name, service, index, cores) -> _Node:
        sim = self.sim
        sc = self.cfg
        proxy = None
        if self.mode == "sidecar":
            proxy = SidecarProxy(sim, f"{name}/proxy", sc["proxy_workers"], sc["proxy_cpu"],
                                 sc["proxy_delay"], sc["loopback_latency"])
        return _Node(name, service, index, Cpu(sim, f"{name}/app", cores), proxy)

    def _link(self, a: _Node, b: _Node) -> Link:
        key = (a.name, b.name)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = Link(self.sim, f"net/{a.name}->{b.name}", self.latency,
                                           **self._link_kw)
            link.on_drop = self._dropped
        return link

    def _dropped(self, msg) -> None:
        """A network hop gave up on ``msg`` (loss beyond ``network.max_retries``):
        a handshake flight is sent again; a request or response fails its try
        (retried, if retries are left, like an error or a timeout)."""
        data = msg.data
        if isinstance(data, FlightExchange):
            data.resend()
            return
        if data is None:  # the caller's final handshake flight: nothing waits for it
            return
        att: _Attempt = data
        att.node.active -= 1
        if att.live:
            att.live = False
            self._outcome(att, False)

    # ---------------------------------------------------------- mesh legs --
    def _mesh_leg(self, node: _Node, request: bool, then, token) -> None:
        """The mesh's work on one leg at ``node``, then ``then(token)``."""
        if self.mode == "sidecar":
            node.proxy.leg(request, self.mtls_leg, then, token)
        elif self.mode == "library":
            node.app.submit(0.5 * self._library() + self.mtls_leg, "mesh", _cpu_then, (then, token))
        else:
            then(token)

    def _to_mesh(self, node: _Node, msg, then) -> None:
        """App -> its mesh layer (loopback to the proxy, or a function call)."""
        if node.proxy is not None:
            node.proxy.lo_out.send(msg, then)
        else:
            then(msg)

    def _from_mesh(self, node: _Node, msg, then) -> None:
        if node.proxy is not None:
            node.proxy.lo_in.send(msg, then)
        else:
            then(msg)

    # -------------------------------------------------------------- client --
    def start_op(self, cid, done) -> None:
        t0 = self.env.now
        self.call(self.client, 0, lambda ok: self._op_done(t0, ok, done))

    def _op_done(self, t0, ok, done) -> None:
        if t0 >= self.sim.start:
            if ok:
                self.ops_ok += 1
                self.lat.append(self.env.now - t0)
            else:
                self.ops_failed += 1
        done()

    # ------------------------------------------------------------- caller --
    def call(self, caller: _Node, service: int, done) -> None:
        """``caller``'s application calls ``service``; ``done(ok)`` at the end."""
        call = _Call(caller, service, done, self.env.now)
        self.calls.add()
        msg = Message("request", caller.name, "mesh", payload=self.req_size, created=call.t0,
                      data=call, label="call")
        self._to_mesh(caller, msg, self._outbound)

    def _outbound(self, msg) -> None:
        self._try(msg.data)

    def _try(self, call: _Call) -> None:
        """One try: the request leg at the caller's mesh, then pick and send."""
        self._mesh_leg(call.caller, True, self._pick_and_send, call)

    def _pick_and_send(self, call: _Call) -> None:
        caller = call.caller
        lb = caller.lbs.get(call.service)
        if lb is None:
            uniform = self.sim.sampler({"dist": "uniform", "low": 0, "high": 1},
                                       f"sidecar/lb/{caller.name}", "number")
            lb = caller.lbs[call.service] = LoadBalancer(self.cfg["lb_policy"], self.services[call.service],
                                                         uniform=uniform)
        node = caller.breaker.pick(lb) if caller.breaker is not None else lb.pick()
        att = _Attempt(call, node)
        call.attempt = att
        call.tries += 1
        self.attempts.add()
        node.active += 1
        if self.timeout is not None:
            call_later(self.env, self.timeout, self._timed_out, att)
        if self.mtls:
            caller.pool.ensure(node, att)
        else:
            self._send(att)

    def _send(self, att: _Attempt) -> None:
        call = att.call
        msg = Message("request", call.caller.name, att.node.name, header=0, payload=self.req_size,
                      created=self.env.now, data=att, label="request")
        self._link(call.caller, att.node).send(msg, self._arrive)

    # --------------------------------------------------------- connections --
    def _handshake_cpu(self, node: _Node, then, token) -> None:
        cpu = node.proxy.cpu if node.proxy is not None else node.app
        cpu.submit(self.cfg["mtls_handshake_cpu"], "handshake", _cpu_then, (then, token))

    # -------------------------------------------------------------- callee --
    def _arrive(self, msg) -> None:
        att: _Attempt = msg.data
        att.transit += self.env.now - msg.created
        self._mesh_leg(att.node, True, self._inbound_done, att)

    def _inbound_done(self, att: _Attempt) -> None:
        msg = Message("request", "mesh", att.node.name, payload=self.req_size,
                      created=self.env.now, data=att, label="request")
        self._from_mesh(att.node, msg, self._app_receive)

    def _app_receive(self, msg) -> None:
        att: _Attempt = msg.data
        node = att.node
        att.t_in = self.env.now
        node.app.submit(self._service() * node.slowdown, "request", self._served, att)

    def _served(self, att: _Attempt, _wait) -> None:
        node = att.node
        if node.error_rate > 0 and self._uniform() < node.error_rate:
            att.ok = False
            self._respond(att)
            return
        nxt = node.service + 1
        if nxt >= self.depth:
            self._respond(att)
            return
        att.pending = self.fan_out
        for _ in range(self.fan_out):
            self.call(node, nxt, lambda ok, att=att: self._downstream_done(att, ok))

    def _downstream_done(self, att: _Attempt, ok: bool) -> None:
        att.pending -= 1
        if not ok:
            att.ok = False
        if att.pending == 0:
            self._respond(att)

    def _respond(self, att: _Attempt) -> None:
        node = att.node
        att.inner = self.env.now - att.t_in
        msg = Message("response", node.name, "mesh", payload=self.resp_size,
                      created=self.env.now, data=att, label="response" if att.ok else "error")
        self._to_mesh(node, msg, self._outbound_response)

    def _outbound_response(self, msg) -> None:
        self._mesh_leg(msg.data.node, False, self._send_response, msg.data)

    def _send_response(self, att: _Attempt) -> None:
        call = att.call
        msg = Message("response" if att.ok else "error", att.node.name, call.caller.name,
                      payload=self.resp_size, created=self.env.now, data=att,
                      label="response" if att.ok else "error")
        self._link(att.node, call.caller).send(msg, self._response_arrive)

    # -------------------------------------------------------- caller again --
    def _response_arrive(self, msg) -> None:
        att: _Attempt = msg.data
        att.transit += self.env.now - msg.created
        att.node.active -= 1
        self._mesh_leg(att.call.caller, False, self._response_in, att)

    def _response_in(self, att: _Attempt) -> None:
        if not att.live:
            return  # this try timed out already; its late answer is dropped
        att.live = False
        self._outcome(att, att.ok)

    def _timed_out(self, event) -> None:
        att: _Attempt = event.value
        if not att.live:
            return
        att.live = False
        self.timeouts.add()
        self._outcome(att, False)

    def _outcome(self, att: _Attempt, ok: bool) -> None:
        call = att.call
        if call.caller.breaker is not None:
            call.caller.breaker.record(att.node, ok)
        if ok or self.retry.exhausted(call.tries):
            self._finish(call, att, ok)
            return
        call_later(self.env, self.retry.wait(call.tries), lambda _e: self._try(call))

    def _finish(self, call: _Call, att: _Attempt, ok: bool) -> None:
        call.finished = True
        msg = Message("response" if ok else "error", "mesh", call.caller.name, payload=self.resp_size,
                      created=self.env.now, data=(call, att, ok), label="result")
        self._from_mesh(call.caller, msg, self._delivered)

    def _delivered(self, msg) -> None:
        call, att, ok = msg.data
        now = self.env.now
        if ok and call.t0 >= self.sim.start:
            self.added.append((now - call.t0) - att.inner - att.transit)
        call.done(ok)

    # ------------------------------------------------------------- metrics --
    def nodes(self):
        for tier in self.services:
            yield from tier
        yield self.client

    def in_flight(self) -> int:
        n = sum(link.pending() for link in self._links.values())
        return n + sum(node.proxy.in_flight() for node in self.nodes() if node.proxy is not None)

    def metrics(self) -> dict:
        sim = self.sim
        dur = sim.duration
        out = {"throughput": self.ops_ok / dur}
        out.update(latency_metrics(self.lat))
        out.update(percentiles(self.lat, "latency", qs=(90,)))
        total = self.ops_ok + self.ops_failed
        out["success_rate"] = self.ops_ok / total if total else math.nan
        out["hop_added_mean"] = float(sum(self.added) / len(self.added)) if self.added else math.nan
        out.update(percentiles(self.added, "hop_added", qs=(50, 90, 99)))
        proxies = [n.proxy for n in self.nodes() if n.proxy is not None]
        proxy_cpu = sum(p.cpu.account.total for p in proxies)
        passes = sum(p.passes for p in proxies)
        app_mesh = sum(n.app.account.by_purpose.get("mesh", 0.0) + n.app.account.by_purpose.get("handshake", 0.0)
                       for n in self.nodes())
        out["proxy_cpu_s"] = proxy_cpu
        out["mesh_cpu_s"] = proxy_cpu + app_mesh
        out["app_cpu_s"] = sum(n.app.account.by_purpose.get("request", 0.0) for n in self.nodes())
        out["proxy_vcpu_per_krps"] = proxy_cpu / passes * 1000 if passes else math.nan
        ops_rate = total / dur
        out["mesh_vcpu_per_krps"] = (out["mesh_cpu_s"] / dur) / (ops_rate / 1000) if ops_rate else math.nan
        out["proxy_utilization_max"] = max((p.cpu.account.utilization() for p in proxies), default=0.0)
        out["server_utilization"] = max(n.app.account.utilization() for tier in self.services for n in tier)
        calls, attempts = self.calls.n, self.attempts.n
        out["calls"] = calls
        out["attempts"] = attempts
        out["retry_amplification"] = attempts / calls if calls else math.nan
        out["ejections"] = self.ejections.n
        out["timeouts"] = self.timeouts.n
        return out
