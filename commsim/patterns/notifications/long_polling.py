"""Long polling: the server holds each poll until an update or the timeout
(built on the polling base in :mod:`.polling`)."""

from __future__ import annotations

import math
from array import array
from collections import deque

from commsim.engine.events import Waker
from commsim.engine.simulation import call_at
from commsim.network import Message
from commsim.patterns.notifications.base import SERVER, STREAM_START
from commsim.patterns.notifications.polling import _Polling

#: The long-polling fast path (see ``LongPolling.__init__``); tests turn it off
#: to compare it with the general path.
FAST_REPOLL = True


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

    Fast path (issue 14): where a response's arrival can change nothing (the
    client is always online, no handshakes, jobs or records, both links FIFO
    delay lines: constant latency, no loss or bandwidth, no tracer), a
    response and the client's immediate re-poll are both posted when the
    response leaves (``Link.post``: bytes and ledger counted as by a send),
    the client's bookkeeping at the response's arrival (latency, round trip,
    the re-poll's send time) is done then, and the re-poll's arrival at the
    server is one entry of a FIFO of (arrival, client) with one pending
    event: 3 events per answered poll instead of 4.  A response leaving just
    before the window opens (its re-poll would leave inside it) or arriving
    at or after the end takes the general path.
    """

    pattern = "long_polling"

    def __init__(self, sim):
        super().__init__(sim)
        n = self.n
        self.H = self.section["timeout"]
        self.held = bytearray(n)
        self.hold_no = [0] * n
        self.outstanding = bytearray(n)
        self.poll_sent = array("d", bytes(8 * n))  # when each client's poll was sent
        self._deadlines: deque = deque()
        self._armed = False
        self.fast = (FAST_REPOLL and type(self) is LongPolling and self.up.can_post()
                     and self.down.can_post() and not self.handshakes and self.ops is None
                     and not self.avail.enabled and self.polls is None)
        if self.fast:
            self._down_latency = self.down.constant_latency
            self._empty_msg = Message("response", SERVER, -1, self.response_header)
            self._items_msg = Message("response", SERVER, -1, self.response_header)
            self._poll_msg = Message("request", -1, SERVER, self.request_header)
            self._repolls: deque = deque()  # (arrival at the server, client), in order
            self._repoll_waker = Waker(self.env, self._repolls_arrive)
            # The CPU's completions call these (instance attributes shadow
            # _Polling's methods, which stay the general path).
            self._send_empty = self._send_empty_fast
            self._send_items = self._send_items_fast
        self.feed.start(self._publish_feed)
        self._staggered_start(STREAM_START, self._first_poll)

    def _first_poll(self, c: int) -> None:
        if self.online[c] and not self.outstanding[c]:
            self._send_poll(c)

    def _send_poll(self, c: int) -> None:
        self.outstanding[c] = 1
        if self.polls is not None:
            self.polls[c] += 1
        now = self.env.now
        self.poll_sent[c] = now
        if self.handshakes:
            self._poll_when_open(c, now)
            return
        self.up.send(Message("request", c, SERVER, self.request_header, 0, 0, 0, now),
                     self._server_poll)

    def _server_poll(self, msg) -> None:
        self._poll_arrived(msg.src)

    def _poll_arrived(self, c: int) -> None:
        if self.pending[c] is not None or (self.bc_cursor is not None
                                           and self.bc_cursor[c] < len(self.bc_times)):
            self._respond(c, self._take(c))
            return
        self.held[c] = 1
        self.hold_no[c] += 1
        self._conn(+1)
        deadline = self.env.now + self.H
        self._deadlines.append((deadline, c, self.hold_no[c]))
        if not self._armed:
            self._armed = True
            call_at(self.env, deadline, self._expire)

    def _expire(self, _event) -> None:
        now = self.env.now
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
        if self.handshakes:
            self.connector.done(c)  # without keep-alive the connection closes
        if self.online[c]:
            self._send_poll(c)

    def _availability(self, c: int, online: bool) -> None:
        if online and not self.outstanding[c]:
            self._send_poll(c)
        elif not online and self.handshakes:
            self.connector.close(c)

    # ------------------------------------------------------------ fast path --
    def _send_empty_fast(self, c, _wait) -> None:
        now = self.env.now
        sim = self.sim
        t1 = now + self._down_latency  # when the response reaches the client
        if t1 >= sim.end or now < sim.start <= t1:
            _Polling._send_empty(self, c, _wait)
            return
        if now >= sim.start:
            self.empty += 1
            self.poll_responses += 1
        self.down.post(self._empty_msg)
        created = self.poll_sent[c]  # _client_empty's round trip, at t1
        if sim.start <= created < sim.end:
            self.rtt_sum += t1 - created
            self.rtt_n += 1
        self._repoll(c, now, t1)

    def _send_items_fast(self, token, _wait) -> None:
        now = self.env.now
        sim = self.sim
        t1 = now + self._down_latency
        if t1 >= sim.end or now < sim.start <= t1:
            _Polling._send_items(self, token, _wait)
            return
        c, items, sent = token
        if now >= sim.start:
            self.poll_responses += 1
        msg = self._items_msg
        msg.payload = sum(items[1::3])
        self.down.post(msg)
        if sim.start <= sent < sim.end:  # _client_items at t1: round trip, then each update
            self.rtt_sum += t1 - sent
            self.rtt_n += 1
        arrived = self._arrived
        for k in range(0, len(items), 3):
            arrived(c, items[k], items[k + 2], t1, -1.0, items[k + 1])
        self._repoll(c, now, t1)

    def _repoll(self, c: int, now: float, t1: float) -> None:
        """The client re-polls at ``t1`` (``_after_response`` and
        ``_send_poll``: always online, so its poll stays outstanding)."""
        self.poll_sent[c] = t1
        t2 = self.up.post(self._poll_msg, t1)
        repolls = self._repolls
        repolls.append((t2, c))
        if len(repolls) == 1:
            self._arm_repolls(t2, now)

    def _arm_repolls(self, when: float, now: float) -> None:
        # Wake at exactly ``when`` (the link's own wake-up for this arrival
        # would come at exactly that time: now + (when - now) may round).
        delay = when - now
        while now + delay < when:
            delay = math.nextafter(delay, math.inf)
        while now + delay > when:
            delay = math.nextafter(delay, -math.inf)
        self._repoll_waker.arm(delay)

    def _repolls_arrive(self, _event) -> None:
        repolls = self._repolls
        now = self.env.now
        arrived = self._poll_arrived
        while True:  # as Link._wake: the head is due, then all due by now
            c = repolls.popleft()[1]
            arrived(c)
            if not repolls or repolls[0][0] > now:
                break
        if repolls:
            self._arm_repolls(repolls[0][0], now)
