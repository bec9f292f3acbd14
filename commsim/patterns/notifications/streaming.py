"""Streaming notification patterns: server-sent events and push."""

from __future__ import annotations

from collections import deque

from commsim.engine.simulation import call_later
from commsim.network import Message
from commsim.patterns.notifications.base import SERVER, STREAM_START, _Base

#: The streaming fast path (see ``_Streaming.__init__``); tests turn it off to
#: compare it with the general path.
FAST_FRAMES = True


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
