"""Parts of the sidecar model: nodes, connections, calls, tries and the mTLS handshake."""

from __future__ import annotations

from commsim.network import Message
from commsim.network.connection import HANDSHAKES, FlightExchange, hello_index


class _Node:
    """An instance (or the client node): application CPU, optional proxy."""

    __slots__ = ("name", "service", "index", "app", "proxy", "routable", "active", "error_rate",
                 "slowdown", "lbs", "breakers", "conns")

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
        self.breakers: dict = {}  # upstream node -> [consecutive failures, open until]
        self.conns: dict = {}     # upstream node -> _Conn


class _Conn:
    __slots__ = ("used", "open", "waiters")

    def __init__(self):
        self.used = 0
        self.open = False
        self.waiters: list = []


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
    """Mutual TLS between a caller and an upstream instance: the TCP + TLS 1.3
    flights of :mod:`commsim.network.connection` (its
    :class:`~commsim.network.connection.FlightExchange`) on the hops between
    them, with handshake CPU at the caller before its first flight and at the
    callee when it reads the ClientHello (both ends do key exchange and sign)."""

    __slots__ = ("model", "caller", "node", "conn", "exchange")

    def __init__(self, model, caller, node, conn):
        self.model = model
        self.caller = caller
        self.node = node
        self.conn = conn
        self.exchange = FlightExchange(HANDSHAKES["tls1.3"][0], 0, self._send, self._open,
                                       hello=hello_index("tls1.3"), server_work=self._server_cpu)

    def start(self) -> None:
        self.model._handshake_cpu(self.caller, self.exchange.step, None)

    def _send(self, direction, size, label, deliver, exchange) -> None:
        m = self.model
        a, b = (self.caller, self.node) if direction == "up" else (self.node, self.caller)
        msg = Message("handshake", a.name, b.name, handshake=size, created=m.env.now,
                      data=exchange, label=label)
        m._link(a, b).send(msg, deliver)

    def _server_cpu(self, resume) -> None:
        self.model._handshake_cpu(self.node, resume, None)

    def _open(self, _last) -> None:
        self.model._conn_open(self.conn)
