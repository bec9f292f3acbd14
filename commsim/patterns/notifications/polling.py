"""Polling notification patterns: the shared poll/response machinery and short
polling (long polling, built on the same base, is in :mod:`.long_polling`)."""

from __future__ import annotations

import heapq
import math
from collections import deque
from functools import partial
from operator import add, sub
from array import array
from heapq import heappop, heappush

from commsim.engine.ahead import Unsettled
from commsim.engine.events import Waker
from commsim.network import Message
from commsim.patterns.notifications.base import SERVER, _Base


def runs_ahead(cfg: dict) -> bool:
    """Does a resolved short-polling run config take the run-ahead mode
    (:meth:`ShortPolling._run_ahead`)?  Its configuration side: strictly
    periodic polls on kept-alive connections without handshakes or idle
    closes, hops of constant latency without loss, bandwidth or segment
    counting, no topology, and nothing but polls touching the server (no
    jobs, broadcasts or offline periods).  (A trace or ``--records`` also
    keep the event-driven path.)"""
    from commsim.dists import make_distribution
    from commsim.nodes import cluster

    net, wl = cfg["network"], cfg["workload"]
    constant = make_distribution(net["latency"], "duration", "network.latency").is_constant
    return (cfg["pattern"] == "short_polling" and not cluster.active(cfg)
            and cfg["short_polling"]["jitter"] == 0 and net["keepalive"]
            and net.get("handshake", "none") == "none" and net.get("idle_timeout") is None
            and constant and not net.get("loss") and net.get("bandwidth") is None
            and not net.get("segment_overhead")
            and wl["job_rate"] == 0 and wl["broadcast_rate"] == 0 and wl["online_time"] is None)


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

    Run ahead (:meth:`_run_ahead`, where :func:`runs_ahead` holds: the
    default network and workload keys are such a case): one wake-up per
    millisecond handles that millisecond's polls with their whole round
    trip, because nothing between a poll and its response can change
    either.  The CPU computes each job's FIFO start and finish at once
    (:meth:`Cpu.admit_many`), bytes are counted per batch
    (:meth:`ByteCounter.transmit_many`).  Same results as the event path
    (tests/test_polling_ahead.py), about 1 event per 1,000 polls instead of
    4 per poll.  Worked out ahead of the clock, but never counted ahead of
    what can still happen: requests when sent; while no overload stop
    (``max_run_queue``) can come before a batch is over, the batch at once;
    otherwise its CPU jobs admitted once the clock reaches its first poll's
    arrival at the server, its polls' delivery and its responses (ledger,
    bytes, empty responses, RTT) counted once the clock has passed its last
    response's arrival, the updates they carry delivered in order of
    arrival once the clock has passed it, and what is left at the end
    against the run's final end.  So a run stopped by ``max_run_queue``
    counts nothing after its stop (the stop within about one batch of the
    event path's).
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
        sim.at_end(lambda: self.feed.drain(sim.end, self._store_at if self.ahead else self._store))
        phase = sim.streams.generator("short_polling/phase").uniform(0.0, T, n).tolist()
        self.ahead = self._can_run_ahead()
        self._ahead_in_flight = 0
        if self.ahead:
            self._arrivals: list = []  # (arrival, client, items) of responses with updates
            self._arriving: deque = deque()   # polls sent, their CPU jobs not yet admitted
            self._unsettled = Unsettled(self._count)  # admitted batches, responses not yet counted
            self._safe = -math.inf  # no overload stop can come before (_no_stop_before)
            sim.at_end(self._ahead_end)
            # Flat arrays in rotation order (the rotation walks them in
            # memory order; 8 bytes a client each instead of a list's 32-36):
            # ``pending`` is indexed by rotation position (client c at _pos[c]).
            order = array("l", sorted(range(n), key=phase.__getitem__))
            self._order = order
            self._phase = array("d", [phase[c] for c in order])
            del phase
            pos = array("l", bytes(8 * n))
            for j, c in enumerate(order):
                pos[c] = j
            self._pos = pos
            self._j = 0
            self._base = 0.0
            self._service_take = sim.block_sampler(sim.config["server"]["service_time"],
                                                   "server/service")
            self._tick = Waker(sim.env, self._run_ahead)
            self._tick.arm_at(self._phase[0])
            self._ends_at_the_window()  # a run continued past it fails
        elif self.jitter == 0:
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

    # ------------------------------------------------------------ run ahead --
    #: Polls handled per wake-up in run-ahead mode: those sent within this
    #: many seconds of the first (the count of wake-ups is the only thing it
    #: changes).
    AHEAD_BATCH = 0.001

    def _can_run_ahead(self) -> bool:
        """Run-ahead mode applies (see :meth:`_run_ahead`): nothing but the
        polls themselves touches the server, and every hop keeps order."""
        ok = (type(self) is ShortPolling and runs_ahead(self.sim.config)
              and self.sim.tracer is None and self.ops is None)
        if ok:  # what the config promises, as built
            assert not self.handshakes and self.connector.idle is None and not self.avail.enabled
            assert all(link._fifo and link.bandwidth is None for link in (self.up, self.down))
        return ok

    def _run_ahead(self, _event) -> None:
        """Every poll sent from now to ``AHEAD_BATCH`` later (and before the
        run ends), with its whole round trip, worked out at once and counted
        as the clock passes it.

        Exact for the configurations :meth:`_can_run_ahead` admits: each
        hop has a constant latency ``d`` and keeps order, the server's CPU
        is FIFO (:meth:`Cpu.admit_many` computes start and finish at arrival), and
        nothing but polls reads or writes the server's state (no jobs,
        broadcasts, offline periods, handshakes), so handling a poll sent at
        ``t`` as arriving at ``t + d``, answered at its CPU finish ``f`` and
        received at ``f + d`` gives the times, bytes, CPU and update
        bookkeeping the event-driven path gives.

        What is counted when, so that a run stopped early (``max_run_queue``:
        :meth:`Cpu.admit_many` raises ``Overloaded`` and the run's end
        becomes the stop) counts nothing that happens after its stop:

        1. At the wake-up at ``now``, the polls sent in ``[now, now +
           AHEAD_BATCH)``: requests (and their bytes) and those that reach
           the server at or after the end (in flight) are counted, and the
           updates each poll carries are taken (the feed drained to its
           arrival).
        2. While no stop can come yet (:meth:`_no_stop_before`: the run
           queue plus every poll that could be admitted by then stays below
           ``max_run_queue``; always without it), a batch is admitted and
           counted at once, as if the clock were at its end: the common
           case, nothing is held.
        3. Otherwise a batch's CPU jobs are admitted (:meth:`_admit`) at the
           first wake-up at or after its first poll's arrival at the server
           (at the last wake-up of the run, every batch left), so a stop
           comes within about one batch of the arrival that fills the run
           queue, as in the event-driven path; and its polls' delivery and
           its responses (:meth:`_count`: sent, delivered or in flight;
           response bytes, empty responses, ``poll_responses``, RTT) are
           counted once the clock has passed its last response's arrival,
           batches in order of admission.  At the end (:meth:`_ahead_end`,
           also after a stop, the end then the stop) every batch left is
           counted against the final end, and polls not yet admitted are
           delivered if they reach the server before it (their jobs, if the
           stop came while admitting them, are never answered).
        4. Updates carried by responses reach their clients (``_arrived``,
           :meth:`_receive`) in order of arrival: those arriving before both
           the next poll's round trip and any possible stop, or, while a
           stop could come, by the clock; the rest before the end at the
           end.

        What the run's end cuts off stays cut off: a poll arriving at or
        after the end is in flight, a response finishing at or after it is
        never sent, one arriving at or after it is in flight.  Sums of times
        (latency, RTT, CPU wait and sojourn, jobs present) are added per poll
        in the order polls are sent rather than as responses arrive, so they
        can differ from the event-driven path's in the last bits; counts are
        equal.
        """
        sim = self.sim
        now = self.env.now
        lo, hi = sim.start, sim.end
        self._unsettled.settle(now)  # 3. the clock has passed these
        until = now + self.AHEAD_BATCH
        if until > hi:
            until = hi
        order, phase, n, T = self._order, self._phase, self.n, self.T
        j, base = self._j, self._base
        d_up = self.up.constant_latency
        pending = self.pending  # by rotation position
        feed = self.feed
        feed_next = feed.next_time
        store = self._store_at
        # 1. The polls: sent at t, at the server at a = t + d (before the end).
        sent_at, at, empty_at, taken, where = [], [], [], [], []
        j0, base0 = j, base
        t = base + phase[j]
        sent = in_flight = requests = 0
        while True:
            if base == 0.0:  # the first round: each client's first poll opens its connection
                self.conn_open[order[j]] = 1
                self._conn(+1)
            sent += 1
            if t >= lo:
                requests += 1
            a = t + d_up
            if a < hi:
                if feed_next <= a:
                    feed.drain(a, store)
                    feed_next = feed.next_time
                items = pending[j]
                sent_at.append(t)
                at.append(a)
                if items is None:
                    empty_at.append(True)
                else:
                    pending[j] = None
                    empty_at.append(False)
                    taken.append(items)
                    where.append((len(at) - 1, order[j]))
            else:
                in_flight += 1
            j += 1
            if j == n:
                j = 0
                base += T
            t = base + phase[j]
            if t >= until:
                break
        self._j, self._base = j, base
        counter = sim.bytes
        counter.sent += sent
        self._ahead_in_flight += in_flight
        if requests:
            counter.transmit_many("request", requests, self.request_header)
        arriving = self._arriving
        if at:
            arriving.append((at, sent_at, empty_at, where, taken, j0, base0))
        # 2. The CPU jobs of the polls at the server by now (all at the last
        # wake-up, and all while no stop can come yet).
        t_next = base + phase[j]
        if arriving:
            if now >= self._safe:
                self._safe = self._no_stop_before()
            last = t_next >= hi or now < self._safe
            while arriving and (last or arriving[0][0][0] <= now):
                self._admit(*arriving[0])
                arriving.popleft()  # only once admitted: a stop leaves it to _ahead_end
        # 4. Every response not yet admitted reaches its client after now, and
        # every one of a poll still to be sent after its round trip: deliver
        # the updates arriving before both (and before any stop can come).
        if self._arrivals:
            horizon = t_next + d_up + self.down.constant_latency
            self._receive(horizon if not arriving and horizon < self._safe else now)
        if t_next < hi:
            self._tick.arm_at(t_next)

    def _admit(self, at: list, sent_at: list, empty_at: list, where: list, taken: list,
               j0: int, base0: float) -> None:
        """Run ahead: one batch of polls' CPU jobs, FIFO on the server's
        cores, service times in poll order (the stream's values in the
        event-driven path's order); their responses wait in
        ``_unsettled`` (those carrying updates also in ``_arrivals``).

        Counted at once if no stop can come before its last response
        arrives (and no batch before it waits); otherwise kept until counted
        (:meth:`_count`): the finish times, the empty flags, the updates
        taken, the batch's first rotation position (the send times are
        recomputed from it if needed) and, for a batch wholly inside the
        window as things stand, its counts and RTT sum already added up."""
        works = self._service_take(len(at))
        if self.costs.any:
            poll_cost = self.costs.poll
            empty_cost = poll_cost(None)
            for i, is_empty in enumerate(empty_at):
                if is_empty:
                    works[i] += empty_cost
            for (i, _c), items in zip(where, taken):
                works[i] += poll_cost(items)
        finish = self.cpu.admit_many(at, works, empty_at, "poll")
        sim = self.sim
        hi = sim.end
        d_down = self.down.constant_latency
        if where:
            arrivals = self._arrivals
            for (i, c), items in zip(where, taken):
                r = finish[i] + d_down
                if r < hi:  # (so f < hi); a stop later cuts at its end (_ahead_end)
                    heappush(arrivals, (r, c, items))
        last = max(finish) + d_down
        if sent_at[0] >= sim.start and last < hi:
            # Every poll and response inside the window unless the run stops
            # before ``last``: counted in bulk.
            payload = 0
            for items in taken:
                payload += sum(items[1::3])
            empty = empty_at.count(True)
            rtt_sum = sum(map(sub, map(partial(add, d_down), finish), sent_at), 0.0)
            if last < self._safe and not self._unsettled:
                # No stop can come before it is all over: counted now (in order).
                k = len(finish)
                counter = sim.bytes
                counter.sent += k
                counter.delivered += k + k
                counter.transmit_many("response", k, self.response_header, payload)
                self.empty += empty
                self.poll_responses += k
                self.rtt_sum += rtt_sum
                self.rtt_n += k
                return
            bulk = (empty, payload, rtt_sum)
        else:
            bulk = None
        batch = (last, j0, base0, finish, empty_at, where, taken, bulk)
        if last < self._safe and not self._unsettled:
            self._count(batch, hi)  # no stop can come before it is all over (in order)
        else:
            self._unsettled.add(last, last, batch)

    def _no_stop_before(self) -> float:
        """Run ahead: a time before which no overload stop can come.  A stop
        comes when an admission (:meth:`_admit`) brings the CPU's run queue
        to ``max_run_queue``; each poll admitted adds at most one job, and
        the polls admitted at a clock before ``x`` are those sent but not
        yet admitted and those sent before ``x + AHEAD_BATCH``.  So while
        the queue now (``len(cpu._waiting)``, the jobs held by
        :meth:`Cpu.admit_many`) plus those stay below the limit, nothing
        can stop the run: batches are admitted as sent and counted at once
        (the common case: no batch is held)."""
        limit = self.sim.max_run_queue
        if limit == math.inf:
            return math.inf
        cpu = self.cpu
        queued = len(cpu._waiting) if cpu._free_at is not None else 0
        budget = limit - 1 - queued - sum(len(b[0]) for b in self._arriving)
        if budget < 0:
            return -math.inf
        rounds, pos = divmod(self._j + int(budget), self.n)
        # The budget-th poll still to be sent (a margin for rounding).
        return self._base + rounds * self.T + self._phase[pos] - 2 * self.AHEAD_BATCH

    def _count(self, batch: tuple, hi: float | None = None) -> None:
        """Run ahead: one batch's polls delivered and its responses, counted
        against the end of the run ``hi`` (default ``sim.end``; sent if they
        finish before it, delivered if they arrive before it)."""
        if hi is None:
            hi = self.sim.end
        last, j, base, finish, empty_at, where, taken, bulk = batch
        k = len(finish)
        if bulk is not None and last < hi:
            # The common case, in bulk: every poll and response inside the window.
            sent = responses = rtt_n = k
            delivered = k + k
            in_flight = 0
            empty, payload, rtt_sum = bulk
        else:
            lo = self.sim.start
            d_up, d_down = self.up.constant_latency, self.down.constant_latency
            phase, n, T = self._phase, self.n, self.T
            sent = responses = empty = rtt_n = payload = delivered = in_flight = 0
            rtt_sum = 0.0
            for f, is_empty in zip(finish, empty_at):
                t = base + phase[j]  # the send time, as the rotation computed it
                j += 1
                if j == n:
                    j = 0
                    base += T
                if t + d_up < hi:
                    delivered += 1  # the poll
                else:
                    in_flight += 1
                if f < hi:
                    sent += 1
                    r = f + d_down
                    if f >= lo:
                        responses += 1
                        if is_empty:
                            empty += 1
                    if r < hi:
                        delivered += 1
                        if t >= lo:
                            rtt_sum += r - t
                            rtt_n += 1
                    else:
                        in_flight += 1
            for (i, _c), items in zip(where, taken):
                f = finish[i]
                if lo <= f < hi:
                    payload += sum(items[1::3])
        counter = self.sim.bytes
        counter.sent += sent
        counter.delivered += delivered
        self._ahead_in_flight += in_flight
        if responses:
            counter.transmit_many("response", responses, self.response_header, payload)
        self.empty += empty
        self.poll_responses += responses
        self.rtt_sum += rtt_sum
        self.rtt_n += rtt_n

    def _ahead_end(self) -> None:
        """Run ahead, at the end of the run or of its overload stop: the
        batches left counted against the end, polls not yet admitted
        delivered if they reach the server before it (in flight otherwise),
        the updates arriving before it delivered.  After a stop, the updates
        drained ahead of the clock (to each poll's arrival) but created at
        or after the stop are not the run's: no longer counted created."""
        sim = self.sim
        now = self.env.now
        hi = sim.end if sim.end < now else now  # (a stop during the warm-up keeps sim.end)
        arriving, unsettled = self._arriving, self._unsettled
        if sim.stopped:
            cut = sim.end
            top = sim.config["warmup"] + sim.config["duration"]  # counted up to it (_new_uid)
            lists = [p for p in self.pending if p is not None]
            for batch in arriving:
                lists += batch[4]
            for (batch,) in unsettled.data():
                lists += batch[6]
            late = 0
            for items in lists:
                for k in range(0, len(items), 3):
                    if cut <= items[k] < top and items[k] >= sim.start:
                        late += 1
            self.created -= late
        unsettled.settle_all(hi)
        counter = sim.bytes
        while arriving:
            at = arriving.popleft()[0]
            delivered = sum(1 for a in at if a < hi)
            counter.delivered += delivered
            self._ahead_in_flight += len(at) - delivered
        self._receive(math.nextafter(hi, -math.inf))

    def _store_at(self, c: int, created: float, size: int) -> int:
        """:meth:`_store`, run ahead: the pending list at ``c``'s rotation position."""
        return self._store(self._pos[c], created, size)

    def _receive(self, until: float) -> None:
        """Run ahead: the responses with updates that reach their clients by
        ``until``, in order of arrival.  Called with ``until`` no later than
        the clock (and, at the end, just below the end): every response
        arriving by then has been admitted (a batch is admitted by the first
        wake-up at or after its first poll's arrival at the server, and its
        responses arrive later), so the order is the global one."""
        arrivals = self._arrivals
        arrived = self._arrived
        while arrivals and arrivals[0][0] <= until:
            r, c, items = heappop(arrivals)
            for k in range(0, len(items), 3):
                arrived(c, items[k], items[k + 2], r, -1.0, items[k + 1])

    def metrics(self) -> dict:
        out = super().metrics()
        if self._ahead_in_flight:
            out["in_flight"] += self._ahead_in_flight
        return out

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
