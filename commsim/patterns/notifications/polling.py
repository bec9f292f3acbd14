"""Polling notification patterns: the shared poll/response machinery and short
polling (long polling, built on the same base, is in :mod:`.long_polling`)."""

from __future__ import annotations

import heapq

from commsim.engine.events import Waker
from commsim.network import Message
from commsim.patterns.notifications.base import SERVER, _Base


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
        now = self.env.now
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
        work = self._service() + (self.costs.poll(items) if self.costs.any else 0.0)
        if items is None:
            self.cpu.submit(work, purpose, self._send_empty, c, True)
        else:
            self.cpu.submit(work, purpose, self._send_items,
                            (c, items, self.poll_sent[c]))

    # A poll response's ``created`` is the time its poll was sent (the
    # client's clock starts before any handshake), for ``poll_rtt_mean``.
    def _send_empty(self, c, _wait) -> None:
        now = self.env.now
        if now >= self.sim.start:
            self.empty += 1
            self.poll_responses += 1
        self.down.send(Message("response", SERVER, c, self.response_header, 0, 0, 0,
                               self.poll_sent[c]), self._client_empty)

    def _send_items(self, token, _wait) -> None:
        c, items, sent = token
        now = self.env.now
        if now >= self.sim.start:
            self.poll_responses += 1
        size = sum(items[1::3])
        self.down.send(Message("response", SERVER, c, self.response_header, size, 0, 0, sent,
                               items), self._client_items)

    def _rtt(self, msg) -> None:
        if self.sim.start <= msg.created < self.sim.end:
            self.rtt_sum += self.env.now - msg.created
            self.rtt_n += 1

    def _poll_when_open(self, c: int, now: float) -> None:
        """Open (or reuse) the client's connection, then send its poll."""
        msg = Message("request", c, SERVER, self.request_header, 0, 0, 0, now)
        self.connector.ensure(c, lambda extra: self._send_with(msg, extra, self._server_poll))

    def _client_items(self, msg) -> None:
        self._rtt(msg)
        c = msg.dst
        items = msg.data
        if not self.online[c]:
            for k in range(0, len(items), 3):
                self._lost(items[k], c, items[k + 1])
        else:
            now = self.env.now
            arrived = self._arrived
            for k in range(0, len(items), 3):
                arrived(c, items[k], items[k + 2], now, -1.0, items[k + 1])
        self._after_response(c)

    def _client_empty(self, msg) -> None:
        self._rtt(msg)
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
      idle kept-alive connection) or, with ``network.idle_timeout``, until
      the server closes it idle; without it a connection is open only
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
        if self.connector.idle is not None:  # network.idle_timeout: the server closed it
            self.connector.on_idle_close = self._idle_closed
        self._send_empty_cb = self._send_empty  # one bound method, not one per poll
        self._client_empty_cb = self._client_empty_short
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
            self._tick = Waker(sim.env, self._rotate)  # one event re-armed for every tick
            self._tick.arm_at(self._phase[0])
        else:
            self._gap = sim.sampler({"dist": "uniform", "low": T - self.jitter,
                                     "high": T + self.jitter}, "short_polling/jitter")
            self._heap = [(phase[c], c) for c in range(n)]
            heapq.heapify(self._heap)
            self._tick = Waker(sim.env, self._jittered)
            self._tick.arm_at(self._heap[0][0])

    # -------------------------------------------------------------- clients --
    def _rotate(self, _event) -> None:
        now = self.env.now
        order, phase, n = self._order, self._phase, self.n
        j = self._j
        base = self._base
        online = self.online
        polls = self.polls
        conn_open = self.conn_open
        send = self.up.send
        header = self.request_header
        server_poll = self._server_poll
        handshakes = self.handshakes
        while True:
            c = order[j]
            if online[c]:
                if polls is not None:
                    polls[c] += 1
                if conn_open is not None and not conn_open[c]:
                    conn_open[c] = 1
                    self._conn(+1)
                if handshakes:
                    self._poll_when_open(c, now)
                else:
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
        self._tick.arm_at(t)

    def _jittered(self, _event) -> None:
        now = self.env.now
        heap = self._heap
        gap = self._gap
        poll = self._poll
        while heap[0][0] <= now:
            c = heap[0][1]
            heapq.heapreplace(heap, (now + gap(), c))
            poll(c, now)
        self._tick.arm_at(heap[0][0])

    def _poll(self, c: int, now: float) -> None:
        if not self.online[c]:
            return
        if self.polls is not None:
            self.polls[c] += 1
        if self.conn_open is not None and not self.conn_open[c]:
            self.conn_open[c] = 1
            self._conn(+1)
        if self.handshakes:
            self._poll_when_open(c, now)
            return
        self.up.send(Message("request", c, SERVER, self.request_header, 0, 0, 0, now),
                     self._server_poll)

    # --------------------------------------------------------------- server --
    def _server_poll(self, msg) -> None:
        now = self.env.now
        feed = self.feed
        if feed.next_time <= now:
            feed.drain(now, self._store)
        if self.conn_open is None:
            self._conn(+1)
        c = msg.src
        bc = self.bc_cursor
        if self.pending[c] is None and (bc is None or bc[c] == len(self.bc_times)):
            work = self._service() + (self.costs.poll(None) if self.costs.any else 0.0)
            self.cpu.submit(work, "poll", self._send_empty_cb, msg, True)
        else:
            work = self._service()
            items = self._take(c)
            if self.costs.any:
                work += self.costs.poll(items)
            self.cpu.submit(work, "poll", self._send_items, (c, items, msg.created))

    def _send_empty(self, req, _wait) -> None:
        now = self.env.now
        if self.conn_open is None:
            self._conn(-1)
        if now >= self.sim.start:
            self.empty += 1
            self.poll_responses += 1
        self.down.send(Message("response", SERVER, req.src, self.response_header, 0, 0, 0,
                               req.created), self._client_empty_cb)

    def _client_empty_short(self, msg) -> None:
        # _client_empty inlined (one call per poll on the hot path)
        created = msg.created
        sim = self.sim
        if sim.start <= created < sim.end:
            self.rtt_sum += self.env.now - created
            self.rtt_n += 1
        if self.handshakes:
            self.connector.done(msg.dst)

    def _after_response(self, c: int) -> None:
        if self.handshakes:
            self.connector.done(c)  # without keep-alive the connection closes

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

    def _idle_closed(self, c: int) -> None:
        if self.conn_open[c]:
            self.conn_open[c] = 0
            self._conn(-1)

    def _availability(self, c: int, online: bool) -> None:
        if not online and self.conn_open is not None and self.conn_open[c]:
            self.conn_open[c] = 0
            self._conn(-1)
        if not online and self.handshakes:
            self.connector.close(c)
