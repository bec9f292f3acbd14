"""Streaming notification patterns: server-sent events and push."""

from __future__ import annotations

import math
from array import array
from collections import deque
from functools import partial
from heapq import heappop, heappush
from itertools import repeat
from operator import add, sub

import numpy as np

from commsim.engine.simulation import call_later
from commsim.network import Message
from commsim.engine.ahead import ArrivalOrder, Unsettled
from commsim.patterns.notifications.base import SERVER, STREAM_START, _Base

#: The streaming fast path (see ``_Streaming.__init__``); tests turn it off to
#: compare it with the general path.
FAST_FRAMES = True
#: The run-ahead mode (see ``_Streaming._run_ahead``); tests turn it off to
#: compare it with the event-driven paths.
RUN_AHEAD = True


def streams_ahead(cfg: dict) -> bool:
    """Does a resolved SSE or push run config take the run-ahead mode
    (:meth:`_Streaming._run_ahead`)?  Its configuration side: one server
    (no topology), hops of constant latency without loss, bandwidth or
    segment counting, no handshakes, clients always online that keep no
    queue, streams that intermediaries never drop, and nothing but updates
    reaching the server after the connects (no jobs or broadcasts).  (A
    trace or ``--records`` also keep the event-driven path.)"""
    from commsim.dists import make_distribution
    from commsim.nodes import cluster

    pattern = cfg["pattern"]
    if pattern not in ("sse", "push") or cluster.active(cfg):
        return False
    net, wl, cl = cfg["network"], cfg["workload"], cfg["clients"]
    constant = make_distribution(net["latency"], "duration", "network.latency").is_constant
    work = make_distribution(cl["service_time"], "duration", "clients.service_time")
    return (constant and not net.get("loss") and net.get("bandwidth") is None
            and not net.get("segment_overhead") and net.get("handshake", "none") == "none"
            and wl["job_rate"] == 0 and wl["broadcast_rate"] == 0 and wl["online_time"] is None
            and (pattern != "sse" or cfg["sse"]["connection_lifetime"] is None)
            and (cl["buffer"] is None or (work.is_constant and work.mean == 0)))


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
        # The fast path (issue 14): where nothing can happen to a frame
        # between the server sending it and the client getting it, the
        # client's bookkeeping is done when it is sent and the frame is posted
        # (Link.post: bytes and ledger counted, no arrival event).  Only the
        # plain classes (a subclass may act on arrivals) and only where the
        # client is always online, keeps no queue, no records are taken and
        # the down link is a FIFO delay line (constant latency, no loss or
        # bandwidth, no tracer).  tests/test_notifications_fast.py runs both
        # paths and compares every metric.
        self.fast = (FAST_FRAMES and type(self) in (ServerSentEvents, Push)
                     and self.down.can_post() and self.ops is None
                     and not self.avail.enabled and not self.client_queue)
        self.ahead = self.fast and self._can_run_ahead()
        if self.ahead:
            self._start_ahead()
            return
        if self.fast:
            self._frame_msg = Message("event", SERVER, -1, 0, 0, self.frame)  # reused by post
            self._latency = self.down.constant_latency
            self._frame_cb = self._frame_posted
            self.feed.start(self._publish_fast)
        else:
            self._frame_cb = self._frame_ready
            self.feed.start(self._publish_feed)
        self._staggered_start(STREAM_START, self._first_connect)

    def _first_connect(self, c: int) -> None:
        if self.online[c] and not self.open[c] and not self.connecting[c]:
            self._connect(c)

    # ---------------------------------------------------------- connection --
    def _connect(self, c: int) -> None:
        self.connecting[c] = 1
        msg = Message("request", c, SERVER, self.request_header, 0, 0, 0, self.env.now,
                      label="connect")
        if self.handshakes:  # every (re)connect is a new connection
            self.connector.close(c)
            self.connector.ensure(c, lambda extra: self._send_with(msg, extra, self._server_connect))
        else:
            self.up.send(msg, self._server_connect)

    def _server_connect(self, msg) -> None:
        c = msg.src
        replay = self.backlog.pop(c, None)
        work = self._service() + (self.costs.stream_open() if self.costs.any else 0.0)
        self.cpu.submit(work, "connect", self._opened, (c, replay), replay is None)

    def _opened(self, token, _wait) -> None:
        c, replay = token
        now = self.env.now
        # Everything the server sends on a stream goes in order on it
        # (stream key: the client), so a retransmitted frame holds back the
        # frames behind it and the close comes after the last frame.
        self.down.send_ordered(Message("response", SERVER, c, self.response_header, 0, 0, 0,
                                       now, label="stream open"), self._client_opened, c)
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
        if self.resume and c in self.backlog:
            # Updates that came while the opening response waited for the CPU
            # (the stream was not open yet) follow the replay; without this
            # they would wait for the next reconnect.
            late = self.backlog.pop(c)
            for k in range(0, len(late), 3):
                self._send_frame(c, late[k], late[k + 1], late[k + 2])

    def _client_opened(self, msg) -> None:
        self.connecting[msg.dst] = 0

    def _close(self, c: int) -> None:
        if self.open[c]:
            self.open[c] = 0
            self._conn(-1)

    def _drop(self, event) -> None:
        """An intermediary drops the stream: the client learns of it after the
        frames already sent (a zero-byte close on the same FIFO link)."""
        c, no = event.value
        if not self.open[c] or self.conn_no[c] != no:
            return
        self._close(c)
        if self.handshakes:
            self.connector.close(c)
        self.down.send_ordered(Message("close", SERVER, c, created=self.env.now, label="close"),
                               self._client_dropped, c)

    def _client_dropped(self, msg) -> None:
        c = msg.dst
        if self.online[c]:
            call_later(self.env, self.retry, self._retry, c)

    def _retry(self, event) -> None:
        c = event.value
        if self.online[c] and not self.open[c] and not self.connecting[c]:
            if self.env.now >= self.sim.start:
                self.reconnects += 1
            self._connect(c)

    def _availability(self, c: int, online: bool) -> None:
        if online:
            if not self.open[c] and not self.connecting[c]:
                if self.env.now >= self.sim.start:
                    self.reconnects += 1
                self._connect(c)
        else:
            self._close(c)
            self.connecting[c] = 0
            if self.handshakes:
                self.connector.close(c)

    # -------------------------------------------------------------- frames --
    def _publish_feed(self, c: int, created: float, size: int) -> None:
        self.publish(c, created, size)

    def publish(self, c: int, created: float, size: int) -> int:
        uid = self._new_uid(created)
        self._deliver(c, created, size, uid)
        return uid

    def _broadcast(self, _i) -> None:
        now = self.env.now
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
            self._lost(created, c, size)

    def _send_frame(self, c, created, size, uid) -> None:
        work = self._service() + (self.costs.frame(size) if self.costs.any else 0.0)
        self.cpu.submit(work, "event", self._frame_cb, (c, created, size, uid))

    def _publish_fast(self, c: int, created: float, size: int) -> None:
        """The feed's updates on the fast path: :meth:`publish`,
        ``_new_uid``, :meth:`_deliver` and :meth:`_send_frame` written out
        (one call per update instead of five)."""
        uid = self.next_uid
        self.next_uid = uid + 1
        self.seen.append(0)
        sim = self.sim
        if sim.start <= created < sim.end:
            self.created += 1
        if self.open[c]:
            work = self._service() + (self.costs.frame(size) if self.costs.any else 0.0)
            self.cpu.submit(work, "event", self._frame_posted, (c, created, size, uid))
        elif self.resume:
            self.backlog.setdefault(c, []).extend((created, size, uid))
        else:
            self._lost(created, c, size)

    def _frame_posted(self, token, _wait) -> None:
        """:meth:`_frame_ready` and, at the frame's arrival time,
        :meth:`_client_frame`, on the fast path: the client is online and has
        no queue, so what it records is known when the frame leaves; the
        frame's arrival schedules nothing.  A frame that would arrive at or
        after the window's end takes the general path (its arrival event
        does not run unless the caller runs the simulation on past the end,
        as some tests do to drain what is in flight)."""
        if self.env.now + self._latency >= self.sim.end:
            self._frame_ready(token, _wait)
            return
        c, created, size, uid = token
        msg = self._frame_msg
        msg.payload = size
        arrive = self.down.post(msg)
        if self.jobs:
            self._arrived(c, created, uid, arrive, arrive, size)
            return
        # _arrived(c, created, uid, arrive, arrive, size) written out for the
        # fast path (no records, no job notices pending; arrive < end).
        sim = self.sim
        if uid >= 0:
            seen = self.seen
            if seen[uid]:
                if sim.start <= created < sim.end:
                    self.duplicates += 1
                return
            seen[uid] = 1
        if sim.start <= arrive:
            self.resolved += 1
        if sim.start <= created < sim.end:
            self.delivered += 1
            self.lat.append(arrive - created)
            self.proc.append(arrive - created)

    def _frame_ready(self, token, _wait) -> None:
        c, created, size, uid = token
        self.down.send_ordered(Message("event", SERVER, c, 0, size, self.frame, 0, created, uid),
                               self._client_frame, c)

    def _client_frame(self, msg) -> None:
        c = msg.dst
        if not self.online[c]:
            if self.resume:
                # The client's Last-Event-ID precedes this frame: the server
                # replays it after the reconnect.
                self.backlog.setdefault(c, []).extend((msg.created, msg.payload, msg.data))
            else:
                self._lost(msg.created, c, msg.payload)
            return
        now = self.env.now
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
                self._lost(msg.created, c, msg.payload)
                return
            start = q[-1] if q else now
            done = start + self._client_service()
            q.append(done)
            self._arrived(c, msg.created, msg.data, now, done, msg.payload)
            return
        self._arrived(c, msg.created, msg.data, now, now, msg.payload)

    # ----------------------------------------------------------- run ahead --
    #: CPU arrivals handled per wake-up in run-ahead mode, in simulated
    #: seconds (it changes the number of wake-ups only).
    AHEAD_BATCH = 0.005

    def _can_run_ahead(self) -> bool:
        """Run-ahead mode applies (see :meth:`_run_ahead`); called where the
        fast path applies (the plain classes, no records, always online, no
        client queue, a FIFO down link without tracer)."""
        return (RUN_AHEAD and streams_ahead(self.sim.config) and self.up.can_post() and self.down.can_post()
                and self.lifetime is None and not self.handshakes and self.ops is None)

    def _start_ahead(self) -> None:
        # Frames and opening responses are counted once the clock has passed
        # their arrival (or at the end), so that a run stopped early
        # (max_run_queue) counts none that leave after its stop.
        self._unsettled = Unsettled(self._count_frames)  # frames: (finish, created, size)
        self._open_at = array("d", [math.inf]) * self.n  # when each client's stream opens
        self._replays: list = []   # heap of (f, client): a stream opens at f (resume)
        self._late: dict = {}      # client -> [created, size, ...] waiting for its stream
        self._opens: list = []     # CPU finish of each opening response not yet counted
        self._samples = ArrivalOrder(self.lat, self.proc)  # no client queue: processed on arrival
        self._begin_run_ahead()                            # the connects are the first requests

    def _next_time(self) -> float:
        """The next job's arrival at the server: an update, a connect or a
        stream opening with a backlog to replay."""
        t = self.feed.next_time
        if self._first_i < self.n:
            t = min(t, self._first_time[self._first_i] + self._d_up)
        if self._replays:
            t = min(t, self._replays[0][0])
        return t

    def _run_ahead(self, _event) -> None:
        """Every job reaching the server from now to ``AHEAD_BATCH`` later
        (and before the run ends), with what follows it, at once.

        Exact for the configurations :meth:`_can_run_ahead` admits: each
        hop has a constant latency ``d`` and keeps order, the server's CPU
        is FIFO (:meth:`Cpu.admit_many` computes start and finish at
        arrival), every client is always online and keeps no queue, and the
        server's jobs are known from the past alone: a client's connect
        (sent at its start time, at the server ``d`` later), the update
        frames (at their creation, if the client's stream is open by then)
        and, with resume, the replay of the updates that came before the
        stream opened (when its opening response leaves).  So the frame of
        an update created at ``t`` is sent at its CPU finish ``f`` and
        reaches the client at ``f + d``, with the times, bytes, CPU and
        update bookkeeping of the event-driven path; latency samples are
        kept in order of arrival (sorted by arrival, ties in order of
        admission).  What the run's end cuts off stays cut off, as in the
        event-driven path.  Sums of times (latency mean, the CPU's wait,
        sojourn and jobs present) are added in another order, so they can
        differ in the last bits; counts are equal.
        """
        hi = self.sim.end
        now = self.env.now
        self._unsettled.settle(now)
        self._settle_opens(now)
        until = now + self.AHEAD_BATCH
        if until > hi:
            until = hi
        if ((self._first_i < self.n and self._first_time[self._first_i] + self._d_up < hi)
                or (self._replays and self._replays[0][0] < hi)):
            cut = self._ahead_mixed(now, until)
        else:
            cut = self._ahead_updates(now, until)
        # The next job reaches the server at ``nxt`` or later, so its client
        # no earlier than ``nxt + d``, and no frame still to be counted
        # arrives before the first arrival of its batch: every latency before
        # both is known.
        nxt = self._next_time()
        self._samples.emit(min(nxt + self._d_down, self._unsettled.first()))
        # Next: the next batch, or if this one was cut short (a stop could
        # come) the next job's arrival.
        at = nxt if cut or nxt > until else until
        if at < hi:
            self._tick.arm_at(at)

    def _stop_could_come(self, now: float, at: float, jobs: int = 1) -> bool:
        """Run ahead: are ``jobs`` jobs arriving at ``at`` cut from this
        batch?  Yes if they could fill the run queue (``max_run_queue``) and
        arrive after ``now``: the batch ends before them and the next wake-up
        is at their arrival, so a stop comes at that instant, as in the
        event-driven path."""
        return at > now and self.cpu.queued + jobs >= self.sim.max_run_queue

    def _ahead_mixed(self, now: float, until: float) -> bool:
        """Run ahead while connects or replays are due: job by job, in order
        of arrival at the server.  Returns whether the batch was cut short
        (:meth:`_stop_could_come`)."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        d_up = self._d_up
        times, who, sizes = self.feed.take_before(until)
        nf = len(times)
        c_time, c_order, n = self._first_time, self._first_order, self.n
        replays, late, open_at = self._replays, self._late, self._open_at
        admit, take = self.cpu.admit_many, self._take_service
        costs = self.costs if self.costs.any else None
        resume = self.resume
        stop_could_come = self._stop_could_come
        inf = math.inf
        f_at, f_created, f_size = [], [], []   # frames: CPU finish, created, size
        opens = self._opens
        # Counted as the loop goes, and kept in the finally clause even if a
        # job fills the run queue (Overloaded) and the run stops there.
        fi, ci = 0, self._first_i
        sent = requests = created = missed = 0
        # Jobs this batch admits before one could fill the run queue; past
        # that, each is checked (_stop_could_come).
        room = sim.max_run_queue - self.cpu.queued - 1
        jobs = 0
        cut = False
        try:
            while True:
                tf = times[fi] if fi < nf else inf
                tc = c_time[ci] + d_up if ci < n else inf
                tr = replays[0][0] if replays else inf
                if tc <= tf and tc <= tr:
                    if tc >= until:
                        break
                    if jobs >= room and stop_could_come(now, tc):
                        cut = True
                        break
                    # A connect (sent at c_time, before the end) reaches the server.
                    c = c_order[ci]
                    if c_time[ci] >= lo:
                        requests += 1
                    ci += 1
                    sent += 1  # and delivered
                    jobs += 1
                    work = take(1)[0] + (costs.stream_open() if costs is not None else 0.0)
                    f = admit((tc,), (work,), (c not in late,), "connect")[0]
                    if f < hi:  # the opening response leaves; the stream is open
                        opens.append(f)
                        open_at[c] = f
                        if resume:
                            heappush(replays, (f, c))
                elif tr <= tf:
                    if tr >= until:
                        break
                    c = replays[0][1]
                    items = late.get(c)
                    if items and jobs + len(items) // 2 > room \
                            and stop_could_come(now, tr, len(items) // 2):
                        cut = True
                        break
                    # A stream opens: what waited for it is replayed, in order.
                    heappop(replays)
                    late.pop(c, None)
                    if items:
                        jobs += len(items) // 2
                        for k in range(0, len(items), 2):
                            size = items[k + 1]
                            work = take(1)[0] + (costs.frame(size) if costs is not None else 0.0)
                            f_at.append(admit((tr,), (work,), (False,), "event")[0])
                            f_created.append(items[k])
                            f_size.append(size)
                else:
                    # An update (taken before ``until``).
                    c = who[fi]
                    if open_at[c] <= tf and jobs >= room and stop_could_come(now, tf):
                        cut = True
                        break
                    size = sizes[fi]
                    fi += 1
                    if lo <= tf < hi:
                        created += 1
                    if open_at[c] <= tf:
                        jobs += 1
                        work = take(1)[0] + (costs.frame(size) if costs is not None else 0.0)
                        f_at.append(admit((tf,), (work,), (False,), "event")[0])
                        f_created.append(tf)
                        f_size.append(size)
                    elif resume:
                        late.setdefault(c, []).extend((tf, size))
                    elif lo <= tf < hi:  # lost (_lost at its creation)
                        missed += 1
        finally:
            self._first_i = ci
            if fi < nf:  # the updates not handled are the feed's next again
                self.feed.put_back(times[fi:], who[fi:], sizes[fi:])
            self.next_uid += fi
            self.created += created
            self.missed += missed
            self.resolved += missed
            counter = sim.bytes
            counter.sent += sent
            counter.delivered += sent
            if requests:
                counter.transmit_many("request", requests, self.request_header)
            if f_at:
                self._frames(f_at, f_created, f_size)
        return cut

    def _ahead_updates(self, now: float, until: float) -> bool:
        """Run ahead once every connect and replay is done: the updates
        created before ``until``, in bulk; or as many as cannot fill the run
        queue (``max_run_queue``), one at least if created now.  Returns
        whether the batch was cut short (:meth:`_stop_could_come`)."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        times, who, sizes = self.feed.take_before(until)
        if not times:
            return False
        k = len(times)
        room = sim.max_run_queue - self.cpu.queued - 1  # jobs that cannot fill the queue
        cut = k > room
        if cut:
            k = int(room) if room >= 1 else (1 if times[0] <= now else 0)
            self.feed.put_back(times[k:], who[k:], sizes[k:])
            del times[k:], who[k:], sizes[k:]
            if not times:
                return True
        self.next_uid += k
        if times[0] >= lo and times[-1] < hi:
            self.created += k
        else:
            self.created += sum(1 for t in times if lo <= t < hi)
        open_at = self._open_at
        if max(map(open_at.__getitem__, who)) > times[0]:  # some stream is not open
            keep = [open_at[c] <= t for t, c in zip(times, who)]
            if not self.resume:  # lost (_lost at creation); with resume they wait for ever
                lost = sum(1 for t, ok in zip(times, keep) if not ok and lo <= t < hi)
                self.missed += lost
                self.resolved += lost
            times = [t for t, ok in zip(times, keep) if ok]
            sizes = [s for s, ok in zip(sizes, keep) if ok]
            if not times:
                return cut
        works = self._take_service(len(times))
        if self.costs.any:
            frame_cost = self.costs.frame
            works = [w + frame_cost(s) for w, s in zip(works, sizes)]
        finish = self.cpu.admit_many(times, works, repeat(False), "event")
        self._frames(finish, times, sizes)
        return cut

    def _frames(self, finish: list, created: list, sizes: list) -> None:
        """Run ahead: frames whose CPU jobs finish at ``finish`` leave then
        (if before the end) and reach their clients ``d`` later: kept as one
        batch until the clock has passed its last arrival (:class:`Unsettled`)."""
        d = self._d_down
        self._unsettled.add(min(finish) + d, max(finish) + d, finish, created, sizes)

    def _settle_opens(self, now: float) -> None:
        """Run ahead: count the opening responses that have arrived before
        ``now`` (so before the end, wherever the run stops)."""
        opens = self._opens
        if opens and opens[0] + self._d_down < now:  # in order of arrival at the server
            d = self._d_down
            lo = self.sim.start
            cut = 0
            counted = 0
            for f in opens:
                if f + d >= now:
                    break
                cut += 1
                if f >= lo:
                    counted += 1
            del opens[:cut]
            counter = self.sim.bytes
            counter.sent += cut
            counter.delivered += cut
            if counted:
                counter.transmit_many("response", counted, self.response_header)

    def _count_frames(self, finish: list, created: list, sizes: list) -> None:
        """Run ahead: the frames of one batch, counted against the end of
        the run (sent if they leave before it, delivered if they arrive
        before it)."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        d = self._d_down
        counter = sim.bytes
        k = len(finish)
        if min(created) >= lo and max(finish) + d < hi:
            # The common case, in bulk: all created in the window, all arrive in it.
            counter.sent += k
            counter.delivered += k
            counter.transmit_many("event", k, 0, sum(sizes), self.frame)
            self.resolved += k
            self.delivered += k
            r = list(map(partial(add, d), finish))
            self._samples.add(r, map(sub, r, created))
            return
        sent = delivered = in_flight = frames = payload = resolved = got = 0
        pend_r, pend_lat = [], []
        for f, t, size in zip(finish, created, sizes):
            if f >= hi:
                continue  # never sent: the update stays pending
            sent += 1
            if f >= lo:
                frames += 1
                payload += size
            r = f + d
            if r < hi:
                delivered += 1
                if r >= lo:
                    resolved += 1
                if lo <= t < hi:
                    got += 1
                    pend_r.append(r)
                    pend_lat.append(r - t)
            else:
                in_flight += 1
        counter.sent += sent
        counter.delivered += delivered
        self._ahead_in_flight += in_flight
        if frames:
            counter.transmit_many("event", frames, 0, payload, self.frame)
        self.resolved += resolved
        self.delivered += got
        if pend_r:
            self._samples.add(pend_r, pend_lat)

    def _ahead_end(self) -> None:
        """At the end of the run: connects sent but not yet at the server are
        in flight; every latency left is in; the connections held."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        counter = sim.bytes
        self._first_requests_in_flight()
        self._unsettled.settle_all()
        d = self._d_down
        responses = 0
        # A run stopped at ``hi`` by the replay of a stream opening at ``hi``
        # (max_run_queue) opened that stream first, as the event-driven path
        # does: its completion at ``hi`` runs before the replay it starts.
        if sim.stopped:
            hi = math.nextafter(hi, math.inf)
        for f in self._opens:
            if f < hi:
                counter.sent += 1
                if f >= lo:
                    responses += 1
                if f + d < hi:
                    counter.delivered += 1
                else:
                    self._ahead_in_flight += 1
        self._opens = []
        if responses:
            counter.transmit_many("response", responses, self.response_header)
        self._samples.emit(math.inf)
        # Streams only open in this mode: the most held is every one opened
        # before the end.
        self.conns = self.conns_max = int(np.count_nonzero(
            np.frombuffer(self._open_at, dtype=np.float64) < hi))

    def metrics(self) -> dict:
        out = super().metrics()
        if self.ahead and self._ahead_in_flight:
            out["in_flight"] += self._ahead_in_flight
        return out


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
