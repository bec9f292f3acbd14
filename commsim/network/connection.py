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
dropped it), so the next request opens a new one even with keep-alive;
:meth:`Connections.reset` ends every one (the server restarted; a handshake
in flight is abandoned and its client must start again).

Idle close (``network.idle_timeout`` = tau, null by default: never).  A
kept-alive connection is *busy* while a request on it awaits its response
(``ensure``/``use`` ... ``done``) and *idle* otherwise; the server closes it
once it has been idle for tau (like nginx's ``keepalive_timeout``), and the
client's next request pays a new handshake (round trips, bytes,
``tls_server_cpu``).  The close happens at exactly last-activity + tau: since
tau is one constant, the deadlines are in the order the connections went
idle, so a FIFO of (client, idle since) with one pending wake-up holds them
(an entry whose client was used again meanwhile is skipped).  The close's
FIN exchange is not modelled (no bytes).  Each close is counted in the
recorder counter ``connections/idle_closed`` (metric
``connections_idle_closed``); ``on_idle_close(client)``, if a pattern sets
it, runs at the close (its own bookkeeping, a client that reconnects at
once).  Nothing of this runs, and no state is kept, when tau is null.

:func:`round_trips` and :func:`handshake_bytes` give each mode's closed form
(round trips before the first request; bytes per direction) for tests, docs
and theory.
"""

from __future__ import annotations

from collections import deque

from commsim.engine.events import call_at
from commsim.metrics import connections as _defs  # noqa: F401  (defines the metrics)
from commsim.network.message import Message

IDLE_CLOSED = "connections/idle_closed"  # the recorder counter of idle closes

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
    client's last flight that rides along with the request.  ``done(client)``
    says its response arrived.  ``use(client)`` marks one more request on an
    already open connection (for callers that keep their own "connected"
    state), ``touch(client)`` activity that awaits no response.
    """

    def __init__(self, sim, network, server_cpu=None, config: dict | None = None,
                 server: str = "server"):
        cfg = config if config is not None else sim.config["network"]
        self.sim = sim
        self.server = server  # the server's name on the handshake messages (traces)
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
        self.gen = 0         # bumped by reset(): handshakes of an older generation are void
        # Idle close (None: never; then none of the state below exists).
        self.idle = cfg.get("idle_timeout")
        self.on_idle_close = None
        if self.idle is not None:
            self.busy: dict = {}   # client -> requests awaiting their response
            self.since: dict = {}  # client -> time its connection went idle
            self._qc: deque = deque()  # FIFO of (client, deadline) in two deques
            self._qd: deque = deque()
            self._armed = False
            self.idle_closed = sim.recorder.counter(IDLE_CLOSED)

    def ensure(self, client, then) -> None:
        if not self.flights:
            then(0)
            return
        if self.keepalive and client in self.open:
            if self.idle is not None:
                self.busy[client] = self.busy.get(client, 0) + 1
            then(0)
            return
        if self.sim.now >= self.sim.start:
            self.opened += 1
        if self.idle is not None:
            self.busy[client] = 0  # a new connection: nothing of an old one is outstanding
        _Handshake(self, client, then).start()

    def use(self, client) -> bool:
        """True if ``client`` has an open connection; one more request on it
        then awaits its response (:meth:`done`)."""
        if client not in self.open:
            return False
        if self.idle is not None:
            self.busy[client] = self.busy.get(client, 0) + 1
        return True

    def touch(self, client) -> None:
        """Traffic that awaits no response (an ack, a commit) on the
        client's connection: an idle one starts its idle time again."""
        if self.idle is not None and not self.busy.get(client, 0):
            self._went_idle(client)

    def done(self, client) -> None:
        """A request/response exchange finished; without keep-alive the
        connection closes (its FIN exchange is not modelled); with an idle
        timeout, a connection with nothing left outstanding goes idle."""
        if not self.keepalive:
            self.open.discard(client)
        elif self.idle is not None:
            b = self.busy.get(client, 0) - 1
            if b > 0:
                self.busy[client] = b
            else:
                self.busy[client] = 0
                self._went_idle(client)

    def close(self, client) -> None:
        """The client's connection closed (it went offline, or a stream was
        dropped): its next request opens a new one, keep-alive or not."""
        self.open.discard(client)
        if self.idle is not None:
            self.busy.pop(client, None)
            self.since.pop(client, None)

    def reset(self) -> None:
        """The server restarted: every connection is gone, and a handshake
        still in flight is abandoned (its ``then`` never runs)."""
        self.gen += 1
        self.open.clear()
        if self.idle is not None:
            self.busy.clear()
            self.since.clear()

    def metrics(self) -> dict:
        """``connections_idle_closed`` when an idle timeout is set, else nothing."""
        return {} if self.idle is None else {"connections_idle_closed": self.idle_closed.n}

    # ------------------------------------------------------ idle close --
    def _went_idle(self, client) -> None:
        if client not in self.open:
            return
        now = self.sim.now
        self.since[client] = now
        deadline = now + self.idle
        self._qc.append(client)
        self._qd.append(deadline)
        if not self._armed:
            self._armed = True
            call_at(self.sim.env, deadline, self._expire, deadline)

    def _expire(self, event) -> None:
        due = event.value  # the deadline this wake-up was set for (no float drift)
        qc, qd, since, busy, tau = self._qc, self._qd, self.since, self.busy, self.idle
        is_open = self.open
        while qc:
            client = qc[0]
            deadline = qd[0]
            t = since.get(client)
            if t is None or t + tau != deadline or busy.get(client, 0) or client not in is_open:
                qc.popleft()  # used (or closed, or being re-opened) since it went idle: stale
                qd.popleft()
                continue
            if deadline > due:
                break
            qc.popleft()
            qd.popleft()
            del since[client]
            is_open.discard(client)
            self.idle_closed.add()
            if self.on_idle_close is not None:
                self.on_idle_close(client)
        if qc:
            call_at(self.sim.env, qd[0], self._expire, qd[0])
        else:
            self._armed = False

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

    __slots__ = ("conns", "client", "then", "exchange", "cpu", "_resume", "gen")

    def __init__(self, conns: Connections, client, then):
        self.conns = conns
        self.client = client
        self.then = then
        self.gen = conns.gen
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
            msg = Message("handshake", self.client, c.server, handshake=size, created=c.sim.now,
                          data=self, label=label)
            c.network.up.send(msg, deliver)
        else:
            msg = Message("handshake", c.server, self.client, handshake=size, created=c.sim.now,
                          data=self, label=label)
            c.network.down.send(msg, deliver)

    def _opened(self, last) -> None:
        c = self.conns
        if self.gen != c.gen:
            return  # the server restarted meanwhile: this connection never opened
        if c.sim.now >= c.sim.start:
            c.handshakes += 1
        c.open.add(self.client)
        if c.idle is not None:
            c.busy[self.client] = c.busy.get(self.client, 0) + 1  # the request it was opened for
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


# ------------------------------------------------------------------------
# Load-time check of network.idle_timeout (every pattern's ``check`` calls it).
# ------------------------------------------------------------------------

def check_idle_timeout(cfg: dict, refused: str | None = None) -> None:
    """Refuse ``network.idle_timeout`` where it cannot take effect.

    ``refused``: the pattern's reason it is not modelled there (then any
    non-null value is refused).  Otherwise it needs connections that exist
    (``network.handshake`` not none) and are kept alive (``keepalive: true``).
    """
    from commsim.errors import ConfigError

    net = cfg["network"]
    tau = net.get("idle_timeout")
    if tau is None:
        return
    got = f"got {tau:g}s; "
    if refused:
        raise ConfigError("network.idle_timeout", got + refused + ": use null")
    if net["handshake"] == "none":
        raise ConfigError("network.idle_timeout", got + "connections are modelled only with "
                          "network.handshake (tcp, tls1.2 or tls1.3); with none a closed "
                          "connection would cost nothing: set a handshake or use null")
    if not net["keepalive"]:
        raise ConfigError("network.idle_timeout", got + "with network.keepalive: false every "
                          "connection closes after its own request, so none is ever idle: "
                          "use keepalive: true or null")
