"""Long polling: the server holds each poll until an update or the timeout
(built on the polling base in :mod:`.polling`)."""

from __future__ import annotations

from array import array
from collections import deque


from commsim.engine.simulation import call_at
from commsim.network import Message
from commsim.patterns.notifications.base import SERVER, STREAM_START
from commsim.patterns.notifications.polling import _Polling


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
        self.poll_sent = array("d", bytes(8 * n))  # when each client's poll was sent
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
        now = self.env.now
        self.poll_sent[c] = now
        if self.handshakes:
            self._poll_when_open(c, now)
            return
        self.up.send(Message("request", c, SERVER, self.request_header, 0, 0, 0, now),
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
