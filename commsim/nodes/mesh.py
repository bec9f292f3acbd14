"""Service-mesh parts: the retry policy, the circuit breaker and mutual TLS.

One owner for what a mesh layer (a sidecar proxy, an in-process library, a
mesh ingress) does to a call, shared by ``pattern: sidecar``
(:mod:`commsim.patterns.sidecar`) and by ``topology.sidecar``
(:mod:`commsim.patterns.request_response_mesh`).  The proxy itself (worker
CPU, loopback links, per-leg delay) is :mod:`commsim.nodes.proxy`.

Model and assumptions
---------------------
* **Retries** (:class:`RetryPolicy`): a try fails on an error answer, a
  reset, or when the per-try ``timeout`` expires (the late answer is then
  dropped at the caller; the upstream still does the work: retry
  amplification).  After the k-th failed try (k = 1, 2, ...) the caller
  retries if fewer than ``retries`` retries were made, after a back-off
  drawn uniform in [0, ``backoff`` x 2^(k-1)] ("full jitter", one draw per
  retry on its own stream), each retry to a new balancer pick.
* **Circuit breaking** (:class:`CircuitBreaker`, Envoy's outlier
  detection): one per caller; after ``errors`` consecutive failed tries
  to an upstream the caller ejects it for ``open_for``; when that ends the
  upstream is tried again and (its count still at the threshold) one more
  failure ejects it again (half-open); a success resets the count.  If
  every routable upstream is ejected, the balancer ignores the ejections
  (a panic threshold of 100 %).  ``ejections`` counts the ejections in the
  measurement window.
* **Mutual TLS** (:class:`MtlsHandshake`, :class:`ConnectionPool`): a TLS
  1.3 handshake (the TCP + TLS flights of
  :mod:`commsim.network.connection`, walked by its ``FlightExchange`` over
  the caller's links), with handshake CPU at the caller before its first
  flight and at the callee when it reads the ClientHello (both ends do key
  exchange and sign).  A caller keeps one pooled connection per upstream:
  opened at first use, again after ``limit`` requests (``None``: never) and
  after :meth:`ConnectionPool.reset` (a crash); requests arriving while it
  opens wait for it.  Record encryption is CPU per request that the caller
  adds to each proxy leg (``mtls_cpu / 2`` per leg).
"""

from __future__ import annotations

from commsim.network.connection import HANDSHAKES, FlightExchange, hello_index

_UNIFORM = {"dist": "uniform", "low": 0, "high": 1}


class RetryPolicy:
    """Per-try timeout, retries and full-jitter exponential back-off."""

    __slots__ = ("retries", "timeout", "backoff", "_jitter")

    def __init__(self, sim, retries: int, timeout, backoff: float, stream: str):
        self.retries = retries
        self.timeout = timeout     # seconds, or None: no per-try timeout
        self.backoff = backoff
        self._jitter = sim.sampler(_UNIFORM, stream, "number")

    def exhausted(self, tries: int) -> bool:
        """After ``tries`` tries (the last failed): no retry left."""
        return tries > self.retries

    def wait(self, tries: int) -> float:
        """Back-off before the retry that follows the ``tries``-th try."""
        return self._jitter() * self.backoff * (2 ** (tries - 1))


class CircuitBreaker:
    """One caller's outlier detection over its upstreams (see the module
    docstring).  Upstreams are any objects a ``LoadBalancer`` picks."""

    __slots__ = ("env", "errors", "open_for", "ejections", "state")

    def __init__(self, env, errors: int, open_for: float, ejections):
        self.env = env
        self.errors = errors
        self.open_for = open_for
        self.ejections = ejections   # a recorder Counter (window)
        self.state: dict = {}        # upstream -> [consecutive failures, ejected until]

    def pick(self, lb, key=None):
        """``lb``'s pick among the upstreams not ejected now; if all are, any."""
        now = self.env.now
        st = self.state
        node = lb.pick(key, ok=lambda b: b not in st or st[b][1] <= now)
        if node is None:
            node = lb.pick(key)
        return node

    def ejected(self, upstream) -> bool:
        s = self.state.get(upstream)
        return s is not None and s[1] > self.env.now

    def record(self, upstream, ok: bool) -> None:
        """The outcome of one try to ``upstream``."""
        s = self.state.get(upstream)
        if s is None:
            s = self.state[upstream] = [0, 0.0]
        if ok:
            s[0] = 0
            return
        s[0] += 1
        now = self.env.now
        if s[0] >= self.errors and s[1] <= now:
            s[1] = now + self.open_for
            self.ejections.add()


class PooledConnection:
    __slots__ = ("used", "open", "waiters")

    def __init__(self):
        self.used = 0
        self.open = False
        self.waiters: list = []


class ConnectionPool:
    """One caller's mTLS connections, one per upstream.

    ``open_conn(upstream, conn)`` starts the handshake of a new connection;
    the caller calls :meth:`opened` when it completes.  ``send(item)`` sends
    one request on an open connection.
    """

    __slots__ = ("limit", "conns", "_open", "_send")

    def __init__(self, limit, open_conn, send):
        self.limit = limit    # requests per connection (None: persistent)
        self.conns: dict = {}
        self._open = open_conn
        self._send = send

    def ensure(self, upstream, item) -> None:
        conn = self.conns.get(upstream)
        limit = self.limit
        if conn is not None and conn.open and (limit is None or conn.used < limit):
            conn.used += 1
            self._send(item)
            return
        if conn is not None and not conn.open:
            conn.waiters.append(item)
            return
        conn = self.conns[upstream] = PooledConnection()
        conn.waiters.append(item)
        self._open(upstream, conn)

    def opened(self, conn: PooledConnection) -> None:
        conn.open = True
        waiters, conn.waiters = conn.waiters, []
        for item in waiters:
            conn.used += 1
            self._send(item)

    def reset(self, upstream) -> PooledConnection | None:
        """The connection to ``upstream`` is gone (a crash): the next request
        opens a new one.  Returns the old connection (its waiters are the
        caller's to fail), or None."""
        return self.conns.pop(upstream, None)

    def current(self, upstream, conn) -> bool:
        return self.conns.get(upstream) is conn


class MtlsHandshake:
    """One mTLS connection set-up: TLS 1.3 flights walked by the shared
    ``FlightExchange``.

    ``send(direction, size, label, deliver, exchange)`` puts a flight on the
    caller's link (``"up"``: caller to callee); ``client_cpu(then)`` and
    ``server_cpu(resume)`` run the handshake CPU at each end;
    ``opened(last)`` runs when the last flight arrived, with ``last`` the
    bytes of the caller's final flight that ride with its first request.
    ``last`` defaults to 0; both meshes (``pattern: sidecar`` and
    ``topology.sidecar``) pass :data:`TLS13_LAST` and send those bytes on the
    hop (nothing waits for them).
    """

    __slots__ = ("exchange", "_client_cpu")

    def __init__(self, send, opened, client_cpu, server_cpu, last: int = 0):
        self._client_cpu = client_cpu
        self.exchange = FlightExchange(HANDSHAKES["tls1.3"][0], last, send, opened,
                                       hello=hello_index("tls1.3"), server_work=server_cpu)

    def start(self) -> None:
        self._client_cpu(self.exchange.step)


#: Bytes of the caller's final flights (TCP ACK + TLS Finished) of TLS 1.3.
TLS13_LAST = HANDSHAKES["tls1.3"][1]
