"""Long polling: the server holds each poll until an update or the timeout
(built on the polling base in :mod:`.polling`)."""

from __future__ import annotations

import math
from array import array
from collections import deque

from commsim.engine.events import Waker
from commsim.engine.simulation import call_at, call_later
from commsim.network import Message
from commsim.patterns.notifications.base import SERVER, STREAM_START
from commsim.patterns.notifications.polling import _Polling

#: The long-polling fast path (see ``LongPolling.__init__``); tests turn it off
#: to compare it with the general path.
FAST_REPOLL = True
#: Consumed timeout-FIFO entries kept before the arrays are compacted.
COMPACT = 65536


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
    event, instead of a timer per client; answered holds are skipped without
    a wake-up of their own.

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
        self.hold_no = array("q", bytes(8 * n))
        self.outstanding = bytearray(n)
        self.poll_sent = array("d", bytes(8 * n))  # when each client's poll was sent
        # The FIFO of (deadline, client, hold number), as three flat arrays
        # read from _dl_head on (~24 bytes an entry, not a tuple's ~150: at
        # 100,000 holds/s and a 30 s timeout it holds 3 million entries).
        self._dl_t = array("d")
        self._dl_c = array("q")
        self._dl_no = array("q")
        self._dl_head = 0
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
        # Lazy re-polls (the fast path without broadcasts): a re-poll whose
        # client has nothing pending when it arrives only starts a hold, which
        # no one looks at before the next callback of this model; so it gets
        # no event: every callback first catches up with the re-polls due by
        # then (_catch_up), and only a re-poll that will find an update (one
        # came for its client while it was in flight) gets an event at its
        # arrival.  With broadcasts every re-poll may find one: eager (one
        # event per arrival time, _repolls_arrive).
        self.lazy = self.fast and self.bc_cursor is None
        if self.lazy:
            self._due = array("d", bytes(8 * n))  # arrival of c's re-poll in flight (0: none)
            self._needy = bytearray(n)              # ... which will find an update pending
            self.repoll_events = 0                  # re-polls that got an event (needy)
            self._kick = False                      # a catch-up event is pending (_ensure_kick)
        self.feed.start(self._publish_lazy if self.lazy else self._publish_feed)
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
        if self.lazy:
            self._catch_up(self.env.now)
        self._poll_arrived(msg.src)

    def _poll_arrived(self, c: int) -> None:
        if self.pending[c] is not None or (self.bc_cursor is not None
                                           and self.bc_cursor[c] < len(self.bc_times)):
            self._respond(c, self._take(c))
            return
        self.held[c] = 1
        no = self.hold_no[c] = self.hold_no[c] + 1
        self._conn(+1)
        deadline = self.env.now + self.H
        self._dl_t.append(deadline)
        self._dl_c.append(c)
        self._dl_no.append(no)
        if not self._armed:
            self._armed = True
            call_at(self.env, deadline, self._expire)

    def _expire(self, _event) -> None:
        now = self.env.now
        if self.lazy:
            self._catch_up(now)
        dl_t, dl_c, dl_no = self._dl_t, self._dl_c, self._dl_no
        held, hold_no = self.held, self.hold_no
        i = self._dl_head
        while i < len(dl_t) and dl_t[i] <= now:
            c = dl_c[i]
            no = dl_no[i]
            i += 1
            if held[c] and hold_no[c] == no:
                held[c] = 0
                self._conn(-1)
                self._respond(c, None)
        # Answered holds can never time out: drop them from the head, so the
        # next wake-up is for a hold still open (not one per hold).  Exact:
        # every wake-up here is at >= timeout, so arming at a deadline from
        # now is exact arithmetic whichever entry armed it.
        end = len(dl_t)
        while i < end:
            c = dl_c[i]
            if held[c] and hold_no[c] == dl_no[i]:
                break
            i += 1
        if i > COMPACT and 2 * i > end:  # compact the consumed head
            del dl_t[:i], dl_c[:i], dl_no[:i]
            i = 0
        self._dl_head = i
        if i < len(dl_t):
            call_at(self.env, dl_t[i], self._expire)
        else:
            self._armed = False
            if self.lazy:
                self._ensure_kick(now)

    def _release(self, c: int) -> None:
        if self.held[c]:
            self.held[c] = 0
            self._conn(-1)
            self._respond(c, self._take(c))

    def _publish_feed(self, c: int, created: float, size: int) -> None:
        self.publish(c, created, size)

    def publish(self, c: int, created: float, size: int) -> int:
        if self.lazy:
            return self._publish_lazy(c, created, size)
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
        # _arrived(c, created, uid, t1, -1.0, size) for each update, written
        # out for the fast path (no records, no jobs; t1 < end).
        seen = self.seen
        start, end = sim.start, sim.end
        lat = self.lat
        counted = t1 >= start
        for k in range(0, len(items), 3):
            created = items[k]
            uid = items[k + 2]
            if uid >= 0:
                if seen[uid]:
                    if start <= created < end:
                        self.duplicates += 1
                    continue
                seen[uid] = 1
            if counted:
                self.resolved += 1
            if start <= created < end:
                self.delivered += 1
                lat.append(t1 - created)
        self._repoll(c, now, t1)

    def _repoll(self, c: int, now: float, t1: float) -> None:
        """The client re-polls at ``t1`` (``_after_response`` and
        ``_send_poll``: always online, so its poll stays outstanding)."""
        self.poll_sent[c] = t1
        t2 = self.up.post(self._poll_msg, t1)
        repolls = self._repolls
        repolls.append((t2, c))
        if self.lazy:
            self._due[c] = t2
            if self.pending[c] is not None:  # came while the response was being prepared
                self._needy[c] = 1
                self.repoll_events += 1
                call_later(self.env, _delay_to(now, t2), self._needy_arrives)
            elif not self._armed and not self._kick:
                self._ensure_kick(now)
        elif len(repolls) == 1:
            self._repoll_waker.arm(_delay_to(now, t2))

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
            self._repoll_waker.arm(_delay_to(now, repolls[0][0]))

    # ------------------------------------------------------- lazy re-polls --
    def _catch_up(self, now: float, strict: bool = False) -> None:
        """Let the re-polls due by ``now`` (before it, if ``strict``) arrive,
        in order, each at its own time."""
        repolls = self._repolls
        due, needy = self._due, self._needy
        while repolls and (repolls[0][0] < now if strict else repolls[0][0] <= now):
            t2, c = repolls.popleft()
            due[c] = 0.0
            if needy[c]:  # its own event is at t2: this is t2
                needy[c] = 0
                self._poll_arrived(c)
            else:
                self._hold_at(c, t2)
        if not self._armed and repolls and not self._kick:
            self._ensure_kick(now)

    def _ensure_kick(self, now: float) -> None:
        """Keep lazy holds from missing their timeout: while the timeout FIFO
        has no wake-up pending, the first re-poll in flight gets an event at
        its arrival (its hold then arms the FIFO at exactly the time the
        general path arms it).  While the FIFO is armed its next wake-up
        precedes every lazy hold's deadline (they start later), and that
        wake-up catches up first."""
        repolls = self._repolls
        if repolls and not self._kick:
            self._kick = True
            call_later(self.env, _delay_to(now, repolls[0][0]), self._kicked)

    def _kicked(self, _event) -> None:
        self._kick = False
        self._catch_up(self.env.now)

    def _hold_at(self, c: int, t: float) -> None:
        """``_poll_arrived`` for a re-poll that arrived at ``t`` (<= now) and
        found nothing pending: the hold starts at ``t``."""
        if self.pending[c] is not None:
            raise RuntimeError(f"long polling: a lazy re-poll of client {c} found updates")
        self.held[c] = 1
        no = self.hold_no[c] = self.hold_no[c] + 1
        self.conns += 1  # _conn(+1) at t
        if self.conns > self.conns_max and t >= self.sim.start:
            self.conns_max = self.conns
        deadline = t + self.H
        self._dl_t.append(deadline)
        self._dl_c.append(c)
        self._dl_no.append(no)
        if not self._armed:
            self._armed = True
            delay = deadline - t  # call_at(env, deadline) at t, armed from now
            call_later(self.env, _delay_to(self.env.now, t + (delay if delay > 0 else 0.0)),
                       self._expire)

    def _publish_lazy(self, c: int, created: float, size: int) -> int:
        now = self.env.now
        repolls = self._repolls
        if repolls and repolls[0][0] <= now:
            self._catch_up(now)
        uid = self._store(c, created, size)
        if self.held[c]:
            self._release(c)
        elif self._due[c] and not self._needy[c]:
            # Its re-poll is in flight: it will find this update on arrival.
            self._needy[c] = 1
            self.repoll_events += 1
            call_later(self.env, _delay_to(now, self._due[c]), self._needy_arrives)
        return uid

    def _needy_arrives(self, _event) -> None:
        self._catch_up(self.env.now)

    def _window_opens(self, event) -> None:
        if self.lazy:
            self._catch_up(self.env.now, strict=True)  # the window's event comes first
        super()._window_opens(event)

    def metrics(self) -> dict:
        if self.lazy:
            self._catch_up(self.env.now, strict=True)  # what arrived before the end
        return super().metrics()


def _delay_to(now: float, when: float) -> float:
    """The delay that schedules an event at exactly ``when`` from ``now``
    (``now + (when - now)`` may round to a neighbour of ``when``)."""
    delay = when - now
    if delay <= 0:
        return 0.0
    while now + delay < when:
        delay = math.nextafter(delay, math.inf)
    while now + delay > when:
        delay = math.nextafter(delay, -math.inf)
    return delay
