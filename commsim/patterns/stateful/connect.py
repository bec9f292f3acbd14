"""The stateful pattern's client connections (``network.handshake``,
``keepalive``, ``tls_server_cpu``): set up by the one connection module,
:class:`~commsim.network.connection.Connections`.

Model and assumptions
---------------------
* Built only with ``network.handshake`` other than ``none``; with ``none``
  connection set-up is not modelled and the balancer routes every request
  by its policy (``keepalive`` then has nothing to keep).
* The balancer is L4 for connections: when a client opens one, the
  balancer picks a server by its policy (keyed by the client) and every
  flight of the handshake crosses client <-> balancer (the ``network``
  links: latency, bandwidth, loss) and balancer <-> that server (its
  ``backend_latency`` hop), so a handshake round trip is
  ``2 x (latency + backend_latency)``.  TLS terminates at the server: its
  CPU runs ``network.tls_server_cpu`` when the ClientHello arrives
  (:attr:`Connections.cpu_of`).  Every request on the connection goes to
  that server (the policy applies per connection, not per request).
* ``keepalive: true``: a client keeps its connection for later operations;
  ``false``: each operation opens one and closes it when it ends.  An
  operation that fails (a reset, an error, a message the link gave up on)
  closes its connection: the next one reconnects.
* No server routable when the client connects: the balancer refuses the
  connection (503, the operation fails).  A server that is down (the
  balancer has not noticed yet) or crashed and restarted since the connect
  began refuses it too (a reset back over the backend hop): the operation
  fails.  A crash drops the TLS work queued on the server and voids the
  running one (epoch guard): those connects fail the same way, and every
  open connection to the crashed server is closed.
"""

from __future__ import annotations

from commsim.network import Message
from commsim.network.connection import Connections


class _Conn:
    """One connection: the server the balancer picked and its epoch then;
    to :class:`Connections` it is the CPU of the handshake (``submit``)."""

    __slots__ = ("model", "server", "epoch", "op", "failed", "_done")

    def __init__(self, model, server, op):
        self.model = model
        self.server = server
        self.epoch = server.epoch if server is not None else -1
        self.op = op
        self.failed = False
        self._done = None

    def submit(self, work, purpose, done, token=None, wasted=False) -> None:
        """The server's TLS work for this connection (the job's token is the
        connection: a crash's dropped queue gives it back)."""
        self._done = done
        self.server.cpu.submit(work, purpose, self._tls_done, self, wasted)

    def _tls_done(self, _token, wait) -> None:
        if self.failed:
            return
        if self.server.current(self.epoch):
            self._done(None, wait)
        else:
            self.model.conns.refuse(self)


class _Direction:
    __slots__ = ("hops", "up")

    def __init__(self, hops, up: bool):
        self.hops = hops
        self.up = up

    def send(self, msg, deliver) -> None:
        self.hops.send(msg, deliver, self.up)


class _Hops:
    """What :class:`Connections` sees as its network (``up``, ``down``): a
    flight crosses the client's link and the picked server's backend hop."""

    def __init__(self, model):
        self.model = model
        self.up = _Direction(self, True)
        self.down = _Direction(self, False)

    def send(self, msg, deliver, up: bool) -> None:
        c: _Conn = msg.data.cpu  # the handshake's CPU, fixed at its start: the connection
        if c.failed:
            return
        m = self.model
        if up:
            m.net.up.send(msg, lambda x: self._at_balancer(x, c, deliver))
        else:
            c.server.link_out.send(msg, lambda x: m.net.down.send(x, deliver))

    def _at_balancer(self, msg, c: _Conn, deliver) -> None:
        if c.failed:
            return
        if c.server is None:
            self.model.conns.refuse(c)
            return
        c.server.link_in.send(msg, lambda x: self._at_server(x, c, deliver))

    def _at_server(self, msg, c: _Conn, deliver) -> None:
        if c.failed:
            return
        if not c.server.current(c.epoch):
            self.model.conns.refuse(c)
            return
        deliver(msg)


class ClientConnections:
    """Every client's connection to the balancer (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        # server_cpu only switches the TLS work on; cpu_of names the real one.
        self.conns = Connections(model.sim, _Hops(model), model.servers[0].cpu)
        self.conns.cpu_of = self._cpu_of
        self.conns.on_idle_close = self._idle_closed
        self.keepalive = self.conns.keepalive
        self.pin: dict = {}   # client -> its open connection (_Conn)
        self._op = None       # the operation whose connect is being started

    def open(self, op) -> None:
        """Connect (or reuse the kept-alive connection), then send ``op``'s
        first message."""
        self._op = op
        self.conns.ensure(op.cid, lambda extra: self._ready(op, extra))

    def _cpu_of(self, cid) -> _Conn:
        op = self._op
        op.conn = _Conn(self.model, self.model.lb.pick(cid), op)
        return op.conn

    def _ready(self, op, extra: int) -> None:
        if op.conn is None:  # reused: the client's kept-alive connection
            op.conn = self.pin[op.cid]
        else:
            self.pin[op.cid] = op.conn
        self.model.first_message(op, extra)

    def refuse(self, c: _Conn) -> None:
        """The connect failed: the client gets the refusal (from the balancer
        if no server was routable, else a reset from the server)."""
        if c.failed:
            return
        c.failed = True
        m = self.model
        if c.server is None:
            m._lb_reply(c.op, "503", 0)
        else:
            msg = Message("error", c.server.name, "lb", header=m.resp_header, created=m.sim.now,
                          data=c.op, label="reset")
            c.server.link_out.send(msg, m._lb_back)

    def finished(self, op, ok: bool) -> None:
        cid = op.cid
        if not ok or not self.keepalive:
            self.pin.pop(cid, None)
            self.conns.close(cid)
        else:  # idle from now on: network.idle_timeout may close it
            self.conns.done(cid)

    def _idle_closed(self, cid) -> None:
        """The server closed the client's idle connection: its next
        operation connects again (a new handshake, a new balancer pick)."""
        self.pin.pop(cid, None)

    def crashed(self, s, dropped) -> None:
        """Server ``s`` crashed: its open connections close; connects whose TLS
        work was queued there (``dropped`` job tokens) fail."""
        for cid in [cid for cid, c in self.pin.items() if c.server is s]:
            del self.pin[cid]
            self.conns.close(cid)
        for token in dropped:
            if type(token) is _Conn:
                self.refuse(token)

    def dropped(self, msg) -> bool:
        return self.conns.dropped(msg)

    def metrics(self) -> dict:
        return {"connections_opened": self.conns.opened, "handshakes": self.conns.handshakes,
                **self.conns.metrics()}
