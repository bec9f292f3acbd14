"""Request-response: a client sends a request, the server parses and
processes it and sends a response, the client parses the response.

Model and assumptions
---------------------
* Clients are a :class:`~commsim.clients.ClientPopulation` (``sync``: closed
  loop with blocking; ``async``: open-loop Poisson).
* A request carries ``request_header`` bytes of headers and a body of
  ``request_body`` bytes (written as its JSON size, scaled by the encoding);
  the response likewise (``response_header``, ``response_body``).
* Encoding (:mod:`commsim.network.encoding`): the sender serialises and the
  receiver parses each body at ``cpu_per_kb``.  On the server this is CPU work
  queued with the request; on the client it is a delay (each client has its
  own CPU, never a bottleneck).
* Chunked upload: with ``chunk_size`` set and a request body larger than it,
  the body is sent as ``ceil(body / chunk_size)`` requests in sequence, each
  with its own headers and each acknowledged by a header-only response before
  the next is sent; the last carries the response body.  The operation's
  latency runs from the first chunk to the last response.
* The server is a :class:`~commsim.nodes.Cpu` with ``server.cores`` cores;
  each request needs parse + ``server.service_time`` + serialise of CPU.
* Connections (:mod:`commsim.network.connection`) are set up only when
  ``network.handshake`` asks for it.

With zero latency, no encoding and no handshake or bandwidth, this is exactly
an M/G/c queue (M/M/c with exponential service) fed by the clients.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from itertools import repeat
from operator import add, sub

from commsim.accounting.work import WorkCosts
from commsim.clients import ClientPopulation
from commsim.clients.population import check_cycle_takes_time
from commsim.config.schema import Field, Section, register_section
from commsim.engine.ahead import ArrivalOrder, Unsettled, ends_at_the_window
from commsim.engine.events import Waker
from commsim.engine.recorder import OK, REQUEST, UNFINISHED
from commsim.metrics.collect import client_server_metrics
from commsim.network import Message, Network
from commsim.network.connection import Connections, check_idle_timeout
from commsim.network.encoding import PRESETS, Encoding
from commsim.nodes import Cpu
from commsim.patterns.base import CLIENT_QUEUE, CLIENT_QUEUE_WHY, IDLE_CLOSE, WIRE_COUNTED, Pattern, ignoring

SECTION = register_section(Section("request_response", {
    "request_header": Field("size", "400B", "header bytes of each request", min=0),
    "request_body": Field("dist:size", "0B", "request body size (as JSON)", min=0),
    "response_header": Field("size", "300B", "header bytes of each response", min=0),
    "response_body": Field("dist:size", "1KiB", "response body size (as JSON)", min=0),
    "encoding": Field("choice", "none", "body encoding; sets size factor and parse CPU "
                      "(see docs/request_response.md)", choices=tuple(PRESETS)),
    "size_factor": Field("number", None, "override the encoding's size factor", min=0,
                         min_exclusive=True, nullable=True),
    "parse_cpu_per_kb": Field("duration", None, "override the encoding's CPU per KiB "
                              "to serialise or parse", min=0, nullable=True),
    "chunk_size": Field("size", None, "upload request bodies larger than this in chunks, "
                        "one request per chunk (null: never chunk)", min=0,
                        min_exclusive=True, nullable=True),
}, doc="Request and response sizes, encoding and chunked uploads.", pattern="request_response"))

#: The run-ahead mode (see ``RequestResponse._run_ahead``); tests turn it off
#: to compare it with the event-driven path.
RUN_AHEAD = True


def exchanges_ahead(cfg: dict) -> bool:
    """Does a resolved request-response run config take the run-ahead mode
    (:meth:`RequestResponse._run_ahead`)?  Its configuration side: one
    server (no topology), open-loop (``async``) clients, hops of constant
    latency without loss, bandwidth or segment counting, no handshakes, no
    chunked uploads, no encoding CPU and no per-kind CPU costs: each request
    is one message each way whose times nothing but the server's FIFO CPU
    changes.  (A trace or ``--records`` also keep the event-driven path.)"""
    from commsim.dists import make_distribution
    from commsim.nodes import cluster

    if cfg["pattern"] != "request_response" or cluster.active(cfg):
        return False
    net, rr = cfg["network"], cfg["request_response"]
    encoding = Encoding(rr["encoding"], rr["size_factor"], rr["parse_cpu_per_kb"])
    latency = make_distribution(net["latency"], "duration", "network.latency")
    return (cfg["clients"]["mode"] == "async" and latency.is_constant and not net.get("loss")
            and net.get("bandwidth") is None and not net.get("segment_overhead")
            and net.get("handshake", "none") == "none" and rr["chunk_size"] is None
            and encoding.cpu_per_kb == 0 and not WorkCosts(cfg["server"]).any)


class _Upload:
    """One operation: the chunks of a request, sent one after another."""

    __slots__ = ("model", "client", "done", "chunks", "sent", "body", "response_body")

    def __init__(self, model, client, done, body, response_body):
        self.model = model
        self.client = client
        self.done = done
        self.body = body
        self.response_body = response_body
        chunk = model.chunk_size
        self.chunks = max(1, math.ceil(body / chunk)) if chunk and body > chunk else 1
        self.sent = 0

    def next_chunk(self) -> None:
        if self.model.conns.enabled:
            self.model.conns.ensure(self.client, self._send)
        else:
            self._send(0)

    def _send(self, extra_handshake: int) -> None:
        m = self.model
        i = self.sent
        self.sent += 1
        if self.chunks == 1:
            body = self.body
        else:
            chunk = int(m.chunk_size)
            body = chunk if i < self.chunks - 1 else self.body - chunk * (self.chunks - 1)
        label = "request" if self.chunks == 1 else f"request {i + 1}/{self.chunks}"
        msg = Message("request", self.client, "server", m.req_header, body, 0, extra_handshake,
                      m.env.now, self, label)
        delay = m.encoding.cpu(body) if m.encoded else 0.0
        if delay > 0:
            m.env.timeout(delay).callbacks.append(lambda _e: m.net.up.send(msg, m.server_receive))
        else:
            m.net.up.send(msg, m.server_receive)

    def response(self, msg) -> None:
        m = self.model
        if m.conns.enabled:
            m.conns.done(self.client)
        if self.sent < self.chunks:
            self.next_chunk()
            return
        delay = m.encoding.cpu(msg.payload) if m.encoded else 0.0
        if delay > 0:
            m.env.timeout(delay).callbacks.append(lambda _e: self.done())
        else:
            self.done()


class RequestResponse:
    """The request-response model on one :class:`~commsim.engine.Simulation`."""

    #: The operation class (a composed model's own, e.g. routed by a cluster).
    upload_class = _Upload
    #: Zero-time hops deliver inside ``send`` (:meth:`Link.deliver_at_once`;
    #: no wake-up event per message).  Checked re-entrant-safe here: every
    #: sender calls ``send`` as its last step with its state already updated
    #: (``_Upload._send``, ``_respond`` as the last step of ``Cpu._finish``,
    #: the handshake's flight walker, which advances before it sends).  A
    #: composed model whose senders do more after a send turns it off.
    sync_hops = True
    #: The plain exchange's fast path (:meth:`_start_plain`) where it applies;
    #: False runs the general path (the tests compare the two metric by metric).
    fast_plain = True

    def __init__(self, sim):
        cfg = sim.config
        rr = cfg["request_response"]
        self.sim = sim
        self.env = sim.env
        self.net = Network(sim)
        self.cpu = Cpu(sim, "server", cfg["server"]["cores"])
        self.conns = Connections(sim, self.net, self.cpu)
        self.encoding = Encoding(rr["encoding"], rr["size_factor"], rr["parse_cpu_per_kb"])
        self.req_header = int(rr["request_header"])
        self.resp_header = int(rr["response_header"])
        self.chunk_size = rr["chunk_size"]
        enc = self.encoding
        self.encoded = enc.cpu_per_kb > 0
        self._req_body = self._body_sampler(rr["request_body"], "request_response/request_body")
        self._resp_body = self._body_sampler(rr["response_body"], "request_response/response_body")
        self._service = sim.sampler(cfg["server"]["service_time"], "server/service")
        self.costs = WorkCosts(cfg["server"])  # per-kind CPU (issue 13); all 0 by default
        # Per-operation records (commsim run --records) only when asked for:
        # otherwise the clients call start_op directly, at no cost.
        self.ops = sim.recorder.ops("request_response") if sim.recorder.records else None
        # The plain exchange (see _start_plain): one message each way, no state per operation.
        self.plain = (self.fast_plain and type(self) is RequestResponse and self.ops is None
                      and self.chunk_size is None and not self.encoded and not self.costs.any
                      and not self.conns.enabled and self.net.up.loss == 0
                      and self.net.down.loss == 0)
        self.ahead = (self.plain and RUN_AHEAD and sim.tracer is None and exchanges_ahead(cfg)
                      and self.net.up.can_post() and self.net.down.can_post())
        if self.plain:
            self._send_up, self._send_down = self.net.up.send, self.net.down.send
            self._plain_in, self._plain_out = self._receive_plain, self._respond_plain
            start = self._start_plain
        else:
            start = self.start_op if self.ops is None else self._start_recorded
        self.clients = ClientPopulation(sim, start, ahead=self.ahead)
        if self.ahead:
            self._start_ahead(rr)
        self.net.up.on_drop = self.net.down.on_drop = self._lost
        if self.sync_hops:
            self.net.up.deliver_at_once()
            self.net.down.deliver_at_once()

    def _lost(self, msg) -> None:
        """A message the link gave up on (loss beyond ``network.max_retries``):
        its sender notices and tries again at once (a request or response is
        re-sent as a new request of the same chunk; a handshake flight is sent
        again), so no client waits forever."""
        data = msg.data
        if isinstance(data, _Upload):
            data.sent -= 1
            data.next_chunk()
        elif data is not None:
            data.resend()

    def _body_sampler(self, spec, stream):
        enc = self.encoding
        if not isinstance(spec, dict):  # constant size: computed once
            # (a C-level callable: no Python frame per request)
            return itertools.repeat(enc.encoded_size(spec)).__next__
        draw = self.sim.sampler(spec, stream, "size")
        return lambda: enc.encoded_size(draw())

    # -------------------------------------------------------------- flow --
    def start_op(self, client, done) -> None:
        up = _Upload(self, client, done, self._req_body(), self._resp_body())
        if self.conns.enabled:  # next_chunk's work written out (per request, hot)
            self.conns.ensure(client, up._send)
        else:
            up._send(0)

    # The plain exchange: the general path's work where a request is one
    # chunk, bodies are not encoded, no connection is set up, the server has
    # no per-kind costs, the hops lose nothing and no records are kept.  The
    # same draws in the same order and the same messages, so the same
    # metrics; what it saves is the _Upload (the request carries ``(done,
    # response body)``) and the general path's branches.  Assumes the plain
    # model (not a composed subclass) and lossless hops (``_lost`` never
    # sees its messages).
    def _start_plain(self, client, done) -> None:
        # argument order = draw order: request body, then response body (as _Upload(...))
        self._send_up(Message("request", client, "server", self.req_header, self._req_body(), 0, 0,
                              self.env.now, (done, self._resp_body()), "request"), self._plain_in)

    def _receive_plain(self, msg) -> None:
        self.cpu.submit(self._service(), "request", self._plain_out, msg)

    def _respond_plain(self, req, _wait) -> None:
        data = req.data
        self._send_down(Message("response", "server", req.src, self.resp_header, data[1], 0, 0,
                                self.env.now, data, "response"), _answered)

    def _start_recorded(self, client, done) -> None:
        """start_op that also records the operation (``Operations``: sent,
        completed, bytes, outcome); used only with records on."""
        ops = self.ops
        up = self.upload_class(self, client, None, self._req_body(), self._resp_body())
        i = len(ops)
        size = up.chunks * (self.req_header + self.resp_header) + up.body + up.response_body
        ops.record(REQUEST, self.env.now, math.nan, client, size, UNFINISHED)
        env = self.env

        def finished() -> None:
            ops.end[i] = env.now
            ops.outcome[i] = OK
            done()

        up.done = finished
        up.next_chunk()

    def server_receive(self, msg) -> None:
        upload = msg.data
        resp_body = upload.response_body if upload.sent == upload.chunks else 0
        work = self._service()
        if self.encoded:
            work += self.encoding.cpu(msg.payload) + self.encoding.cpu(resp_body)
        if self.costs.any:
            work += self.costs.exchange(msg.payload, resp_body, msg.handshake > 0)
        self.cpu.submit(work, "request", self._respond, (msg, resp_body))

    def _respond(self, token, _wait) -> None:
        req, resp_body = token
        upload = req.data
        label = "response" if upload.chunks == 1 else f"response {upload.sent}/{upload.chunks}"
        msg = Message("response", "server", req.src, self.resp_header, resp_body, 0, 0,
                      self.env.now, upload, label)
        self.net.down.send(msg, upload.response)

    # ----------------------------------------------------------- run ahead --
    #: Arrivals handled per wake-up in run-ahead mode: those of this many
    #: seconds, or of the time ``AHEAD_REQUESTS`` requests take on average if
    #: longer (it changes the number of wake-ups only).
    AHEAD_BATCH = 0.005
    AHEAD_REQUESTS = 2048

    def _start_ahead(self, rr: dict) -> None:
        sim = self.sim
        cl = sim.config["clients"]
        self._batch = max(self.AHEAD_BATCH, self.AHEAD_REQUESTS / (cl["count"] * cl["rate"]))
        self._take_service = sim.block_sampler(sim.config["server"]["service_time"],
                                               "server/service")
        self._req_bodies = self._body_block(rr["request_body"], "request_response/request_body")
        self._resp_bodies = self._body_block(rr["response_body"],
                                             "request_response/response_body")
        self._d_up = self.net.up.constant_latency
        self._d_down = self.net.down.constant_latency
        # Responses are counted once the clock has passed their arrival (or at
        # the end): batches of (finish, start time, response body).
        self._unsettled = Unsettled(self._count_responses)
        self._samples = ArrivalOrder(self.clients.latencies.values)
        self._ahead_in_flight = 0
        self._tick = Waker(sim.env, self._run_ahead)
        self._tick.arm_at(0.0)
        sim.at_end(self._ahead_end)
        ends_at_the_window(sim, "request_response", "request_response.RUN_AHEAD = False")

    def _body_block(self, spec, stream: str):
        """``_body_sampler``'s sizes, ``k`` at a time (the same sequence)."""
        enc = self.encoding
        if not isinstance(spec, dict):
            size = enc.encoded_size(spec)
            return lambda k: [size] * k
        take = self.sim.block_sampler(spec, stream, "size")
        return lambda k: [enc.encoded_size(x) for x in take(k)]

    def _run_ahead(self, _event) -> None:
        """Every request started from now to a batch later (and before the
        run ends), with its whole exchange, at once.

        Exact for the configurations :func:`exchanges_ahead` admits: open-loop
        clients start requests at the times the event-driven source would
        (:meth:`ClientPopulation.arrivals_before`), each hop has a constant
        latency ``d`` and keeps order, and the server's CPU is FIFO
        (:meth:`Cpu.admit_many` computes start and finish at arrival).  So a
        request started at ``t`` reaches the server at ``t + d``, its
        response leaves at its CPU finish ``f`` and reaches the client at
        ``f + d``, with the event-driven path's times, bytes, CPU and latency
        samples (kept in order of arrival).  Responses are counted once the
        clock has passed them (a run stopped by ``max_run_queue`` counts none
        after its stop).  What the run's end cuts off stays cut off.  Sums of
        times (the CPU's wait, sojourn and jobs present) are added in another
        order, so they can differ in the last bits; counts are equal.
        """
        sim = self.sim
        lo, hi = sim.start, sim.end
        now = self.env.now
        self._unsettled.settle(now)
        until = now + self._batch
        if until > hi:
            until = hi
        # No more jobs than can join the run queue without reaching
        # max_run_queue: near it the batches shrink to one request, whose
        # wake-up is at its arrival at the server, so a run stops where the
        # event-driven one stops, having counted what it counts.
        most = sim.max_run_queue - self.cpu.queued - 1
        clients = self.clients
        starts = clients.arrivals_before(until, most if most > 1 else 1)
        k = len(starts)
        if k:
            req, resp = self._req_bodies(k), self._resp_bodies(k)
            counter = sim.bytes
            counter.sent += k
            if starts[0] >= lo:
                counter.transmit_many("request", k, self.req_header, sum(req))
            else:
                inside = [i for i, t in enumerate(starts) if t >= lo]
                if inside:
                    counter.transmit_many("request", len(inside), self.req_header,
                                          sum(req[i] for i in inside))
            d_up = self._d_up
            at = list(map(partial(add, d_up), starts)) if d_up else starts
            if at[-1] >= hi:  # those reaching the server at or after the end are in flight
                m = next(i for i, a in enumerate(at) if a >= hi)
                self._ahead_in_flight += k - m
                at, starts, resp = at[:m], starts[:m], resp[:m]
            if at:
                counter.delivered += len(at)
                finish = self.cpu.admit_many(at, self._take_service(len(at)), repeat(False),
                                             "request")
                d = self._d_down
                self._unsettled.add(min(finish) + d, max(finish) + d, finish, starts, resp)
        # The next request, started at ``nxt``, is answered after ``nxt + 2d``.
        nxt = clients.next_arrival()
        self._samples.emit(min(nxt + self._d_up + self._d_down, self._unsettled.first()))
        # Next: the next request's start, or if this batch was cut short
        # (requests before ``until`` left), its arrival at the server.
        at = nxt + self._d_up if nxt < until else nxt
        if at < hi:
            self._tick.arm_at(at)

    def _count_responses(self, finish: list, starts: list, bodies: list) -> None:
        """Run ahead: one batch's responses, counted against the end of the
        run: sent if they leave before it, delivered (a latency sample for a
        request started in the window, a completion if it arrives in it) if
        they arrive before it."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        d = self._d_down
        counter = sim.bytes
        lat = self.clients.latencies
        k = len(finish)
        if starts[0] >= lo and max(finish) + d < hi:  # in bulk: all in the window
            counter.sent += k
            counter.delivered += k
            counter.transmit_many("response", k, self.resp_header, sum(bodies))
            lat.completed += k
            r = list(map(partial(add, d), finish)) if d else finish
            self._samples.add(r, map(sub, r, starts))
            return
        sent = delivered = responses = payload = completed = 0
        arrive: list = []
        values: list = []
        for f, t, body in zip(finish, starts, bodies):
            if f >= hi:
                continue  # never answered inside the run
            sent += 1
            if f >= lo:
                responses += 1
                payload += body
            r = f + d
            if r >= hi:
                self._ahead_in_flight += 1
                continue
            delivered += 1
            if r >= lo:  # Samples.record at r
                completed += 1
                if t >= lo:
                    arrive.append(r)
                    values.append(r - t)
        counter.sent += sent
        counter.delivered += delivered
        if responses:
            counter.transmit_many("response", responses, self.resp_header, payload)
        lat.completed += completed
        if arrive:
            self._samples.add(arrive, values)

    def _ahead_end(self) -> None:
        """At the end (or a stop): requests sent but not taken yet are in
        flight; every response left is counted against the end."""
        sim = self.sim
        late = self.clients.arrivals_before(sim.end)
        if late:
            bodies = self._req_bodies(len(late))
            counter = sim.bytes
            counter.sent += len(late)
            self._ahead_in_flight += len(late)
            inside = [b for t, b in zip(late, bodies) if t >= sim.start]
            if inside:
                counter.transmit_many("request", len(inside), self.req_header, sum(inside))
        self._unsettled.settle_all()
        self._samples.emit(math.inf)

    # ----------------------------------------------------------- metrics --
    def in_flight(self) -> int:
        n = self.net.in_flight()
        return n + self._ahead_in_flight if self.ahead else n

    def metrics(self) -> dict:
        out = client_server_metrics(self.sim, self.cpu, self.clients)
        out["connections_opened"] = self.conns.opened
        out["handshakes"] = self.conns.handshakes
        out.update(self.conns.metrics())  # connections_idle_closed with network.idle_timeout
        return out


def _answered(msg) -> None:
    """The plain exchange's response reached its client."""
    msg.data[0]()


def figures(result, out_dir):
    from commsim.figures.request_response import request_response_figures

    return request_response_figures(result, out_dir)


def _model(sim):
    """Plain, or behind a ``topology`` (commsim/patterns/request_response_cluster.py)."""
    from commsim.patterns.request_response_cluster import model

    return model(sim)


def _check(cfg: dict) -> None:
    from commsim.nodes import cluster

    if cluster.active(cfg):
        cluster.check_sidecar(cfg)  # topology.sidecar (commsim/patterns/request_response_mesh.py)
        cluster.refuse_unused(cfg, ("timeseries_bin", "storm_window"),
                              "it records no storm time series or storm latencies")
    check_cycle_takes_time(cfg, ("server.service_time", cfg["server"]["service_time"]))
    check_idle_timeout(cfg)  # network.idle_timeout needs a handshake and keep-alive


PATTERN = Pattern(
    name="request_response",
    summary="client request, server parse + process, response; encodings, chunked uploads, "
            "keep-alive vs new connections",
    model=_model,
    sections=("request_response", "topology"),
    figures=figures,
    ignores=ignoring(CLIENT_QUEUE, CLIENT_QUEUE_WHY),
    check=_check, network={
        "latency": "every client-server hop, each direction",
        "bandwidth": "the server's access link, each direction (messages queue to be serialised)",
        "loss": "a lost transmission is resent after rto; a message given up after max_retries "
                "is retried by its client",
        "connections": "a handshake per connection (TCP 1 RTT, TLS 1.3 2, TLS 1.2 3) with "
                       "tls_server_cpu per TLS handshake; keepalive: false opens one per request",
        "idle_close": IDLE_CLOSE,
        "wire": WIRE_COUNTED})
