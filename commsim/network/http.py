"""HTTP/1.1, HTTP/2 and HTTP/3 clients over :mod:`commsim.network.transport`.

Model and assumptions
---------------------
An :class:`HttpClient` is one node's set of connections to one endpoint
(a browser's connections to one host, or a proxy's to its backend).

* ``http1``: a pool of up to ``limit`` TCP connections, opened on demand when
  requests wait and no open or opening connection can take them; each
  carries at most ``depth`` outstanding requests (``depth = 1``: no
  pipelining; with pipelining responses are sent in request order, so a slow
  response holds back the ones behind it).  Headers are sent in full on
  every request; no framing beyond the transport's.
* ``http2``: one TCP connection; up to ``max_streams`` concurrent streams,
  frames of different streams interleaved (round robin, one segment at a
  time).  Every HEADERS and DATA frame carries a 9-byte frame header (RFC
  9113), DATA frames hold at most 16 KiB.  HPACK: the first request (and
  first response) on a connection sends its headers in full; later ones send
  ``header_compression`` of them (the repeated fields are table indices).
* ``http3``: one QUIC connection, streams delivered independently (a loss
  stalls only its own stream).  Frames carry a 3-byte header (type and
  length varints, RFC 9114), one HEADERS and one DATA frame per message;
  QPACK is modelled like HPACK.
* Handshakes (``handshake`` mode): TCP connections use the flights of
  :mod:`commsim.network.connection` (tcp: 1 RTT, tls1.3: 2, tls1.2: 3); QUIC
  combines transport and TLS 1.3 in one round trip (1200-byte padded client
  Initial, ~4 KB server flight), or zero on resumption (0-RTT: the client's
  Initial rides with the first request).  Handshake flights go through the
  transport, so they can be lost and wait for a timeout.  The endpoint spends
  ``tls_cpu`` of CPU before sending its certificate flight.  HTTP/2's
  connection preface and SETTINGS frames, and TLS record overhead, are not
  modelled.
* Connections of a cold client are closed with :meth:`HttpClient.close`
  (no FIN exchange is modelled).
"""

from __future__ import annotations

from collections import deque

from commsim.network.connection import HANDSHAKES, FlightExchange, hello_index
from commsim.network.message import Message

H2_FRAME = 9
H3_FRAME = 3
MAX_FRAME = 16384
QUIC_FLIGHTS = [("up", 1200), ("down", 4000)]
QUIC_LAST = 74          # client Finished, with the first request
QUIC_0RTT_LAST = 1200   # the client's Initial (ClientHello) rides with the 0-RTT request

PROTOCOLS = ("http1", "http2", "http3")


def _ignore(_msg) -> None:
    pass


def _resume(resume, _wait) -> None:
    resume()


class Tier:
    """Connection counts of one tier (clients -> front, proxy -> backend):
    connections opened and handshakes completed in the window, and the
    connections open at once (a recorder :class:`~commsim.engine.recorder.Level`:
    ``peak`` is the most open at once *inside the window*)."""

    __slots__ = ("opened_n", "handshakes_n", "level")

    def __init__(self, sim, name: str):
        self.opened_n = sim.recorder.counter(f"{name}/connections_opened")
        self.handshakes_n = sim.recorder.counter(f"{name}/handshakes")  # completed in the window
        self.level = sim.recorder.level(f"{name}/connections_open")

    @property
    def opened(self) -> int:
        return self.opened_n.n

    @property
    def handshakes(self) -> int:
        return self.handshakes_n.n

    @property
    def open_now(self) -> int:
        return self.level.value

    @property
    def peak(self) -> int:
        return self.level.peak

    def open(self) -> None:
        self.opened_n.add()
        self.level.add(1)

    def closed(self, n: int) -> None:
        self.level.add(-n)


class Request:
    """One HTTP request and its response size; ``done(req)`` runs at the client
    once the response has been delivered."""

    __slots__ = ("body", "done", "conn", "stream", "t0", "done_at", "ready", "token",
                 "req_header_sent", "resp_header_sent")

    def __init__(self, body: int, done, token=None):
        self.body = body
        self.done = done
        self.token = token
        self.conn = None
        self.stream = 0
        self.t0 = 0.0       # sent on a connection
        self.done_at = 0.0  # response delivered
        self.ready = False
        self.req_header_sent = 0
        self.resp_header_sent = 0


class HttpConn:
    __slots__ = ("client", "tc", "open", "busy", "next_stream", "req_seen", "resp_seen",
                 "extra", "order")

    def __init__(self, client, tc):
        self.client = client
        self.tc = tc
        self.open = False
        self.busy = 0
        self.next_stream = 0
        self.req_seen = False
        self.resp_seen = False
        self.extra = 0
        self.order: deque = deque()

    # --------------------------------------------------------- handshake --
    def handshake(self) -> None:
        """Open the connection: walk the client's flights with the shared
        :class:`~commsim.network.connection.FlightExchange`; the endpoint's
        ``tls_cpu`` runs when it reads the ClientHello (QUIC: its Initial),
        before it sends its certificate flight."""
        c = self.client
        flights, last = c.flights
        ep = c.endpoint
        work = self._tls_work if ep.cpu is not None and ep.tls_cpu > 0 else None
        FlightExchange(flights, last, self._flight, self._opened, hello=c.hello,
                       server_work=work).step()

    def _flight(self, direction, size, label, deliver, _exchange) -> None:
        c = self.client
        now = c.sim.env.now
        if direction == "up":
            msg = Message("handshake", c.name, "server", handshake=size, created=now, label=label)
            self.tc.up.send(msg, 0, deliver)
        else:
            msg = Message("handshake", "server", c.name, handshake=size, created=now, label=label)
            self.tc.down.send(msg, 0, deliver)

    def _tls_work(self, resume) -> None:
        ep = self.client.endpoint
        ep.cpu.submit(ep.tls_cpu, "handshake", _resume, resume)

    def _opened(self, last) -> None:
        c = self.client
        c.tier.handshakes_n.add()
        self.open = True
        self.extra = last
        c.pump()
        if self.extra:
            # Nothing to send (other connections took the requests): the
            # client's last flight goes alone, outside the ordered stream
            # (like a bare ACK), so no later request waits for it.
            msg = Message("handshake", c.name, "server", handshake=self.extra,
                          created=c.sim.env.now)
            self.extra = 0
            self.tc.up.send(msg, 0, _ignore, unordered=True)

    # ---------------------------------------------------------- exchange --
    def send(self, req: Request) -> None:
        c = self.client
        self.busy += 1
        req.conn = self
        req.t0 = c.sim.env.now
        proto = c.protocol
        if proto == "http1":
            header = c.req_header
            framing = 0
            stream = 0
            self.order.append(req)
        else:
            self.next_stream += 1
            stream = self.next_stream
            if self.req_seen:
                header = c.req_header_repeat
            else:
                header = c.req_header
                self.req_seen = True
            framing = H2_FRAME if proto == "http2" else H3_FRAME
        req.stream = stream
        req.req_header_sent = header
        msg = Message("request", c.name, "server", header=header, framing=framing,
                      handshake=self.extra, created=req.t0, data=req)
        self.extra = 0
        self.tc.up.send(msg, stream, self._at_server)

    def _at_server(self, msg) -> None:
        self.client.endpoint.handle(msg.data)

    def respond(self, req: Request) -> None:
        """The endpoint has the response to ``req`` ready."""
        if self.client.protocol == "http1":
            req.ready = True
            order = self.order
            while order and order[0].ready:
                self._send_response(order.popleft())
        else:
            self._send_response(req)

    def _send_response(self, req: Request) -> None:
        c = self.client
        proto = c.protocol
        body = req.body
        if proto == "http1":
            header = c.resp_header
            framing = 0
        else:
            if self.resp_seen:
                header = c.resp_header_repeat
            else:
                header = c.resp_header
                self.resp_seen = True
            if proto == "http2":
                framing = H2_FRAME * (1 + -(-body // MAX_FRAME))
            else:
                framing = H3_FRAME * (2 if body > 0 else 1)
        req.resp_header_sent = header
        msg = Message("response", "server", c.name, header=header, payload=body,
                      framing=framing, created=c.sim.env.now, data=req)
        self.tc.down.send(msg, req.stream, self._at_client)

    def _at_client(self, msg) -> None:
        req = msg.data
        self.busy -= 1
        c = self.client
        sim = c.sim
        now = sim.env.now
        req.done_at = now
        stats = c.stats
        if stats is not None and now >= sim.start:
            stats[0] += req.req_header_sent + req.resp_header_sent
            stats[1] += 1
        req.done(req)
        c.pump()


class HttpClient:
    """One node's connections to one endpoint, and its queue of requests."""

    def __init__(self, sim, name: str, transport, up, down, endpoint, tier: Tier, *,
                 protocol: str, limit: int = 6, depth: int = 1, max_streams: int = 100,
                 handshake: str = "tls1.3", resumption: bool = False,
                 req_header: int = 500, resp_header: int = 300,
                 header_compression: float = 0.15, stats=None):
        self.sim = sim
        self.name = name
        self.transport = transport
        self.up = up
        self.down = down
        self.endpoint = endpoint
        self.tier = tier
        self.protocol = protocol
        self.limit = limit if protocol == "http1" else 1
        self.depth = depth if protocol == "http1" else max_streams
        if protocol == "http3":
            if handshake == "none":
                self.flights = ([], 0)
            elif resumption:
                self.flights = ([], QUIC_0RTT_LAST)
            else:
                self.flights = (QUIC_FLIGHTS, QUIC_LAST)
            self.hello = 0  # QUIC's Initial carries the ClientHello
        else:
            self.flights = HANDSHAKES[handshake]
            self.hello = hello_index(handshake)
        self.req_header = int(req_header)
        self.resp_header = int(resp_header)
        self.req_header_repeat = int(round(req_header * header_compression))
        self.resp_header_repeat = int(round(resp_header * header_compression))
        self.conns: list[HttpConn] = []
        self.queue: deque = deque()
        self.stats = stats  # [header bytes, requests] completed in the window, or None

    def request(self, req: Request) -> None:
        self.queue.append(req)
        self.pump()

    def pump(self) -> None:
        queue = self.queue
        conns = self.conns
        depth = self.depth
        while queue:
            opening = 0
            for c in conns:
                if not c.open:
                    opening += depth
                    continue
                while queue and c.busy < depth:
                    c.send(queue.popleft())
                if not queue:
                    return
            waiting = len(queue) - opening
            ready = False
            while waiting > 0 and len(conns) < self.limit:
                ready = self._open().open or ready
                waiting -= depth
            if not ready:
                return

    def _open(self) -> HttpConn:
        tc = self.transport.connect(self.up, self.down, ordered=self.protocol != "http3")
        c = HttpConn(self, tc)
        self.conns.append(c)
        self.tier.open()
        flights, last = self.flights
        if flights:
            c.handshake()
        else:  # no handshake, or QUIC 0-RTT: the request goes at once
            c.open = True
            c.extra = last
            if last:
                self.tier.handshakes_n.add()
        return c

    def close(self) -> None:
        """Close every connection (a cold client starting over)."""
        self.tier.closed(len(self.conns))
        self.conns = []
