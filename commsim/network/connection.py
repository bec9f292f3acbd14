"""Connection set-up: TCP and TLS handshakes, keep-alive reuse.

Model and assumptions
---------------------
Handshakes are real message exchanges on the links, so they pay the same
latency, bandwidth and loss as requests and their bytes are counted under
``handshake``.  The client's last flight (TCP's ACK, TLS's Finished) travels
together with the first request, so it costs bytes but no round trip:

========  =====================================================  ============
mode      flights before the request can be sent                 round trips
========  =====================================================  ============
tcp       SYN ->, <- SYN-ACK                                     1
tls1.3    tcp, then ClientHello ->, <- ServerHello..Finished     1 + 1
tls1.2    tcp, ClientHello ->, <- ServerHello..Done,             1 + 2
          ClientKeyExchange+Finished ->, <- Finished
========  =====================================================  ============

Round trips follow RFC 793 (TCP), RFC 5246 (TLS 1.2) and RFC 8446 (TLS 1.3,
full handshake without 0-RTT).  Sizes are typical on-the-wire sizes: 60-byte
SYN and SYN-ACK (IP + TCP headers + options), a 517-byte ClientHello (as sent
by current browsers), a ~4 KB server flight carrying a two-certificate RSA-2048
chain, and small Finished/key-exchange flights.  The server spends
``network.tls_server_cpu`` of CPU per TLS handshake (key exchange and
signature) when it receives the ClientHello.

With ``network.keepalive: true`` a client opens one connection and reuses it
for every later request; with ``false`` every request opens a new connection.
A client never has more than one open connection in this model.
:meth:`Connections.close` ends one (the client went offline, an intermediary
dropped it), so the next request opens a new one even with keep-alive.

:func:`round_trips` and :func:`handshake_bytes` give each mode's closed form
(round trips before the first request; bytes per direction) for tests, docs
and theory.
"""

from __future__ import annotations

from commsim.network.message import Message

TCP_FLIGHTS = [("up", 60), ("down", 60)]
TCP_LAST = 52  # ACK, sent with the first request
TLS13_FLIGHTS = [("up", 517), ("down", 4000)]
TLS13_LAST = 74  # client Finished
TLS12_FLIGHTS = [("up", 517), ("down", 4000), ("up", 180), ("down", 60)]
TLS12_LAST = 0

HANDSHAKES = {
    "none": ([], 0),
    "tcp": (TCP_FLIGHTS, TCP_LAST),
    "tls1.3": (TCP_FLIGHTS + TLS13_FLIGHTS, TLS13_LAST + TCP_LAST),
    "tls1.2": (TCP_FLIGHTS + TLS12_FLIGHTS, TCP_LAST),
}


def round_trips(mode: str) -> int:
    """Round trips a handshake of ``mode`` adds before the first request."""
    return len(HANDSHAKES[mode][0]) // 2


def handshake_bytes(mode: str) -> tuple[int, int]:
    """(client-to-server, server-to-client) handshake bytes of one connection
    of ``mode``, the last flight that rides with the request included."""
    flights, last = HANDSHAKES[mode]
    up = sum(size for d, size in flights if d == "up") + last
    down = sum(size for d, size in flights if d == "down")
    return up, down


class Connections:
    """Opens (and, with keep-alive, remembers) each client's connection.

    ``ensure(client, then)`` calls ``then(extra_handshake_bytes)`` once the
    client may send its request; ``extra_handshake_bytes`` is the size of the
    client's last flight that rides along with the request.
    """

    def __init__(self, sim, network, server_cpu=None, config: dict | None = None):
        cfg = config if config is not None else sim.config["network"]
        self.sim = sim
        self.network = network
        self.cpu = server_cpu
        # Composition (commsim/nodes/cluster.py): ``cpu_of(client)`` names the
        # CPU of the instance the client's connection goes to (None: ``cpu``).
        self.cpu_of = None
        self.mode = cfg["handshake"]
        self.keepalive = cfg["keepalive"]
        self.tls_cpu = cfg["tls_server_cpu"] if self.mode.startswith("tls") else 0.0
        self.flights, self.last = HANDSHAKES[self.mode]
        self.enabled = self.mode != "none"  # a plain attribute: read on every request
        self.open: set = set()
        self.opened = 0      # connections opened inside the window
        self.handshakes = 0  # handshakes completed inside the window

    def ensure(self, client, then) -> None:
        if not self.flights or (self.keepalive and client in self.open):
            then(0)
            return
        if self.sim.now >= self.sim.start:
            self.opened += 1
        _Handshake(self, client, then).start()

    def done(self, client) -> None:
        """A request/response exchange finished; without keep-alive the
        connection closes (its FIN exchange is not modelled)."""
        if not self.keepalive:
            self.open.discard(client)

    def close(self, client) -> None:
        """The client's connection closed (it went offline, or a stream was
        dropped): its next request opens a new one, keep-alive or not."""
        self.open.discard(client)

    def dropped(self, msg) -> bool:
        """For a link's ``on_drop``: if ``msg`` is a handshake flight the link
        gave up on, its sender sends it again (True); else False."""
        if msg.kind == "handshake" and isinstance(msg.data, _Handshake):
            msg.data.resend()
            return True
        return False


class _Handshake:
    """One client's connection set-up on :class:`Connections`' links: the
    mode's flights walked by the shared :class:`FlightExchange`, with the
    server's TLS CPU when it reads the ClientHello."""

    __slots__ = ("conns", "client", "then", "exchange", "cpu", "_resume")

    def __init__(self, conns: Connections, client, then):
        self.conns = conns
        self.client = client
        self.then = then
        # The server CPU of this connection, fixed when it starts (a cluster's
        # instance for the client; else the one server).
        self.cpu = conns.cpu if conns.cpu_of is None else conns.cpu_of(client)
        tls = conns.cpu is not None and conns.tls_cpu > 0
        self.exchange = FlightExchange(conns.flights, conns.last, self._send, self._opened,
                                       hello=hello_index(conns.mode) if tls else None,
                                       server_work=self._server_tls if tls else None)

    def start(self) -> None:
        self.exchange.step()

    def resend(self) -> None:
        """The link gave up on the current flight: its sender sends it again."""
        self.exchange.resend()

    def _send(self, direction, size, label, deliver, exchange) -> None:
        c = self.conns
        if direction == "up":
            msg = Message("handshake", self.client, "server", handshake=size, created=c.sim.now,
                          data=self, label=label)
            c.network.up.send(msg, deliver)
        else:
            msg = Message("handshake", "server", self.client, handshake=size, created=c.sim.now,
                          data=self, label=label)
            c.network.down.send(msg, deliver)

    def _opened(self, last) -> None:
        c = self.conns
        if c.sim.now >= c.sim.start:
            c.handshakes += 1
        c.open.add(self.client)
        self.then(last)

    def _server_tls(self, resume) -> None:
        # The job's token stays None: a cluster that drops a crashed server's
        # queue recognises a TLS handshake job by it (commsim/nodes/cluster.py).
        self._resume = resume
        self.cpu.submit(self.conns.tls_cpu, "handshake", self._after_tls)

    def _after_tls(self, _token, _wait) -> None:
        self._resume()


# ------------------------------------------------------------------------
# The flight walker shared by every handshake driver (added for issue 10 by
# h10c; sidecar's mTLS connections and network/http.py use it).
# ------------------------------------------------------------------------

def hello_index(mode: str) -> int | None:
    """Index, in ``HANDSHAKES[mode][0]``, of the ClientHello: the flight on
    whose receipt the server does its TLS key exchange (``None`` without TLS)."""
    return len(TCP_FLIGHTS) if mode in ("tls1.2", "tls1.3") else None


class FlightExchange:
    """Walks one handshake's ``flights`` (``[(direction, size), ...]``).

    ``send(direction, size, label, deliver, exchange)`` puts one flight on the
    wire (``"up"``: client to server); the caller's link calls
    ``deliver(msg)`` when it arrives.  With ``server_work`` and ``hello`` (an
    index into ``flights``), receiving flight ``hello`` runs
    ``server_work(resume)`` first (the server's TLS CPU), which calls
    ``resume()`` when done.  After the last flight arrives,
    ``done(last)`` runs with ``last``, the size of the client's final flight
    that rides with the first request.  :meth:`resend` sends the current
    flight again (its link gave up on it).
    """

    __slots__ = ("flights", "last", "send", "done", "hello", "server_work", "i")

    def __init__(self, flights, last: int, send, done, hello: int | None = None,
                 server_work=None):
        self.flights = flights
        self.last = last
        self.send = send
        self.done = done
        self.hello = hello if server_work is not None else None
        self.server_work = server_work
        self.i = 0

    def step(self, _msg=None) -> None:
        i = self.i
        if i == len(self.flights):
            self.done(self.last)
            return
        direction, size = self.flights[i]
        self.i = i + 1
        deliver = self._hello if i == self.hello else self.step
        self.send(direction, size, f"handshake {i + 1}", deliver, self)

    def _hello(self, _msg) -> None:
        self.server_work(self.step)

    def resend(self) -> None:
        self.i -= 1
        self.step()
