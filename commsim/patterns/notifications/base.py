"""What the four notification patterns share: their config sections, the
server, the workload hooks, the update bookkeeping and the metrics."""

from __future__ import annotations

from array import array

from commsim.accounting.work import WorkCosts
from commsim.config.schema import Field, Section, register_section
from commsim.engine.recorder import DELIVERED, MISSED, UPDATE
from commsim.engine.ahead import ends_at_the_window
from commsim.engine.events import Waker
from commsim.engine.simulation import call_at, call_later
from commsim.errors import ConfigError
from commsim.metrics import notifications as _defs  # noqa: F401  (defines the metrics)
from commsim.metrics.collect import (byte_metrics, cpu_metrics, engine_metrics, latency_metrics,
                                     ledger_metrics, percentiles)
from commsim.network import Message, Network
from commsim.network.connection import Connections
from commsim.nodes import Cpu
from commsim.workload import Availability, EventFeed, PoissonCalendar

SERVER = "server"
_MEM = Field("size", "16KiB", "server memory held by one open connection (socket buffers "
             "and request context)", min=0)


def _check_jitter(section: dict, key: str) -> None:
    if section["jitter"] > section["interval"]:
        raise ConfigError(f"{key}.jitter", f"got {section['jitter']:g}s; must be <= interval "
                          f"({section['interval']:g}s) so that gaps stay >= 0")


register_section(Section("short_polling", {
    "interval": Field("duration", "1s", "time between two polls of a client", min=0,
                      min_exclusive=True),
    "jitter": Field("duration", "0s", "each gap is uniform in [interval - jitter, "
                    "interval + jitter] (0: strictly periodic)", min=0),
    "request_header": Field("size", "600B", "header bytes of each poll request", min=0),
    "response_header": Field("size", "271B", "header bytes of each poll response", min=0),
    "connection_memory": _MEM,
}, doc="Periodic polls answered at once, empty or with everything pending.",
    pattern="short_polling", check=_check_jitter))

register_section(Section("long_polling", {
    "timeout": Field("duration", "30s", "how long the server holds a poll with nothing to send",
                     min=0, min_exclusive=True),
    "request_header": Field("size", "600B", "header bytes of each poll request", min=0),
    "response_header": Field("size", "271B", "header bytes of each poll response", min=0),
    "connection_memory": _MEM,
}, doc="Polls held until an update or the timeout; the client re-polls on every response.",
    pattern="long_polling"))

register_section(Section("sse", {
    "request_header": Field("size", "600B", "header bytes of the (re)connect request", min=0),
    "response_header": Field("size", "271B", "header bytes of the stream's opening response", min=0),
    "frame_overhead": Field("size", "20B", "framing bytes per event (id:, data: lines, blank line)",
                            min=0),
    "connection_lifetime": Field("dist:duration", None, "how long a stream lasts before an "
                                 "intermediary drops it (null: never)", min=0,
                                 min_exclusive=True, nullable=True),
    "retry": Field("duration", "3s", "client wait before reconnecting after a drop", min=0),
    "resume": Field("bool", True, "reconnect with Last-Event-ID: the server replays what the "
                    "client missed (false: updates between drop and reconnect are lost)"),
    "connection_memory": _MEM,
}, doc="One request, an unending response of event frames; reconnects.", pattern="sse"))

register_section(Section("push", {
    "request_header": Field("size", "500B", "header bytes of the connection upgrade request", min=0),
    "response_header": Field("size", "150B", "header bytes of the upgrade response", min=0),
    "frame_overhead": Field("size", "4B", "frame header bytes per event (WebSocket: 2-14)", min=0),
    "connection_memory": _MEM,
}, doc="A persistent bidirectional connection; the server sends as updates happen.",
    pattern="push"))

NAN = float("nan")
_WORKLOAD = ("workload",)
STREAM_START = 1.0  # long-polling and streaming clients start at a time uniform in [0, 1 s)

# Window tests stay hand-written in the notification patterns (base, polling,
# long_polling, streaming): they guard plain int counters that the clustered
# subclasses and metrics() read and write directly, they run per poll / frame
# (the hot path: a Counter.add is one Python call more each), and most test an
# update's creation time against both edges ([start, end)), not now.


class _Base:
    """What the four patterns share: network, server CPU, workload, metrics."""

    pattern = ""
    request_header = 0
    response_header = 0

    def __init__(self, sim):
        cfg = sim.config
        self.sim = sim
        self.env = sim.env
        sec = cfg[self.pattern]
        self.section = sec
        self.n = n = cfg["clients"]["count"]
        self.net = Network(sim)
        self.up = self.net.up
        self.down = self.net.down
        self.cpu = Cpu(sim, SERVER, cfg["server"]["cores"])
        # Connections and their handshakes (network.handshake, keepalive,
        # tls_server_cpu): the one handshake module, over the same links.
        self.connector = Connections(sim, self.net, self.cpu)
        self.handshakes = self.connector.enabled
        # A message the link gives up on (loss beyond max_retries) is sent
        # again by its sender at once: polls, responses, frames, flights.
        self.up.resend_dropped = self.down.resend_dropped = True
        self.rtt_sum = 0.0
        self.rtt_n = 0
        self._service = sim.sampler(cfg["server"]["service_time"], "server/service")
        self.costs = WorkCosts(cfg["server"])  # per-kind CPU (issue 13); all 0 by default
        self.conn_memory = sec["connection_memory"]
        wl = cfg["workload"]
        self.feed = EventFeed(sim, n, wl)
        # Update bookkeeping.
        self.lat = array("d")
        self.proc = array("d")  # creation -> processed by the client (streaming patterns)
        self.seen = bytearray()
        self.next_uid = 0
        self.created = 0
        self.delivered = 0
        self.missed = 0
        self.resolved = 0  # delivered or missed inside the window, whatever their creation time
        self.duplicates = 0
        self.empty = 0
        self.poll_responses = 0
        self.reconnects = 0
        self.conns = 0
        self.conns_max = 0
        call_at(self.env, sim.start, self._window_opens)
        # Per-operation records (commsim run --records), None unless asked for.
        self.ops = sim.recorder.ops(self.pattern) if sim.recorder.records else None
        # Jobs.
        self.jobs = {}
        self.job_polls: list = []
        self.job_delays: list = []
        self.polls = None
        if wl["job_rate"] > 0:
            self.polls = [0] * n
            self._job_client = sim.sampler({"dist": "uniform", "low": 0, "high": n},
                                           "workload/job_client", "number")
            self._job_duration = sim.sampler(wl["job_duration"], "workload/job_duration")
            self._notice_size = sim.sampler(wl["event_size"], "workload/job_notice_size", "size")
            self.job_request = int(wl["job_request"])
            PoissonCalendar(sim, wl["job_rate"] * n, "workload/jobs", self._submit_job)
        # Broadcasts.
        self._bc_size = sim.sampler(wl["broadcast_size"], "workload/broadcast_size", "size")
        self.broadcast_calendar = PoissonCalendar(sim, wl["broadcast_rate"], "workload/broadcasts",
                                                  self._broadcast)
        self.avail = Availability(sim, n, wl, self._availability)
        self.online = self.avail.online

    # ------------------------------------------------------------ helpers --
    def _staggered_start(self, span: float, start) -> None:
        """Call ``start(c)`` for every client at a time uniform in [0, span)
        (stream ``clients/start``), walking the sorted times with one pending
        event: clients that all started at t = 0 would stay synchronised."""
        n = self.n
        times, order = self._start_times(span)
        state = {"i": 0}
        env = self.env

        def tick(_event) -> None:
            i = state["i"]
            now = env.now
            while i < n and times[order[i]] <= now:
                start(order[i])
                i += 1
            state["i"] = i
            if i < n:
                call_at(env, times[order[i]], tick)

        call_at(env, times[order[0]], tick)

    def _start_times(self, span: float) -> tuple[list, list]:
        """Each client's start time, uniform in [0, span) (stream
        ``clients/start``), and the clients in order of it."""
        n = self.n
        times = self.sim.streams.generator("clients/start").uniform(0.0, span, n).tolist() \
            if span > 0 else [0.0] * n
        return times, sorted(range(n), key=times.__getitem__)

    # -- what the run-ahead modes share (long polling, SSE, push) ----------
    def _begin_run_ahead(self) -> None:
        """Run ahead: the state every mode keeps (first requests, service
        times drawn in blocks, messages in flight at the end), and one
        wake-up, first at ``_next_time()``, calling
        ``_run_ahead``; ``_ahead_end`` runs when the run ends."""
        sim = self.sim
        self._first_requests()
        self._take_service = sim.block_sampler(sim.config["server"]["service_time"],
                                               "server/service")
        self._ahead_in_flight = 0
        self._d_up = self.up.constant_latency
        self._d_down = self.down.constant_latency
        self._tick = Waker(sim.env, self._run_ahead)
        first = self._next_time()
        if first < sim.end:
            self._tick.arm_at(first)
        sim.at_end(self._ahead_end)
        self._ends_at_the_window()

    def _first_requests(self) -> None:
        """Run ahead: each client's first request (a poll or a connect), sent
        at its start time (:meth:`_start_times`), in order of sending:
        ``_first_order`` (clients), ``_first_time``, and ``_first_i`` (the
        number handled so far)."""
        times, order = self._start_times(STREAM_START)
        self._first_order = array("l", order)
        self._first_time = array("d", [times[c] for c in order])
        self._first_i = 0

    def _first_requests_in_flight(self) -> None:
        """Run ahead, at the end: first requests sent before the end that had
        not reached the server are in flight."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        times, i, n = self._first_time, self._first_i, self.n
        counter = sim.bytes
        requests = 0
        while i < n and times[i] < hi:
            counter.sent += 1
            self._ahead_in_flight += 1
            if times[i] >= lo:
                requests += 1
            i += 1
        self._first_i = i
        if requests:
            counter.transmit_many("request", requests, self.request_header)

    def _ends_at_the_window(self) -> None:
        """A run-ahead mode cannot go on past its window (engine/ahead.py)."""
        ends_at_the_window(self.sim, self.pattern, "_can_run_ahead returning False")

    def _window_opens(self, _event) -> None:
        self.conns_max = self.conns

    def _conn(self, delta: int) -> None:
        self.conns += delta
        if self.conns > self.conns_max and self.env.now >= self.sim.start:
            self.conns_max = self.conns

    def _new_uid(self, created: float) -> int:
        uid = self.next_uid
        self.next_uid = uid + 1
        self.seen.append(0)
        if self.sim.start <= created < self.sim.end:
            self.created += 1
        return uid

    def _arrived(self, c: int, created: float, uid: int, now: float, done: float = -1.0,
                 size: int = -1) -> None:
        """One update reached client ``c`` (online) now; the client finishes
        processing it at ``done`` (streaming patterns; -1: not tracked)."""
        if uid >= 0:
            seen = self.seen
            if seen[uid]:
                if self.sim.start <= created < self.sim.end:
                    self.duplicates += 1
                return
            seen[uid] = 1
            job = self.jobs.pop(uid, None) if self.jobs else None
            if job is not None and now >= self.sim.start:
                polls_at, done = job
                self.job_polls.append(self.polls[c] - polls_at if self.polls is not None else 0)
                self.job_delays.append(now - done)
        if self.ops is not None:
            self.ops.record(UPDATE, created, now, c, size, DELIVERED)
        if self.sim.start <= now < self.sim.end:
            self.resolved += 1
        if self.sim.start <= created < self.sim.end:
            self.delivered += 1
            self.lat.append(now - created)
            if done >= 0:
                self.proc.append(done - created)

    def _lost(self, created: float, c: int = -1, size: int = -1) -> None:
        if self.ops is not None:
            self.ops.record(UPDATE, created, NAN, c, size, MISSED)
        if self.sim.start <= self.sim.now < self.sim.end:
            self.resolved += 1
        if self.sim.start <= created < self.sim.end:
            self.missed += 1

    # ---------------------------------------------------------------- jobs --
    def _submit_job(self, _i) -> None:
        c = min(int(self._job_client()), self.n - 1)
        duration = self._job_duration()
        if not self.online[c]:
            return
        polls_at = self.polls[c]
        msg = Message("request", c, SERVER, header=self.request_header, payload=self.job_request,
                      created=self.env.now, data=(polls_at, duration), label="job submit")
        if self.handshakes:
            self.connector.ensure(c, lambda extra: self._send_with(msg, extra, self._server_job))
        else:
            self.up.send(msg, self._server_job)

    def _send_with(self, msg, extra: int, deliver) -> None:
        """Send ``msg`` up once its connection is ready; ``extra`` handshake
        bytes (the client's last flight) ride along."""
        msg.handshake = extra
        self.up.send(msg, deliver)

    def _server_job(self, msg) -> None:
        polls_at, duration = msg.data
        call_later(self.env, duration, self._job_done, (msg.src, polls_at))
        self.cpu.submit(self._service(), "job", self._job_handle, msg.src)

    def _job_handle(self, c, _wait) -> None:
        msg = Message("response", SERVER, c, header=self.response_header, created=self.env.now,
                      label="job handle")
        self.down.send(msg, self._client_job_handle)

    def _client_job_handle(self, msg) -> None:
        if self.handshakes:
            self.connector.done(msg.dst)

    def _job_done(self, event) -> None:
        c, polls_at = event.value
        now = self.env.now
        uid = self.publish(c, now, self._notice_size())
        self.jobs[uid] = (polls_at, now)

    # --------------------------------------------------- to be overridden --
    def publish(self, c: int, created: float, size: int) -> int:
        raise NotImplementedError

    def _broadcast(self, _i) -> None:
        raise NotImplementedError

    def _availability(self, c: int, online: bool) -> None:
        pass

    # ------------------------------------------------------------ metrics --
    def warmup_series(self):
        """``warmup: auto``'s output series (:mod:`commsim.experiment.warmup`):
        each update's latency, creation to arrival at its client, in order of
        arrival (the event-driven and run-ahead paths record them so)."""
        return self.lat

    def metrics(self) -> dict:
        sim = self.sim
        out = {"throughput": self.delivered / sim.duration}
        out.update(latency_metrics(self.lat))
        settled = self.delivered + self.missed  # the window's updates whose fate is known
        out["delivery_ratio"] = self.delivered / settled if settled else float("nan")
        out.update(percentiles(self.proc, "process_time", mean=True))
        out.update(cpu_metrics(self.cpu))
        out["requests"] = sim.bytes.messages("request")
        out["responses"] = sim.bytes.messages("response")
        out.update(byte_metrics(sim))
        out.update(ledger_metrics(sim, self.net.in_flight()))
        out["updates_created"] = self.created
        out["updates_delivered"] = self.delivered
        out["updates_pending"] = self.created - self.delivered - self.missed
        out["updates_resolved"] = self.resolved
        out["empty_responses"] = self.empty
        out["empty_fraction"] = self.empty / self.poll_responses if self.poll_responses else float("nan")
        out["connections_max"] = self.conns_max
        out["server_memory_max"] = self.conns_max * self.conn_memory
        out["missed"] = self.missed
        out["duplicates"] = self.duplicates
        out["reconnects"] = self.reconnects
        out["connections_opened"] = self.connector.opened
        out["handshakes"] = self.connector.handshakes
        out.update(self.connector.metrics())  # connections_idle_closed with network.idle_timeout
        out["poll_rtt_mean"] = self.rtt_sum / self.rtt_n if self.rtt_n else float("nan")
        out["jobs"] = len(self.job_delays)
        nan = float("nan")
        out["polls_per_job"] = sum(self.job_polls) / len(self.job_polls) if self.job_polls else nan
        out["job_notify_delay"] = sum(self.job_delays) / len(self.job_delays) if self.job_delays else nan
        out.update(engine_metrics(sim))
        return out
