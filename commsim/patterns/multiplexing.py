"""Multiplexing vs demultiplexing: HTTP/1.1 pools, HTTP/2 streams, HTTP/3, proxies.

Model and assumptions
---------------------
* Transport: :mod:`commsim.network.transport` (segments of ``mss`` bytes
  with ``segment_overhead`` bytes of packet headers, independent loss per
  transmission, fast retransmit after three later arrivals or a timeout of
  ``network.rto``, optional Reno slow start from ``initial_window``; TCP
  delivers in order per connection, QUIC per stream).
* HTTP: :mod:`commsim.network.http` (``http1`` pool of
  ``connections_per_host`` connections with optional pipelining, ``http2``
  one connection with ``max_streams`` interleaved streams and HPACK,
  ``http3`` one QUIC connection, 1-RTT or 0-RTT handshake).
* Topology: every client reaches the front end (the server, or the proxy)
  over the ``network`` links: ``network.latency`` one way, ``network.loss``
  per transmission, and ``network.bandwidth`` as the front end's access link
  shared by all connections in each direction (a FIFO transmitter).  A
  proxy reaches the backend over a loss-free path of ``backend_latency`` one
  way with no bandwidth limit.
* Server: a :class:`~commsim.nodes.Cpu` of ``server.cores`` that spends
  ``server.service_time`` per request, and ``network.tls_server_cpu`` before
  sending the certificate flight of a TLS or QUIC handshake it terminates.
* Proxy (``proxy: mux``): clients' connections end at the proxy, which
  forwards every request over ``backend_connections`` shared connections
  (``backend_protocol``, default http2: many client connections multiplexed
  onto a few).  ``proxy: demux``: the proxy forwards over a pool of up to
  ``backend_connections`` HTTP/1.1 connections (default backend protocol
  http1), one request at a time each: one HTTP/2 client connection fans
  out into many backend connections.  The proxy is a Cpu of ``proxy_cores``
  spending ``proxy_cpu_per_message`` on each request and each response it
  forwards, and the TLS cost of the client handshakes it terminates.
  Backend connections are opened on demand and kept for the whole run.
* Workloads (``workload``):

  - ``page``: each operation of a :class:`~commsim.clients.ClientPopulation`
    client is a page of ``objects`` objects with sizes drawn from
    ``object_size``.  Object 0 is requested at once; each later object is,
    with probability ``dependency``, discovered only when a uniformly chosen
    earlier object has been delivered (a stylesheet naming a font, a script
    fetching data), otherwise requested at once.  With ``warm_connections:
    false`` (default) every page starts on new connections (a cold load); the
    latency of an operation is its page load time.
  - ``api``: each operation is one request (``object_size`` response) on the
    client's persistent connections; concurrency comes from
    ``clients.mode: async`` (open loop) or many sync clients.

Records (``--records``, only when asked for): one ``page`` row per page load
and one ``request`` row per object (api: one ``request`` row per request),
outcome ok or unfinished (docs/multiplexing.md).

Not modelled: ACK bytes and ACK loss, receive windows and flow control,
HTTP/2 priorities and server push, TLS record overhead, HTTP/2 preface and
SETTINGS, connection failures (the transport retransmits until delivery),
browser parsing and rendering.
"""

from __future__ import annotations

import math

from commsim.clients import ClientPopulation
from commsim.config.schema import SECTIONS, Field, Section, register_section
from commsim.engine.recorder import OK, PAGE, REQUEST, UNFINISHED
from commsim.errors import ConfigError
from commsim.metrics import multiplexing as _metrics  # noqa: F401  (defines the metrics)
from commsim.metrics.collect import cpu_metrics, latency_metrics
from commsim.network.http import PROTOCOLS, HttpClient, Request, Tier
from commsim.network.transport import Path, Transport
from commsim.nodes import Cpu
from commsim.network.connection import check_idle_timeout
from commsim.patterns.base import CLIENT_QUEUE, CLIENT_QUEUE_WHY, Pattern, ignoring


SECTION = register_section(Section("multiplexing", {
    "protocol": Field("choice", "http2", "client protocol: http1 (connection pool), http2 "
                      "(streams over one TCP connection), http3 (streams over QUIC)",
                      choices=PROTOCOLS),
    "connections_per_host": Field("int", 6, "http1: most connections a client opens to a host "
                                  "(browsers use 6)", min=1),
    "pipelining": Field("int", 1, "http1: most outstanding requests per connection "
                        "(1: no pipelining; responses come back in request order)", min=1),
    "max_streams": Field("int", 100, "http2/http3: most concurrent streams per connection", min=1),
    "workload": Field("choice", "page", "page: each operation loads a page of `objects` objects; "
                      "api: each operation is one request", choices=("page", "api")),
    "objects": Field("int", 20, "objects per page", min=1),
    "object_size": Field("dist:size", {"dist": "lognormal", "mean": "20KiB", "cv": 1.5},
                         "response body size of each object or API request", min=0),
    "dependency": Field("fraction", 0.0, "probability that an object (after the first) is "
                        "discovered only once a random earlier object has arrived"),
    "request_header": Field("size", "500B", "header bytes of a request, uncompressed", min=0),
    "response_header": Field("size", "300B", "header bytes of a response, uncompressed", min=0),
    "header_compression": Field("fraction", 0.15, "http2/http3: fraction of header bytes still "
                                "sent once HPACK/QPACK tables hold them (after the first "
                                "request/response on a connection)"),
    "warm_connections": Field("bool", False, "page workload: keep connections between pages "
                              "(false: every page load is cold, with new handshakes)"),
    "resumption": Field("bool", False, "http3: resume sessions with 0-RTT (no handshake "
                        "round trip)"),
    "mss": Field("size", "1460B", "largest segment payload", min=1),
    "segment_overhead": Field("size", "40B", "packet header bytes per segment transmission "
                              "(IP + TCP; counted as framing)", min=0),
    "slow_start": Field("bool", True, "congestion window: slow start from initial_window, "
                        "halved on fast retransmit, 1 after a timeout (false: no window)"),
    "initial_window": Field("int", 10, "initial congestion window in segments (RFC 6928)", min=1),
    "proxy": Field("choice", "none", "none; mux: a reverse proxy multiplexing client "
                   "connections onto a few backend connections; demux: a proxy fanning "
                   "client streams out to HTTP/1.1 backend connections",
                   choices=("none", "mux", "demux")),
    "backend_protocol": Field("choice", None, "protocol from proxy to backend "
                              "(null: http2 for mux, http1 for demux; ignored without a "
                              "proxy, so that proxy can be swept)", choices=PROTOCOLS,
                              nullable=True),
    "backend_connections": Field("int", None, "proxy: most backend connections (null: 1 for "
                                 "mux, 64 for demux)", min=1, nullable=True),
    "backend_latency": Field("duration", "0.5ms", "one-way latency proxy <-> backend", min=0),
    "proxy_cores": Field("int", 1, "proxy CPU cores", min=1),
    "proxy_cpu_per_message": Field("duration", "20us", "proxy CPU to forward one request or "
                                   "one response", min=0),
}, doc="HTTP/1.1 connection pools, HTTP/2 and HTTP/3 multiplexing, and proxies.",
    pattern="multiplexing"))


class _Server:
    """The backend: application work per request on a Cpu."""

    def __init__(self, model):
        self.cpu = model.cpu
        self.tls_cpu = model.tls_cpu
        self._service = model.sim.sampler(model.sim.config["server"]["service_time"],
                                          "server/service")

    def handle(self, req: Request) -> None:
        self.cpu.submit(self._service(), "request", self._done, req)

    @staticmethod
    def _done(req, _wait) -> None:
        req.conn.respond(req)


class _Proxy:
    """Terminates client connections and forwards each request to the backend."""

    def __init__(self, model, backend: HttpClient):
        self.sim = model.sim
        self.cpu = Cpu(model.sim, "proxy", model.mx["proxy_cores"])
        self.tls_cpu = model.tls_cpu
        self.work = model.mx["proxy_cpu_per_message"]
        self.backend = backend
        self.added_sum = 0.0
        self.added_n = 0

    def handle(self, req: Request) -> None:
        now = self.sim.env.now
        self.cpu.submit(self.work, "proxy", self._forward, (req, now))

    def _forward(self, token, _wait) -> None:
        req, _t_in = token
        self.backend.request(Request(req.body, self._back, token))

    def _back(self, breq: Request) -> None:
        self.cpu.submit(self.work, "proxy", self._reply, breq)

    def _reply(self, breq: Request, _wait) -> None:
        req, t_in = breq.token
        now = self.sim.env.now
        if t_in >= self.sim.start:  # by hand: a sum and count per request (Samples keeps values)
            # the backend exchange runs from the request being sent on a backend
            # connection to its response being delivered; the rest was added here
            self.added_sum += (now - t_in) - (breq.done_at - breq.t0)
            self.added_n += 1
        req.conn.respond(req)


class _Spread:
    """Several multiplexed backend connections, used round robin."""

    def __init__(self, clients):
        self.clients = clients
        self.i = 0

    def request(self, req: Request) -> None:
        c = self.clients[self.i]
        self.i = (self.i + 1) % len(self.clients)
        c.request(req)


class _Page:
    __slots__ = ("model", "http", "done", "left", "children", "sizes", "roots")

    def __init__(self, model, http, done, sizes, children):
        self.model = model
        self.http = http
        self.done = done
        self.sizes = sizes
        self.children = children
        self.left = len(sizes)

    def fetch(self, i: int) -> None:
        m = self.model
        self.http.request(Request(self.sizes[i], self._got, (i, m.env.now)))

    def _got(self, req: Request) -> None:
        m = self.model
        i, t0 = req.token
        m.object_done(t0)
        kids = self.children[i]
        if kids:
            for j in kids:
                self.fetch(j)
        self.left -= 1
        if self.left == 0:
            if not m.warm:
                self.http.close()
            self.done()


class _RecordedPage(_Page):
    """A page whose load and object requests are rows of the recorder's
    ``Operations`` (used only with records on): one ``page`` row (``row``)
    and one ``request`` row per object, each filled when it completes, with
    the application bytes (headers as sent, after HPACK/QPACK, and the
    response body; summed over the objects for the page)."""

    __slots__ = ("row", "nbytes")

    def fetch(self, i: int) -> None:
        m = self.model
        ops = m.ops
        now = m.env.now
        r = len(ops)
        ops.record(REQUEST, now, math.nan, ops.client[self.row], -1, UNFINISHED)
        self.http.request(Request(self.sizes[i], self._got, (i, now, r)))

    def _got(self, req: Request) -> None:
        ops = self.model.ops
        i, t0, r = req.token
        size = req.req_header_sent + req.body + req.resp_header_sent
        ops.end[r] = self.model.env.now
        ops.size[r] = size
        ops.outcome[r] = OK
        self.nbytes += size
        req.token = (i, t0)
        _Page._got(self, req)


class Multiplexing:
    """The multiplexing model on one :class:`~commsim.engine.Simulation`."""

    def __init__(self, sim):
        cfg = sim.config
        mx = cfg["multiplexing"]
        net = cfg["network"]
        self.sim = sim
        self.env = sim.env
        self.mx = mx
        self.protocol = mx["protocol"]
        self.transport = Transport(sim, mss=mx["mss"], overhead=mx["segment_overhead"],
                                   rto=net["rto"], slow_start=mx["slow_start"],
                                   initial_window=mx["initial_window"])
        self.up = Path(sim, "up", net["latency"], net["bandwidth"], net["loss"])
        self.down = Path(sim, "down", net["latency"], net["bandwidth"], net["loss"])
        self.cpu = Cpu(sim, "server", cfg["server"]["cores"])
        self.tls_cpu = net["tls_server_cpu"]
        self.handshake = net["handshake"]
        self.client_tier = Tier(sim, "client")
        self.backend_tier = Tier(sim, "backend")
        self.server = _Server(self)
        self.proxy = None
        if mx["proxy"] != "none":
            kind = mx["proxy"]
            bproto = mx["backend_protocol"] or ("http2" if kind == "mux" else "http1")
            blimit = mx["backend_connections"] or (1 if kind == "mux" else 64)
            bup = Path(sim, "backend/up", mx["backend_latency"], None, 0.0)
            bdown = Path(sim, "backend/down", mx["backend_latency"], None, 0.0)
            if bproto == "http1":
                backend = self._client("proxy", bproto, bup, bdown, self.server,
                                       self.backend_tier, limit=blimit, depth=1)
            else:  # multiplexed backend connections: one client each, streams spread
                backend = _Spread([self._client(f"proxy{i}", bproto, bup, bdown, self.server,
                                                self.backend_tier, limit=1, depth=1)
                                   for i in range(blimit)])
            self.proxy = _Proxy(self, backend)
            self.front = self.proxy
        else:
            self.front = self.server
        self.warm = mx["warm_connections"] or mx["workload"] == "api"
        self._size = sim.sampler(mx["object_size"], "multiplexing/object_size", "size")
        self._u = sim.sampler({"dist": "uniform", "low": 0, "high": 1},
                              "multiplexing/page", "number")
        self.object_lat_sum = 0.0
        self.object_lat_n = 0
        self.https: list = [None] * cfg["clients"]["count"]
        self.header_tally = [0, 0]  # client tier: header bytes, requests completed in window
        self.api = mx["workload"] == "api"
        # Per-operation records (commsim run --records) only when asked for:
        # otherwise the clients call start_op, with plain pages.
        self.ops = sim.recorder.ops("multiplexing") if sim.recorder.records else None
        self.clients = ClientPopulation(sim, self.start_op if self.ops is None
                                        else self._start_recorded)

    def _client(self, name, protocol, up, down, endpoint, tier, limit, depth, stats=None):
        mx = self.mx
        return HttpClient(self.sim, name, self.transport, up, down, endpoint, tier,
                          protocol=protocol, limit=limit, depth=depth,
                          max_streams=mx["max_streams"], handshake=self.handshake,
                          resumption=mx["resumption"], req_header=mx["request_header"],
                          resp_header=mx["response_header"],
                          header_compression=mx["header_compression"], stats=stats)

    def http_of(self, client: int) -> HttpClient:
        """The client's persistent connections (warm pages, api)."""
        h = self.https[client]
        if h is None:
            h = self.https[client] = self._new_http(client)
        return h

    def _new_http(self, client: int) -> HttpClient:
        mx = self.mx
        return self._client(f"client{client}", self.protocol, self.up, self.down, self.front,
                            self.client_tier, mx["connections_per_host"], mx["pipelining"],
                            self.header_tally)

    # -------------------------------------------------------------- flow --
    def start_op(self, client: int, done) -> None:
        if self.api:
            self.http_of(client).request(Request(int(self._size()), self._api_done,
                                                 (done, self.env.now)))
            return
        page = self._page(_Page, client, done)
        for i in page.roots:
            page.fetch(i)

    def _start_recorded(self, client: int, done) -> None:
        """start_op that also records the operation (``Operations``): the
        same draws in the same order, so the run is unchanged; used only
        with records on."""
        ops = self.ops
        r = len(ops)
        ops.record(PAGE if not self.api else REQUEST, self.env.now, math.nan, client, -1,
                   UNFINISHED)
        if self.api:
            self.http_of(client).request(Request(int(self._size()), self._api_recorded,
                                                 (done, self.env.now, r)))
            return
        env = self.env

        def finished() -> None:
            ops.end[r] = env.now
            ops.size[r] = page.nbytes
            ops.outcome[r] = OK
            done()

        page = self._page(_RecordedPage, client, finished)
        page.row = r
        page.nbytes = 0
        for i in page.roots:
            page.fetch(i)

    def _api_recorded(self, req: Request) -> None:
        ops = self.ops
        done, t0, r = req.token
        ops.end[r] = self.env.now
        ops.size[r] = req.req_header_sent + req.body + req.resp_header_sent
        ops.outcome[r] = OK
        req.token = (done, t0)
        self._api_done(req)

    def _page(self, cls, client: int, done):
        """A page load's objects (sizes, dependencies) drawn, as ``cls``;
        ``page.roots`` are the objects requested at once."""
        mx = self.mx
        size = self._size
        n = mx["objects"]
        sizes = [int(size()) for _ in range(n)]
        children: list[list[int]] = [[] for _ in range(n)]
        roots = [0]
        dep = mx["dependency"]
        u = self._u
        for i in range(1, n):
            if dep > 0 and u() < dep:
                children[min(int(u() * i), i - 1)].append(i)
            else:
                roots.append(i)
        # A cold page load has connections of its own (so overlapping pages of
        # an async client do not share them); a warm one uses the client's.
        http = self.http_of(client) if self.warm else self._new_http(client)
        page = cls(self, http, done, sizes, children)
        page.roots = roots
        return page

    def _api_done(self, req: Request) -> None:
        done, t0 = req.token
        self.object_done(t0)
        done()

    def object_done(self, t0: float) -> None:
        if t0 >= self.sim.start:  # by hand: per object (hot), a sum and a count
            self.object_lat_sum += self.env.now - t0
            self.object_lat_n += 1

    # ----------------------------------------------------------- metrics --
    def metrics(self) -> dict:
        sim = self.sim
        lat = self.clients.latencies
        out = {"throughput": lat.completed / sim.duration}
        out.update(latency_metrics(lat.values))
        nan = math.nan
        out["page_load_time"] = out["latency_mean"] if self.mx["workload"] == "page" else nan
        out["object_latency_mean"] = (self.object_lat_sum / self.object_lat_n
                                      if self.object_lat_n else nan)
        t = self.transport
        out["hol_blocked_s"] = t.hol_blocked_s
        out["retransmissions"] = t.retransmissions
        out["rto_timeouts"] = t.timeouts
        hb, hn = self.header_tally
        out["header_bytes_per_request"] = hb / hn if hn else nan
        out.update(cpu_metrics(self.cpu))
        out["requests"] = sim.bytes.messages("request")
        out["responses"] = sim.bytes.messages("response")
        ct, bt = self.client_tier, self.backend_tier
        out["connections_opened"] = ct.opened + bt.opened
        out["handshakes"] = ct.handshakes + bt.handshakes
        out["client_connections_opened"] = ct.opened
        out["backend_connections_opened"] = bt.opened
        out["client_connections_peak"] = ct.peak
        out["backend_connections_peak"] = bt.peak
        if self.proxy is not None:
            p = self.proxy
            out["proxy_cpu_s"] = p.cpu.account.total
            out["proxy_utilization"] = p.cpu.account.utilization()
            out["proxy_added_mean"] = p.added_sum / p.added_n if p.added_n else nan
        else:
            out["proxy_cpu_s"] = 0.0
            out["proxy_utilization"] = 0.0
            out["proxy_added_mean"] = nan
        return out

    def in_flight(self) -> int:
        return self.transport.in_flight


def figures(result, out_dir):
    from commsim.figures.multiplexing import multiplexing_figures

    return multiplexing_figures(result, out_dir)


def _check_network(cfg: dict) -> None:
    check_idle_timeout(cfg, _IDLE_REFUSED)
    if not cfg["network"]["keepalive"]:
        raise ConfigError("network.keepalive", "got false; in the multiplexing pattern connection "
                          "reuse is multiplexing.warm_connections (false: every page load opens "
                          "new connections)")
    retries = cfg["network"]["max_retries"]
    if retries != SECTIONS["network"].fields["max_retries"].default:
        raise ConfigError("network.max_retries", f"got {retries}; the multiplexing pattern's "
                          "segment transport retransmits a lost segment until it is delivered "
                          "(TCP and QUIC do not give up within a page load): leave it unset")


_IDLE_REFUSED = ("its connections are the page loads' own (network/http.py; reuse is "
                 "multiplexing.warm_connections), not the connection module's")

PATTERN = Pattern(
    name="multiplexing",
    summary="HTTP/1.1 connection pools vs HTTP/2 and HTTP/3 streams over a lossy segment "
            "transport; multiplexing and demultiplexing proxies",
    model=Multiplexing,
    sections=("multiplexing",),
    figures=figures,
    ignores=ignoring(CLIENT_QUEUE, CLIENT_QUEUE_WHY),
    check=_check_network, network={
        "latency": "one-way latency of the segment transport",
        "bandwidth": "the front end's access link, shared by every connection",
        "loss": "segments lost with probability loss, recovered by fast retransmit or an rto "
                "timeout (head-of-line blocking where the protocol has it); max_retries is "
                "refused: the transport retransmits until delivered",
        "connections": "http1/http2 use handshake (TCP, TLS) and tls_server_cpu, http3 QUIC's; "
                       "keepalive: false is refused (connection reuse is "
                       "multiplexing.warm_connections)",
        "wire": "refused: the segment transport counts its own packet headers "
                "(multiplexing.segment_overhead)",
        "idle_close": "refused: " + _IDLE_REFUSED})
