"""Parts of the sidecar model: nodes, calls, tries and the mTLS handshake's hops.

The mesh features themselves (retry policy, circuit breaker, mTLS handshake
and connection pool) are :mod:`commsim.nodes.mesh`'s, shared with
``topology.sidecar``.
"""

from __future__ import annotations

from commsim.network import Message
from commsim.nodes.mesh import TLS13_LAST, MtlsHandshake


class _Node:
    """An instance (or the client node): application CPU, optional proxy."""

    __slots__ = ("name", "service", "index", "app", "proxy", "routable", "active", "error_rate",
                 "slowdown", "lbs", "breaker", "pool")

    def __init__(self, name, service, index, app, proxy):
        self.name = name
        self.service = service
        self.index = index
        self.app = app
        self.proxy = proxy
        self.routable = True
        self.active = 0
        self.error_rate = 0.0
        self.slowdown = 1.0
        self.lbs: dict = {}       # upstream service -> LoadBalancer
        self.breaker = None       # commsim.nodes.mesh.CircuitBreaker (mesh modes)
        self.pool = None          # commsim.nodes.mesh.ConnectionPool (mTLS)


class _Call:
    __slots__ = ("caller", "service", "done", "t0", "tries", "attempt", "finished")

    def __init__(self, caller, service, done, t0):
        self.caller = caller
        self.service = service
        self.done = done
        self.t0 = t0
        self.tries = 0
        self.attempt = None
        self.finished = False


class _Attempt:
    __slots__ = ("call", "node", "live", "inner", "transit", "t_in", "pending", "ok")

    def __init__(self, call, node):
        self.call = call
        self.node = node
        self.live = True      # False once timed out or answered
        self.inner = 0.0      # callee's own time (app in to app out)
        self.transit = 0.0    # network transit of request + response
        self.t_in = 0.0
        self.pending = 0      # downstream calls outstanding
        self.ok = True


def _cpu_then(pair, _wait) -> None:
    pair[0](pair[1])


class _Handshake:
    """Mutual TLS between a caller and an upstream instance: the mesh's
    :class:`~commsim.nodes.mesh.MtlsHandshake` on the hops between them, with
    handshake CPU at the caller's and the callee's mesh layer."""

    __slots__ = ("model", "caller", "node", "conn", "exchange", "start")

    def __init__(self, model, caller, node, conn):
        self.model = model
        self.caller = caller
        self.node = node
        self.conn = conn
        hs = MtlsHandshake(self._send, self._open, self._client_cpu, self._server_cpu,
                           last=TLS13_LAST)
        self.exchange = hs.exchange
        self.start = hs.start

    def _client_cpu(self, then) -> None:
        self.model._handshake_cpu(self.caller, then, None)

    def _send(self, direction, size, label, deliver, exchange) -> None:
        m = self.model
        a, b = (self.caller, self.node) if direction == "up" else (self.node, self.caller)
        msg = Message("handshake", a.name, b.name, handshake=size, created=m.env.now,
                      data=exchange, label=label)
        m._link(a, b).send(msg, deliver)

    def _server_cpu(self, resume) -> None:
        self.model._handshake_cpu(self.node, resume, None)

    def _open(self, last) -> None:
        # The caller's final flights (TCP ACK + TLS Finished) go out with its
        # first request: counted on the hop, nothing waits for them.
        m = self.model
        m._link(self.caller, self.node).send(
            Message("handshake", self.caller.name, self.node.name, handshake=last,
                    created=m.env.now, label="handshake last"), _arrived)
        self.caller.pool.opened(self.conn)


def _arrived(_msg) -> None:
    """The caller's final handshake flight reached the callee (no action)."""
