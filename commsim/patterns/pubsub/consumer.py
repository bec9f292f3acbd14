"""A subscriber's consumer: one core, a buffer, push acks or pull fetches and
commits, direct-mode back-pressure; crashes via :class:`~commsim.nodes.faults.Crashable`.

Its connection to the broker (``network.handshake``; ``model.sub_conns``, the
one connection module): opened at start, after its own restart and after a
broker restart.  push: the broker delivers only over an open connection;
the client's last flight goes on its own (no request follows), and an idle
close (``network.idle_timeout``, no delivery or ack for that long) is
followed by an immediate reconnect, as client libraries do.  pull: the
first fetch (or commit) carries the last flight; without keep-alive every
fetch and every commit opens its own connection.
"""

from __future__ import annotations

from collections import deque

from commsim.engine import call_later
from commsim.network import Message
from commsim.nodes import Cpu
from commsim.nodes.broker import Fetch
from commsim.nodes.faults import Crashable


class Consumer(Crashable):
    """A subscriber's consumer; crashes and restarts are
    :class:`~commsim.nodes.faults.Crashable` (``up`` is "online")."""

    __slots__ = ("name", "model", "idx", "sub", "cpu", "buffer", "current", "busy",
                 "next_tag", "unacked", "parts", "position", "done_pos", "committed_sent",
                 "fetch_id", "fetch", "pending", "slow_until", "slow_from", "connecting",
                 "extra", "commit_waits")

    def __init__(self, model, idx: int, sub: Subscription):
        self.name = f"consumer {idx}"
        self.model = model
        self.idx = idx
        self.sub = sub
        self.cpu = Cpu(model.sim, f"consumer{idx}", 1)
        self.buffer: deque = deque()
        self.current = None
        self.busy = False
        self.init_faults(model.consumer_faults, arm=False)
        self.next_tag = 0
        self.unacked: dict = {}
        self.parts: list = []
        self.position: list[int] = []
        self.done_pos: list[int] = []
        self.committed_sent: list[int] = []
        self.fetch_id = 0
        self.fetch = None
        self.pending: deque = deque()  # direct: copies waiting for buffer space (unacked)
        self.slow_from = None
        self.slow_until = None
        self.connecting = False
        self.extra = 0
        self.commit_waits = False  # keep-alive: a commit waits for the connection

    def __str__(self) -> str:
        return self.name

    # ---------------------------------------------------------- processing --
    def _next(self) -> None:
        if self.busy or not self.buffer or not self.up:
            return
        item = self.buffer.popleft()
        self.busy = True
        self.current = item
        m = self.model
        work = m.processing()
        if self.slow_from is not None:
            now = m.env.now
            if now >= self.slow_from and (self.slow_until is None or now < self.slow_until):
                work *= m.slow_factor
        self.cpu.submit(work, "process", self._done, (self.epoch, item))

    def _done(self, token, _wait) -> None:
        epoch, item = token
        if epoch != self.epoch:
            return  # crashed (or lost the broker) while processing: the work is wasted
        self.busy = False
        self.current = None
        m = self.model
        mode = m.mode
        if mode == "push":
            tag, msg = item
            m.processed_copy(self, msg)
            m.control_link.send(Message("ack", self, "broker", header=m.header, created=m.env.now,
                                        data=(self, epoch, tag)), m.broker.receive_ack)
        elif mode == "pull":
            m.processed_copy(self, item)
            i = self.parts.index(m.broker.partitions[item.topic][item.partition]) \
                if len(self.parts) > 1 else 0
            self.done_pos[i] = item.offset + 1
            if not self.buffer and m.commit_per_batch:
                self.commit()
        else:
            m.processed_copy(self, item)
            self.sub.queue.add(-1)
            while self.pending and len(self.buffer) + self.busy < m.direct_buffer:
                self._accept(self.pending.popleft())
        if self.buffer:
            self._next()
        elif mode == "pull":
            self.send_fetch()

    # ---------------------------------------------------------------- push --
    def on_delivery(self, wire) -> None:
        c, epoch, tag, msg = wire.data
        if epoch != self.epoch or not self.up:
            return  # sent before a crash; the broker requeued it
        self.buffer.append((tag, msg))
        self._next()

    # ---------------------------------------------------------------- pull --
    def send_fetch(self) -> None:
        m = self.model
        if not self.up or not self.parts or not m.broker.up or self.fetch is not None:
            return
        conns = m.sub_conns
        if conns is not None and conns.keepalive and not conns.use(self):
            self.connect()
            return
        self.fetch_id += 1
        f = Fetch(self, self.fetch_id, m.env.now)
        self.fetch = f
        if conns is not None and not conns.keepalive:
            conns.ensure(self, lambda extra: self._fetch_on_new(f, extra))
            return
        m.control_link.send(Message("fetch", self, "broker", header=m.header, handshake=self.extra,
                                    created=m.env.now, data=f), m.broker.receive_fetch)
        self.extra = 0

    def _fetch_on_new(self, f, extra: int) -> None:
        m = self.model
        if f.fid != self.fetch_id or not self.up:
            m.sub_conns.done(self)  # crashed meanwhile: the connection is closed unused
            return
        m.control_link.send(Message("fetch", self, "broker", header=m.header, handshake=extra,
                                    created=m.env.now, data=f), m.broker.receive_fetch)

    def on_fetch_response(self, wire) -> None:
        f, records, positions, hold, _nbytes = wire.data
        m = self.model
        if m.sub_conns is not None:
            m.sub_conns.done(self)
        if f.fid != self.fetch_id or not self.up:
            return
        self.fetch = None
        self.position = positions
        now = m.env.now
        if f.sent >= m.sim.start:
            m.fetch_count += 1
            m.fetch_latency_sum += now - f.sent
            m.fetch_hold_sum += hold
            if not records:
                m.empty_fetches += 1
        if records:
            self.buffer.extend(records)
            self._next()
        else:
            self.send_fetch()

    def commit(self) -> None:
        offsets = [(part.index, pos) for part, pos, sent in
                   zip(self.parts, self.done_pos, self.committed_sent) if pos > sent]
        if not offsets:
            return
        m = self.model
        conns = m.sub_conns
        if conns is not None and conns.keepalive and self not in conns.open:
            self.commit_waits = True  # sent once the connection is open
            self.connect()
            return
        for i, pos in enumerate(self.done_pos):
            if pos > self.committed_sent[i]:
                self.committed_sent[i] = pos
        if conns is not None and not conns.keepalive:
            conns.ensure(self, lambda extra: self._send_commit(offsets, extra))
            return
        self._send_commit(offsets, self.extra)
        self.extra = 0
        if conns is not None:
            conns.touch(self)

    def _send_commit(self, offsets, extra: int) -> None:
        m = self.model
        m.control_link.send(Message("commit", self, "broker", header=m.header, handshake=extra,
                                    created=m.env.now, data=(self.sub, offsets)),
                            m.broker.receive_commit)
        conns = m.sub_conns
        if conns is not None and not conns.keepalive:
            conns.done(self)  # no response: its own connection closes once it is sent

    def _periodic_commit(self, _event) -> None:
        if self.up:
            self.commit()
        call_later(self.model.env, self.model.commit_interval, self._periodic_commit)

    def reconnect(self) -> None:
        """The broker is back: pull fetches again from the current position;
        push (with modelled connections) opens its connection again."""
        if self.model.mode == "push":
            self.connect()
            return
        self.fetch = None
        self.send_fetch()

    # ---------------------------------------------------------- connection --
    def connect(self) -> None:
        """Open the kept-alive connection to the broker (if it is not open or opening)."""
        m = self.model
        conns = m.sub_conns
        if conns is None or not self.up or not m.broker.up or self.connecting \
                or self in conns.open:
            return
        self.connecting = True
        conns.ensure(self, self._opened)

    def _opened(self, extra: int) -> None:
        m = self.model
        self.connecting = False
        m.sub_conns.done(self)  # the set-up itself; fetches and deliveries are requests
        if not self.up:
            m.sub_conns.close(self)  # crashed while it opened
            return
        if m.mode == "push":
            if extra:  # no request follows: the last flight goes on its own
                m.control_link.send(Message("handshake", self, "broker", handshake=extra,
                                            created=m.env.now, label="handshake last"), _ignore)
            m.broker.dispatch(self.sub)
            return
        self.extra = extra
        if self.commit_waits:
            self.commit_waits = False
            self.commit()
        self.send_fetch()

    def idle_closed(self) -> None:
        """The broker closed the idle connection: push reconnects at once
        (it waits for deliveries); pull reconnects with its next request."""
        if self.model.mode == "push":
            self.connect()

    # -------------------------------------------------------------- direct --
    def on_direct(self, wire) -> None:
        msg = wire.data
        m = self.model
        if not self.up:
            m.missed += 1
            if m.ops is not None:
                m.lost_row(msg, self.idx)
            m.copy_done(msg)
            return
        self.sub.queue.add(1)
        if len(self.buffer) + self.busy < m.direct_buffer:
            self._accept(msg)
        else:
            self.pending.append(msg)

    def _accept(self, msg) -> None:
        m = self.model
        self.buffer.append(msg)
        m.direct_ack_link.send(Message("ack", self, msg.publisher, header=m.header,
                                       created=m.env.now, data=msg), m.on_direct_ack)
        self._next()

    # -------------------------------------------------------------- faults --
    def connection_lost(self) -> None:
        """The broker went down."""
        m = self.model
        self.connecting = False
        self.extra = 0
        self.commit_waits = False
        if m.mode == "push":
            self.invalidate()
            self.buffer.clear()
            self.busy = False
            self.current = None
        else:
            self.fetch_id += 1  # an outstanding fetch and its response are void
            self.fetch = None

    def on_crash(self) -> None:
        m = self.model
        if m.sub_conns is not None:
            m.sub_conns.close(self)
            self.connecting = False
            self.extra = 0
            self.commit_waits = False
        self.fetch_id += 1
        self.fetch = None
        dropped = list(self.buffer)
        if self.current is not None:
            dropped.append(self.current)
        self.buffer.clear()
        self.busy = False
        self.current = None
        sub = self.sub
        if m.mode == "push":
            m.broker.consumer_lost(self)
        elif m.mode == "pull":
            # Replay starts from the committed offsets: a dropped message below
            # them (possible only after a log loss) is never seen again.
            for msg in dropped:
                if msg.offset < sub.committed[msg.partition] and msg.mid not in sub.seen:
                    m.missed += 1
                    if m.ops is not None:
                        m.lost_row(msg, self.idx)
        else:
            m.missed += len(dropped) + len(self.pending)
            if m.ops is not None:
                for msg in dropped + list(self.pending):
                    m.lost_row(msg, self.idx)
            sub.queue.add(-(len(dropped) + len(self.pending)))
            for msg in self.pending:
                m.copy_done(msg)
            self.pending.clear()

    def on_restart(self) -> None:
        m = self.model
        if m.mode == "push":
            self.connect()
            m.broker.dispatch(self.sub)
        elif m.mode == "pull":
            self.position = [self.sub.committed[p.index] for p in self.parts]
            self.done_pos = list(self.position)
            self.committed_sent = list(self.position)
            self.send_fetch()


def _ignore(_wire) -> None:
    """Delivery of a message nobody acts on (a push consumer's last handshake flight)."""
