"""Notification patterns: short polling, long polling, server-sent events, push.

The question: a server produces updates (:mod:`commsim.workload`); how should
clients learn of them, and what does each choice cost?  The four patterns
are driven by the same workload (common random numbers), so a sweep over
``pattern`` compares them on identical updates.

Model and assumptions (all patterns)
------------------------------------
* Topology: the shared :class:`~commsim.network.Network` (``up`` and
  ``down`` links; every message goes through them, so every byte is counted
  by :class:`~commsim.accounting.bytes.ByteCounter`).  Connection set-up
  handshakes are not modelled (``network.handshake`` must be ``none``).
* Server: a :class:`~commsim.nodes.Cpu` with ``server.cores`` cores; every
  message the server *sends* (a poll response, a stream's opening response,
  one event frame, a job handle) costs one ``server.service_time`` of CPU,
  accounted by :class:`~commsim.accounting.cpu.CpuAccount` under a purpose
  (``poll``, ``connect``, ``event``, ``job``).  A poll response or an opening
  response that carries no update is *wasted* CPU.
* Latency of an update: from its creation at the server to its arrival at
  the client (``latency_*``), for updates created inside the window.
* Memory: each open connection holds ``<pattern>.connection_memory`` bytes
  at the server; ``server_memory_max`` = ``connections_max`` x that.
* Client processing (``clients.service_time``, ``clients.buffer``) applies
  to the streaming patterns (``sse``, ``push``), where updates arrive
  unasked: each client is a FIFO single server with ``buffer`` waiting
  slots (an M/G/1/K queue with K = buffer + 1 under Poisson arrivals);
  arrivals that find it full are dropped (``missed``).  Polling clients
  take updates only when they ask, so they never overflow.
* Offline clients (``workload.online_time``) send nothing.  A response or
  frame that reaches an offline client is lost (``missed``), except that
  SSE with ``resume`` replays it after the reconnect (the Last-Event-ID the
  client sends names the last update it actually got).
* Jobs: the submission is a request (``<pattern>.request_header`` +
  ``workload.job_request``) answered at once with a header-only handle;
  the job's completion is an update for its client.

Per-pattern assumptions are in each class docstring and in
``docs/notifications.md``.
"""

from __future__ import annotations

import heapq
from array import array
from collections import deque

from simpy.core import NORMAL
from simpy.events import Event

from commsim.config.schema import Field, Section, register_section
from commsim.engine.simulation import call_at, call_later
from commsim.errors import ConfigError
from commsim.metrics import notifications as _defs  # noqa: F401  (defines the metrics)
from commsim.metrics.collect import (byte_metrics, cpu_metrics, engine_metrics, latency_metrics,
                                     ledger_metrics)
from commsim.network import Message, Network
from commsim.nodes import Cpu
from commsim.patterns.base import Pattern
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

_WORKLOAD = ("workload",)
STREAM_START = 1.0  # long-polling and streaming clients start at a time uniform in [0, 1 s)


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
        self._service = sim.sampler(cfg["server"]["service_time"], "server/service")
        self.conn_memory = sec["connection_memory"]
        wl = cfg["workload"]
        self.feed = EventFeed(sim, n, wl)
        # Update bookkeeping.
        self.lat = array("d")
        self.seen = bytearray()
        self.next_uid = 0
        self.created = 0
        self.delivered = 0
        self.missed = 0
        self.duplicates = 0
        self.empty = 0
        self.poll_responses = 0
        self.reconnects = 0
        self.conns = 0
        self.conns_max = 0
        call_at(self.env, sim.start, self._window_opens)
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
        times = self.sim.streams.generator("clients/start").uniform(0.0, span, n).tolist() \
            if span > 0 else [0.0] * n
        order = sorted(range(n), key=times.__getitem__)
        state = {"i": 0}
        env = self.env

        def tick(_event) -> None:
            i = state["i"]
            now = env._now
            while i < n and times[order[i]] <= now:
                start(order[i])
                i += 1
            state["i"] = i
            if i < n:
                call_at(env, times[order[i]], tick)

        call_at(env, times[order[0]], tick)

    def _window_opens(self, _event) -> None:
        self.conns_max = self.conns

    def _conn(self, delta: int) -> None:
        self.conns += delta
        if self.conns > self.conns_max and self.env._now >= self.sim.start:
            self.conns_max = self.conns

    def _new_uid(self, created: float) -> int:
        uid = self.next_uid
        self.next_uid = uid + 1
        self.seen.append(0)
        if self.sim.start <= created < self.sim.end:
            self.created += 1
        return uid

    def _arrived(self, c: int, created: float, uid: int, now: float) -> None:
        """One update reached client ``c`` (online) now."""
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
        if self.sim.start <= created < self.sim.end:
            self.delivered += 1
            self.lat.append(now - created)

    def _lost(self, created: float) -> None:
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
                      created=self.env._now, data=(polls_at, duration), label="job submit")
        self.up.send(msg, self._server_job)

    def _server_job(self, msg) -> None:
        polls_at, duration = msg.data
        call_later(self.env, duration, self._job_done, (msg.src, polls_at))
        self.cpu.submit(self._service(), "job", self._job_handle, msg.src)

    def _job_handle(self, c, _wait) -> None:
        msg = Message("response", SERVER, c, header=self.response_header, created=self.env._now,
                      label="job handle")
        self.down.send(msg, _ignore)

    def _job_done(self, event) -> None:
        c, polls_at = event._value
        now = self.env._now
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
    def metrics(self) -> dict:
        sim = self.sim
        out = {"throughput": self.delivered / sim.duration}
        out.update(latency_metrics(self.lat))
        out.update(cpu_metrics(self.cpu))
        out["requests"] = sim.bytes.messages("request")
        out["responses"] = sim.bytes.messages("response")
        out.update(byte_metrics(sim))
        out.update(ledger_metrics(sim, self.net.in_flight()))
        out["updates_created"] = self.created
        out["updates_delivered"] = self.delivered
        out["empty_responses"] = self.empty
        out["empty_fraction"] = self.empty / self.poll_responses if self.poll_responses else float("nan")
        out["connections_max"] = self.conns_max
        out["server_memory_max"] = self.conns_max * self.conn_memory
        out["missed"] = self.missed
        out["duplicates"] = self.duplicates
        out["reconnects"] = self.reconnects
        out["jobs"] = len(self.job_delays)
        nan = float("nan")
        out["polls_per_job"] = sum(self.job_polls) / len(self.job_polls) if self.job_polls else nan
        out["job_notify_delay"] = sum(self.job_delays) / len(self.job_delays) if self.job_delays else nan
        out.update(engine_metrics(sim))
        return out


def _ignore(_msg) -> None:
    pass


# =========================================================== polling ======

class _Polling(_Base):
    """Pending updates per client and the poll response path (short and long)."""

    def __init__(self, sim):
        super().__init__(sim)
        sec = self.section
        self.request_header = int(sec["request_header"])
        self.response_header = int(sec["response_header"])
        self.pending: list = [None] * self.n   # flat [created, size, uid, ...] or None
        self.bc_times: list = []
        self.bc_sizes: list = []
        self.bc_cursor = [0] * self.n if sim.config["workload"]["broadcast_rate"] > 0 else None

    def _store(self, c: int, created: float, size: int) -> int:
        uid = self._new_uid(created)
        p = self.pending[c]
        if p is None:
            self.pending[c] = [created, size, uid]
        else:
            p.append(created)
            p.append(size)
            p.append(uid)
        return uid

    def _broadcast(self, _i) -> None:
        now = self.env._now
        self.bc_times.append(now)
        self.bc_sizes.append(int(self._bc_size()))
        if self.sim.start <= now < self.sim.end:
            self.created += self.n

    def _take(self, c: int):
        """Everything pending for ``c`` (flat list) or None."""
        items = self.pending[c]
        self.pending[c] = None
        cur = self.bc_cursor
        if cur is not None and cur[c] < len(self.bc_times):
            times, sizes = self.bc_times, self.bc_sizes
            extra = []
            for j in range(cur[c], len(times)):
                extra += (times[j], sizes[j], -1)
            cur[c] = len(times)
            items = extra if items is None else items + extra
        return items

    def _respond(self, c: int, items, purpose: str = "poll") -> None:
        """Queue the answer to a poll of ``c`` carrying ``items`` (None: empty)."""
        if items is None:
            self.cpu.submit(self._service(), purpose, self._send_empty, c, True)
        else:
            self.cpu.submit(self._service(), purpose, self._send_items, (c, items))

    def _send_empty(self, c, _wait) -> None:
        now = self.env._now
        if now >= self.sim.start:
            self.empty += 1
            self.poll_responses += 1
        self.down.send(Message("response", SERVER, c, self.response_header, 0, 0, 0, now),
                       self._client_empty)

    def _send_items(self, token, _wait) -> None:
        c, items = token
        now = self.env._now
        if now >= self.sim.start:
            self.poll_responses += 1
        size = sum(items[1::3])
        self.down.send(Message("response", SERVER, c, self.response_header, size, 0, 0, now,
                               items), self._client_items)

    def _client_items(self, msg) -> None:
        c = msg.dst
        items = msg.data
        if not self.online[c]:
            for k in range(0, len(items), 3):
                self._lost(items[k])
        else:
            now = self.env._now
            arrived = self._arrived
            for k in range(0, len(items), 3):
                arrived(c, items[k], items[k + 2], now)
        self._after_response(c)

    def _client_empty(self, msg) -> None:
        self._after_response(msg.dst)

    def _after_response(self, c: int) -> None:
        pass


class ShortPolling(_Polling):
    """Short polling: each client asks every ``short_polling.interval``.

    * Poll times: client c polls at phase_c + k T (phase uniform in [0, T),
      stream ``short_polling/phase``); with ``jitter`` each gap is uniform in
      [T - jitter, T + jitter] (stream ``short_polling/jitter``).  Clients
      poll on schedule whether or not earlier polls were answered.  An
      offline client skips its polls.
    * The server reads the client's pending updates when the poll arrives
      and answers after one ``server.service_time`` of CPU, empty or with
      all of them (latency = wait for the poll + service + one way).
    * Connections: with ``network.keepalive`` (default) a client's
      connection stays open from its first poll until it goes offline (an
      idle kept-alive connection); without it a connection is open only
      from the poll's arrival to the response.

    Speed: the clients are not processes.  Without jitter one *rotation*
    (clients sorted by phase, a pointer and the round's base time) drives
    every poll with one pending event; with jitter a heap of (time, client)
    does.  Updates are drawn lazily (:meth:`EventFeed.drain`) when a poll
    arrives, so they cost no simulation event.  Every poll still goes through
    ``Link.send`` (bytes counted by the ByteCounter) and ``Cpu.submit``
    (CPU counted by the CpuAccount).
    """

    pattern = "short_polling"

    def __init__(self, sim):
        super().__init__(sim)
        sec = self.section
        n = self.n
        self.T = T = sec["interval"]
        self.jitter = sec["jitter"]
        self.keepalive = sim.config["network"]["keepalive"]
        self.conn_open = bytearray(n) if self.keepalive else None
        self._send_empty_cb = self._send_empty  # one bound method, not one per poll
        # The feed is drained lazily; at the end, draw the rest of the window's
        # updates so that updates_created counts them (they stay pending).
        sim.at_end(lambda: self.feed.drain(sim.end, self._store))
        phase = sim.streams.generator("short_polling/phase").uniform(0.0, T, n).tolist()
        if self.jitter == 0:
            order = sorted(range(n), key=phase.__getitem__)
            self._order = order
            self._phase = [phase[c] for c in order]
            self._j = 0
            self._base = 0.0
            self._tick_event = None
            self._arm(self._phase[0], self._rotate)
        else:
            self._gap = sim.sampler({"dist": "uniform", "low": T - self.jitter,
                                     "high": T + self.jitter}, "short_polling/jitter")
            self._heap = [(phase[c], c) for c in range(n)]
            heapq.heapify(self._heap)
            self._tick_event = None
            self._arm(self._heap[0][0], self._jittered)

    # -------------------------------------------------------------- clients --
    def _arm(self, when: float, callback) -> None:
        # One Event object is re-armed for every tick: SimPy leaves a
        # processed event alone, so re-scheduling it only needs fresh callbacks.
        ev = self._tick_event
        if ev is None:
            ev = self._tick_event = Event(self.env)
            ev._ok = True
            ev._value = None
        ev.callbacks = [callback]
        delay = when - self.env._now
        self.env.schedule(ev, NORMAL, delay if delay > 0 else 0.0)

    def _rotate(self, _event) -> None:
        now = self.env._now
        order, phase, n = self._order, self._phase, self.n
        j = self._j
        base = self._base
        online = self.online
        polls = self.polls
        conn_open = self.conn_open
        send = self.up.send
        header = self.request_header
        server_poll = self._server_poll
        while True:
            c = order[j]
            if online[c]:
                if polls is not None:
                    polls[c] += 1
                if conn_open is not None and not conn_open[c]:
                    conn_open[c] = 1
                    self._conn(+1)
                send(Message("request", c, SERVER, header, 0, 0, 0, now), server_poll)
            j += 1
            if j == n:
                j = 0
                base += self.T
            t = base + phase[j]
            if t > now:
                break
        self._j = j
        self._base = base
        self._arm(t, self._rotate)

    def _jittered(self, _event) -> None:
        now = self.env._now
        heap = self._heap
        gap = self._gap
        poll = self._poll
        while heap[0][0] <= now:
            c = heap[0][1]
            heapq.heapreplace(heap, (now + gap(), c))
            poll(c, now)
        self._arm(heap[0][0], self._jittered)

    def _poll(self, c: int, now: float) -> None:
        if not self.online[c]:
            return
        if self.polls is not None:
            self.polls[c] += 1
        if self.conn_open is not None and not self.conn_open[c]:
            self.conn_open[c] = 1
            self._conn(+1)
        self.up.send(Message("request", c, SERVER, self.request_header, 0, 0, 0, now),
                     self._server_poll)

    # --------------------------------------------------------------- server --
    def _server_poll(self, msg) -> None:
        now = self.env._now
        feed = self.feed
        if feed.next_time <= now:
            feed.drain(now, self._store)
        if self.conn_open is None:
            self._conn(+1)
        c = msg.src
        bc = self.bc_cursor
        if self.pending[c] is None and (bc is None or bc[c] == len(self.bc_times)):
            self.cpu.submit(self._service(), "poll", self._send_empty_cb, c, True)
        else:
            self.cpu.submit(self._service(), "poll", self._send_items, (c, self._take(c)))

    def _send_empty(self, c, _wait) -> None:
        now = self.env._now
        if self.conn_open is None:
            self._conn(-1)
        if now >= self.sim.start:
            self.empty += 1
            self.poll_responses += 1
        self.down.send(Message("response", SERVER, c, self.response_header, 0, 0, 0, now), _ignore)

    def _send_items(self, token, _wait) -> None:
        if self.conn_open is None:
            self._conn(-1)
        super()._send_items(token, _wait)

    def publish(self, c: int, created: float, size: int) -> int:
        # Job notices: bring the lazy feed up to now first, to keep each
        # client's pending list in creation order.
        if self.feed.next_time <= created:
            self.feed.drain(created, self._store)
        return self._store(c, created, size)

    def _availability(self, c: int, online: bool) -> None:
        if not online and self.conn_open is not None and self.conn_open[c]:
            self.conn_open[c] = 0
            self._conn(-1)


class LongPolling(_Polling):
    """Long polling: the server holds each poll until an update or the timeout.

    * Clients send their first poll at a time uniform in [0, 1 s)
      (stream ``clients/start``), so their cycles are not synchronised.
    * Each client keeps one poll outstanding: it re-polls as soon as a
      response arrives (the re-poll gap is one round trip), and when it comes
      back online if it has none outstanding.
    * The server answers a held poll at the first update (after one
      ``server.service_time`` of CPU), or with an empty response after
      ``long_polling.timeout`` (wasted CPU).  A poll that arrives while
      updates are pending (they piled up during the gap) is answered at once.
      Updates created while the response is being prepared wait for the next
      poll.
    * A held poll is an open connection (``connections_max``) and holds
      ``connection_memory``.  The server does not notice that a client went
      offline: its held poll stays until answered, and the answer is lost.

    Speed: the timeout is a constant, so holds expire in the order they
    started: one FIFO of (deadline, client, hold number) and one pending
    event, instead of a timer per client; answered holds are skipped.
    """

    pattern = "long_polling"

    def __init__(self, sim):
        super().__init__(sim)
        n = self.n
        self.H = self.section["timeout"]
        self.held = bytearray(n)
        self.hold_no = [0] * n
        self.outstanding = bytearray(n)
        self._deadlines: deque = deque()
        self._armed = False
        self.feed.start(self._publish_feed)
        self._staggered_start(STREAM_START, self._first_poll)

    def _first_poll(self, c: int) -> None:
        if self.online[c] and not self.outstanding[c]:
            self._send_poll(c)

    def _send_poll(self, c: int) -> None:
        self.outstanding[c] = 1
        if self.polls is not None:
            self.polls[c] += 1
        self.up.send(Message("request", c, SERVER, self.request_header, 0, 0, 0, self.env._now),
                     self._server_poll)

    def _server_poll(self, msg) -> None:
        c = msg.src
        if self.pending[c] is not None or (self.bc_cursor is not None
                                           and self.bc_cursor[c] < len(self.bc_times)):
            self._respond(c, self._take(c))
            return
        self.held[c] = 1
        self.hold_no[c] += 1
        self._conn(+1)
        deadline = self.env._now + self.H
        self._deadlines.append((deadline, c, self.hold_no[c]))
        if not self._armed:
            self._armed = True
            call_at(self.env, deadline, self._expire)

    def _expire(self, _event) -> None:
        now = self.env._now
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _, c, no = dl.popleft()
            if self.held[c] and self.hold_no[c] == no:
                self.held[c] = 0
                self._conn(-1)
                self._respond(c, None)
        if dl:
            call_at(self.env, dl[0][0], self._expire)
        else:
            self._armed = False

    def _release(self, c: int) -> None:
        if self.held[c]:
            self.held[c] = 0
            self._conn(-1)
            self._respond(c, self._take(c))

    def _publish_feed(self, c: int, created: float, size: int) -> None:
        self.publish(c, created, size)

    def publish(self, c: int, created: float, size: int) -> int:
        uid = self._store(c, created, size)
        self._release(c)
        return uid

    def _broadcast(self, i) -> None:
        super()._broadcast(i)
        held = self.held
        for c in range(self.n):
            if held[c]:
                self._release(c)

    def _after_response(self, c: int) -> None:
        self.outstanding[c] = 0
        if self.online[c]:
            self._send_poll(c)

    def _availability(self, c: int, online: bool) -> None:
        if online and not self.outstanding[c]:
            self._send_poll(c)


# ========================================================= streaming ======

class _Streaming(_Base):
    """A connection per client over which the server sends event frames.

    * A client (re)connects with a request; the server spends one
      ``server.service_time`` and sends the opening response (header only),
      from which moment the stream is open at the server.  Updates for an
      open stream are sent as frames (``frame_overhead`` + payload), one
      ``server.service_time`` each.
    * Updates for a client whose stream is not open are lost (``missed``),
      unless the pattern resumes (SSE with ``resume``): then they wait and
      are replayed, in order, right after the opening response.
    * Going offline closes the stream at once at the server (its TCP FIN or
      reset is assumed to arrive immediately); coming back online reconnects
      at once.  Frames that reach an offline client are lost, or with resume
      replayed after the reconnect.
    * Each online client first connects at a time uniform in [0, 1 s)
      (stream ``clients/start``): not all at t = 0.
    """

    resume = False
    lifetime = None
    retry = 0.0

    def __init__(self, sim):
        super().__init__(sim)
        sec = self.section
        n = self.n
        self.request_header = int(sec["request_header"])
        self.response_header = int(sec["response_header"])
        self.frame = int(sec["frame_overhead"])
        self.open = bytearray(n)
        self.conn_no = [0] * n
        self.connecting = bytearray(n)
        self.backlog: dict = {}   # client -> flat [created, size, uid, ...] (resume only)
        cl = sim.config["clients"]
        self.buffer = cl["buffer"]
        svc = sim.distribution(cl["service_time"])
        self.client_queue = self.buffer is not None and not (svc.is_constant and svc.mean == 0)
        if self.client_queue:
            self._client_service = sim.sampler(cl["service_time"], "clients/service")
            self._in_system: dict = {}   # client -> deque of departure times
            self.client_arrivals = 0
            self.client_drops = 0
        self.feed.start(self._publish_feed)
        self._staggered_start(STREAM_START, self._first_connect)

    def _first_connect(self, c: int) -> None:
        if self.online[c] and not self.open[c] and not self.connecting[c]:
            self._connect(c)

    # ---------------------------------------------------------- connection --
    def _connect(self, c: int) -> None:
        self.connecting[c] = 1
        msg = Message("request", c, SERVER, self.request_header, 0, 0, 0, self.env._now,
                      label="connect")
        self.up.send(msg, self._server_connect)

    def _server_connect(self, msg) -> None:
        c = msg.src
        replay = self.backlog.pop(c, None)
        self.cpu.submit(self._service(), "connect", self._opened, (c, replay), replay is None)

    def _opened(self, token, _wait) -> None:
        c, replay = token
        now = self.env._now
        self.down.send(Message("response", SERVER, c, self.response_header, 0, 0, 0, now,
                               label="stream open"), self._client_opened)
        if not self.online[c]:
            # The client left while connecting: the server sees the close at
            # once (as for an open stream); what it would have replayed waits.
            if replay:
                self.backlog.setdefault(c, [])[:0] = replay
            return
        if not self.open[c]:
            self._conn(+1)
        # else: an older connect of this client (it left and came back while
        # that one was in flight) already opened a stream; this one replaces
        # it, so the server holds one connection for the client, not two.
        self.open[c] = 1
        self.conn_no[c] += 1
        if self.lifetime is not None:
            call_later(self.env, self.lifetime(), self._drop, (c, self.conn_no[c]))
        if replay:
            for k in range(0, len(replay), 3):
                self._send_frame(c, replay[k], replay[k + 1], replay[k + 2])

    def _client_opened(self, msg) -> None:
        self.connecting[msg.dst] = 0

    def _close(self, c: int) -> None:
        if self.open[c]:
            self.open[c] = 0
            self._conn(-1)

    def _drop(self, event) -> None:
        """An intermediary drops the stream: the client learns of it after the
        frames already sent (a zero-byte close on the same FIFO link)."""
        c, no = event._value
        if not self.open[c] or self.conn_no[c] != no:
            return
        self._close(c)
        self.down.send(Message("close", SERVER, c, created=self.env._now, label="close"),
                       self._client_dropped)

    def _client_dropped(self, msg) -> None:
        c = msg.dst
        if self.online[c]:
            call_later(self.env, self.retry, self._retry, c)

    def _retry(self, event) -> None:
        c = event._value
        if self.online[c] and not self.open[c] and not self.connecting[c]:
            if self.env._now >= self.sim.start:
                self.reconnects += 1
            self._connect(c)

    def _availability(self, c: int, online: bool) -> None:
        if online:
            if not self.open[c] and not self.connecting[c]:
                if self.env._now >= self.sim.start:
                    self.reconnects += 1
                self._connect(c)
        else:
            self._close(c)
            self.connecting[c] = 0

    # -------------------------------------------------------------- frames --
    def _publish_feed(self, c: int, created: float, size: int) -> None:
        self.publish(c, created, size)

    def publish(self, c: int, created: float, size: int) -> int:
        uid = self._new_uid(created)
        self._deliver(c, created, size, uid)
        return uid

    def _broadcast(self, _i) -> None:
        now = self.env._now
        size = int(self._bc_size())
        if self.sim.start <= now < self.sim.end:
            self.created += self.n
        for c in range(self.n):
            self._deliver(c, now, size, -1)

    def _deliver(self, c: int, created: float, size: int, uid: int) -> None:
        if self.open[c]:
            self._send_frame(c, created, size, uid)
        elif self.resume:
            self.backlog.setdefault(c, []).extend((created, size, uid))
        else:
            self._lost(created)

    def _send_frame(self, c, created, size, uid) -> None:
        self.cpu.submit(self._service(), "event", self._frame_ready, (c, created, size, uid))

    def _frame_ready(self, token, _wait) -> None:
        c, created, size, uid = token
        self.down.send(Message("event", SERVER, c, 0, size, self.frame, 0, created, uid),
                       self._client_frame)

    def _client_frame(self, msg) -> None:
        c = msg.dst
        if not self.online[c]:
            if self.resume:
                # The client's Last-Event-ID precedes this frame: the server
                # replays it after the reconnect.
                self.backlog.setdefault(c, []).extend((msg.created, msg.payload, msg.data))
            else:
                self._lost(msg.created)
            return
        now = self.env._now
        if self.client_queue:
            # FIFO single-server client with `buffer` waiting slots (exact
            # Lindley recursion on the departure times still in the system).
            q = self._in_system.get(c)
            if q is None:
                q = self._in_system[c] = deque()
            while q and q[0] <= now:
                q.popleft()
            counted = now >= self.sim.start
            if counted:
                self.client_arrivals += 1
            if len(q) > self.buffer:
                if counted:
                    self.client_drops += 1
                self._lost(msg.created)
                return
            start = q[-1] if q else now
            q.append(start + self._client_service())
        self._arrived(c, msg.created, msg.data, now)

    def metrics(self) -> dict:
        return super().metrics()


class ServerSentEvents(_Streaming):
    """Server-sent events: one request, an unending response of frames.

    * ``sse.connection_lifetime`` (optional): an intermediary drops each
      stream after that long; the client notices after the frames already
      sent, waits ``sse.retry`` and reconnects.
    * ``sse.resume: true``: the reconnect carries Last-Event-ID and the
      server replays everything the client has not got (nothing is lost);
      ``false``: updates created while the stream is down are lost.
    """

    pattern = "sse"

    def __init__(self, sim):
        sec = sim.config["sse"]
        self.resume = sec["resume"]
        self.retry = sec["retry"]
        self.lifetime = (sim.sampler(sec["connection_lifetime"], "sse/lifetime")
                         if sec["connection_lifetime"] is not None else None)
        super().__init__(sim)


class Push(_Streaming):
    """Push over a persistent bidirectional connection (WebSocket-like).

    * The client must be online: updates for a client without an open
      connection are lost (no server-side queue), and so are frames that
      reach it after it went offline.
    * A client slower than its stream overflows its buffer: with
      ``clients.service_time`` and ``clients.buffer`` each client is a
      FIFO queue with K = buffer + 1 places; arrivals finding it full are
      dropped (M/M/1/K blocking under Poisson updates and exponential
      processing).
    """

    pattern = "push"


def _figures(result, out_dir):
    from commsim.figures.notifications import figures

    return figures(result, out_dir)


def _check(cfg: dict) -> None:
    """What these models do not cover is refused at load time (exit 2)."""
    net = cfg["network"]
    if net["handshake"] != "none":
        raise ConfigError("network.handshake", f"got {net['handshake']!r}; the notification "
                          "patterns do not model handshakes: use none")
    if net["loss"] > 0:
        raise ConfigError("network.loss", f"got {net['loss']!r}; the notification patterns do not "
                          "model lost messages (a poll, frame or connect given up on by the link "
                          "would go unnoticed): use 0")


PATTERNS = [
    Pattern("short_polling", "clients ask every interval; the server answers at once, empty "
            "or with everything pending", ShortPolling, ("short_polling", *_WORKLOAD), _figures, _check),
    Pattern("long_polling", "the server holds each poll until an update or a timeout; the client "
            "re-polls on every response", LongPolling, ("long_polling", *_WORKLOAD), _figures, _check),
    Pattern("sse", "server-sent events: one request, an unending response of event frames, "
            "reconnects with or without resume", ServerSentEvents, ("sse", *_WORKLOAD), _figures, _check),
    Pattern("push", "a persistent bidirectional connection; the server sends as updates happen",
            Push, ("push", *_WORKLOAD), _figures, _check),
]
