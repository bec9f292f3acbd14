"""Long polling: the server holds each poll until an update or the timeout
(built on the polling base in :mod:`.polling`)."""

from __future__ import annotations

import math
from array import array
from collections import deque
from heapq import heappop, heappush

from commsim.engine.events import Waker
from commsim.engine.simulation import call_at, call_later
from commsim.network import Message
from commsim.engine.ahead import ArrivalOrder, Unsettled
from commsim.patterns.notifications.base import SERVER, STREAM_START
from commsim.patterns.notifications.polling import _Polling

#: The long-polling fast path (see ``LongPolling.__init__``); tests turn it off
#: to compare it with the general path.
FAST_REPOLL = True
#: The run-ahead mode (see ``LongPolling._run_ahead``); tests turn it off to
#: compare it with the event-driven paths.
RUN_AHEAD = True


def polls_ahead(cfg: dict) -> bool:
    """Does a resolved long-polling run config take the run-ahead mode
    (:meth:`LongPolling._run_ahead`)?  Its configuration side: one server
    (no topology), hops of a constant latency above zero (a round trip
    bounds each batch) without loss, bandwidth or segment counting, no
    handshakes, clients always online, and nothing but polls and updates
    reaching the server (no jobs or broadcasts).  (A trace or ``--records``
    also keep the event-driven path.)"""
    from commsim.dists import make_distribution
    from commsim.nodes import cluster

    if cfg["pattern"] != "long_polling" or cluster.active(cfg):
        return False
    net, wl = cfg["network"], cfg["workload"]
    latency = make_distribution(net["latency"], "duration", "network.latency")
    return (latency.is_constant and latency.mean > 0 and not net.get("loss")
            and net.get("bandwidth") is None and not net.get("segment_overhead")
            and net.get("handshake", "none") == "none"
            and wl["job_rate"] == 0 and wl["broadcast_rate"] == 0 and wl["online_time"] is None)
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
        self.ahead = self.fast and self._can_run_ahead()
        if self.ahead:
            self.lazy = False
            self._start_ahead()
            return
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
        if self.ahead:
            return  # the run-ahead loop notes the connections held when it passes the start
        if self.lazy:
            self._catch_up(self.env.now, strict=True)  # the window's event comes first
        super()._window_opens(event)

    def metrics(self) -> dict:
        if self.lazy:
            self._catch_up(self.env.now, strict=True)  # what arrived before the end
        out = super().metrics()
        if self.ahead and self._ahead_in_flight:
            out["in_flight"] += self._ahead_in_flight
        return out

    # ------------------------------------------------------------ run ahead --
    #: Server events handled per wake-up in run-ahead mode, in simulated
    #: seconds, at most (a round trip bounds it too); it changes the number
    #: of wake-ups only.
    AHEAD_BATCH = 0.005

    def _can_run_ahead(self) -> bool:
        """Run-ahead mode applies (see :meth:`_run_ahead`); called where the
        fast path applies (the plain class, no records, handshakes or jobs,
        always online, FIFO links without tracer)."""
        return RUN_AHEAD and polls_ahead(self.sim.config) and self.bc_cursor is None

    def _start_ahead(self) -> None:
        # Responses are counted once their round trip is past (or at the
        # end), so that a run stopped early counts none after its stop:
        # batches of (finish, poll sent, items), from their first arrival at a
        # client to their last re-poll's arrival at the server.
        self._unsettled = Unsettled(self._count_responses)
        self._repoll_heap: list = []                  # (arrival at the server, client)
        self._samples = ArrivalOrder(self.lat)
        self._window_seen = False
        self._begin_run_ahead()                       # the first polls are the first requests

    def _next_time(self) -> float:
        """The next thing to happen at the server: an update, a poll's
        arrival or a hold's timeout (its deadline, if still held)."""
        t = self.feed.next_time
        if self._first_i < self.n:
            t = min(t, self._first_time[self._first_i] + self._d_up)
        if self._repoll_heap:
            t = min(t, self._repoll_heap[0][0])
        dl_t, dl_c, dl_no = self._dl_t, self._dl_c, self._dl_no
        held, hold_no = self.held, self.hold_no
        i = self._dl_head
        while i < len(dl_t) and not (held[dl_c[i]] and hold_no[dl_c[i]] == dl_no[i]):
            i += 1  # answered holds never time out
        self._dl_head = i
        if i < len(dl_t):
            t = min(t, dl_t[i])
        return t

    def _run_ahead(self, _event) -> None:
        """Everything that happens at the server from now to a batch later
        (``AHEAD_BATCH``, at most one round trip, and before the run ends),
        with the responses it causes, at once.

        Exact for the configurations :meth:`_can_run_ahead` admits: each
        hop has a constant latency ``d > 0`` and keeps order, the server's
        CPU is FIFO (:meth:`Cpu.admit_many` computes start and finish at
        arrival), every client is always online and nothing but polls and
        updates reach the server.  The server's events (updates, poll
        arrivals, timeouts) are taken in time order, as the event-driven
        path takes them: a poll finding updates pending is answered at
        once, else held (a connection) until an update for its client or
        its timeout; an answer is a CPU job at that moment.  A response
        leaving at its job's finish ``f`` reaches the client at ``f + d``,
        whose re-poll reaches the server at ``f + 2d``: after the batch (it
        is at most a round trip long), so every server event of a batch is
        known when it starts.  Responses are counted once the clock has
        passed their re-poll's arrival (a run stopped early by
        ``max_run_queue`` counts none that leave after its stop), and
        latency samples are kept in order of arrival.  What the run's end
        cuts off stays cut off.  Sums of times (latency, round trip, the
        CPU's wait, sojourn and jobs present) are added in another order, so
        they can differ in the last bits; counts are equal.
        """
        sim = self.sim
        lo, hi = sim.start, sim.end
        now = self.env.now
        self._unsettled.settle(now)
        until = now + min(self.AHEAD_BATCH, self._d_up + self._d_down)
        if until > hi:
            until = hi
        jobs = ([], [], [], [])  # arrival, client, items (None: empty), its poll's send time
        cut = False
        if not self._window_seen and until > lo:
            if now < lo:
                cut = self._serve(now, lo, jobs)
            if not cut:
                self._window_seen = True
                self.conns_max = self.conns
        if not cut:
            cut = self._serve(now, until, jobs)
        at, who, items, sent = jobs
        if at:
            works = self._take_service(len(at))
            if self.costs.any:
                poll_cost = self.costs.poll
                works = [w + poll_cost(x) for w, x in zip(works, items)]
            finish = self.cpu.admit_many(at, works, [x is None for x in items], "poll")
            d_down, d_up = self._d_down, self._d_up
            heap = self._repoll_heap
            poll_sent = self.poll_sent
            for f, c in zip(finish, who):
                t1 = f + d_down
                if t1 < hi:  # the client gets it and re-polls at once
                    poll_sent[c] = t1
                    heappush(heap, (t1 + d_up, c))
            self._unsettled.add(min(finish) + d_down, max(finish) + d_down + d_up, finish,
                                sent, items)
        # The next event is at ``nxt`` or later, so is every job not yet
        # admitted, answered after ``nxt + d``.
        nxt = self._next_time()
        self._samples.emit(min(nxt + self._d_down, self._unsettled.first()))
        # Next: the next batch, or if this one was cut short (a stop could
        # come) the next event.
        at = nxt if cut or nxt > until else until
        if at < hi:
            self._tick.arm_at(at)

    def _serve(self, now: float, until: float, jobs: tuple) -> bool:
        """Run ahead: the server's events before ``until``, in time order;
        the answers they start are appended to ``jobs``.  The batch is cut
        short before a job after ``now`` that could fill the run queue
        (``max_run_queue``): the next wake-up is then at its time, so a stop
        comes at that instant, as in the event-driven path.  Returns whether
        it was cut."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        room = sim.max_run_queue - self.cpu.queued - 1  # jobs that cannot fill the queue
        cut = False
        times, who, sizes = self.feed.take_before(until)
        nf = len(times)
        fi = 0
        p_time, p_order, n = self._first_time, self._first_order, self.n
        pi = self._first_i
        d_up = self._d_up
        heap = self._repoll_heap
        dl_t, dl_c, dl_no = self._dl_t, self._dl_c, self._dl_no
        di = self._dl_head
        held, hold_no, pending, poll_sent = self.held, self.hold_no, self.pending, self.poll_sent
        H = self.H
        at, jc, ji, js = jobs
        inf = math.inf
        conns, conns_max = self.conns, self.conns_max
        sent = delivered = requests = created = 0
        while True:
            tf = times[fi] if fi < nf else inf
            tp = p_time[pi] + d_up if pi < n else inf
            tr = heap[0][0] if heap else inf
            td = dl_t[di] if di < len(dl_t) else inf
            if tf <= tp and tf <= tr and tf <= td:
                if tf >= until:
                    break
                # An update for client c.
                c = who[fi]
                if held[c] and len(at) >= room and tf > now:
                    cut = True
                    break
                fi += 1
                if lo <= tf < hi:
                    created += 1
                p = pending[c]
                if p is None:
                    pending[c] = [tf, sizes[fi - 1], -1]
                else:
                    p += (tf, sizes[fi - 1], -1)
                if held[c]:  # its held poll is answered
                    held[c] = 0
                    conns -= 1
                    at.append(tf)
                    jc.append(c)
                    ji.append(pending[c])
                    js.append(poll_sent[c])
                    pending[c] = None
                continue
            if td <= tp and td <= tr:
                if td >= until:
                    break
                c = dl_c[di]
                live = held[c] and hold_no[c] == dl_no[di]
                if live and len(at) >= room and td > now:
                    cut = True
                    break
                if live:  # the hold times out: empty answer
                    held[c] = 0
                    conns -= 1
                    at.append(td)
                    jc.append(c)
                    ji.append(None)
                    js.append(poll_sent[c])
                di += 1
                continue
            if tp <= tr:
                if tp >= until:
                    break
                # A client's first poll (sent at p_time) reaches the server.
                c = p_order[pi]
                if pending[c] is not None and len(at) >= room and tp > now:
                    cut = True
                    break
                t = p_time[pi]
                pi += 1
                sent += 1
                delivered += 1
                if t >= lo:
                    requests += 1
                poll_sent[c] = t
                a = tp
            else:
                if tr >= until:
                    break
                # A re-poll (sent when the response arrived: poll_sent) reaches the server.
                if pending[heap[0][1]] is not None and len(at) >= room and tr > now:
                    cut = True
                    break
                a, c = heappop(heap)
            # A poll arrives at ``a``: answered at once, or held.
            if pending[c] is not None:
                at.append(a)
                jc.append(c)
                ji.append(pending[c])
                js.append(poll_sent[c])
                pending[c] = None
            else:
                held[c] = 1
                no = hold_no[c] = hold_no[c] + 1
                conns += 1
                if conns > conns_max and a >= lo:
                    conns_max = conns
                dl_t.append(a + H)
                dl_c.append(c)
                dl_no.append(no)
        self.conns, self.conns_max = conns, conns_max
        self._first_i = pi
        if di > COMPACT and 2 * di > len(dl_t):  # compact the consumed head
            del dl_t[:di], dl_c[:di], dl_no[:di]
            di = 0
        self._dl_head = di
        if fi < nf:  # cut short: the updates not handled are the feed's next again
            self.feed.put_back(times[fi:], who[fi:], sizes[fi:])
        self.next_uid += fi
        self.created += created
        counter = sim.bytes
        counter.sent += sent
        counter.delivered += delivered
        if requests:
            counter.transmit_many("request", requests, self.request_header)
        return cut

    def _count_responses(self, finish: list, sent: list, items: list) -> None:
        """Run ahead: the responses of one batch, counted against the end of
        the run as the fast path counts them: sent if they leave before it,
        then the round trip and the updates (latency samples) if they
        arrive before it, then the client's re-poll (sent on arrival, in
        flight if it arrives at or after the end)."""
        sim = self.sim
        lo, hi = sim.start, sim.end
        d_down, d_up = self._d_down, self._d_up
        msgs = delivered = in_flight = responses = empty = payload = requests = 0
        rtt_sum = 0.0
        rtt_n = resolved = got = 0
        arrive: list = []
        lat: list = []
        for f, s, x in zip(finish, sent, items):
            if f >= hi:
                continue  # never sent: its updates stay pending, its poll outstanding
            msgs += 1
            if f >= lo:
                responses += 1
                if x is None:
                    empty += 1
                else:
                    payload += sum(x[1::3])
            t1 = f + d_down
            if t1 >= hi:
                in_flight += 1
                continue
            delivered += 1
            if lo <= s < hi:
                rtt_sum += t1 - s
                rtt_n += 1
            if x is not None:
                counted = t1 >= lo
                for k in range(0, len(x), 3):
                    created = x[k]
                    if counted:
                        resolved += 1
                    if lo <= created < hi:
                        got += 1
                        arrive.append(t1)
                        lat.append(t1 - created)
            msgs += 1  # the re-poll, sent at t1
            if t1 >= lo:
                requests += 1
            if t1 + d_up < hi:
                delivered += 1
            else:
                in_flight += 1
        counter = sim.bytes
        counter.sent += msgs
        counter.delivered += delivered
        self._ahead_in_flight += in_flight
        if responses:
            counter.transmit_many("response", responses, self.response_header, payload)
        if requests:
            counter.transmit_many("request", requests, self.request_header)
        self.poll_responses += responses
        self.empty += empty
        self.rtt_sum += rtt_sum
        self.rtt_n += rtt_n
        self.resolved += resolved
        self.delivered += got
        if arrive:
            self._samples.add(arrive, lat)

    def _ahead_end(self) -> None:
        """At the end of the run: first polls sent but not yet at the server
        are in flight; every response left is counted; every latency is in."""
        self._first_requests_in_flight()
        self._unsettled.settle_all()
        self._samples.emit(math.inf)
        if not self._window_seen:  # the window opened after the last server event
            self.conns_max = self.conns


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
