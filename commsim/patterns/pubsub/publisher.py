"""A publisher: a message stream, an outbox and a window of unconfirmed publishes.

Its connection to the broker (``network.handshake``; ``model.pub_conns``, the
one connection module): with keep-alive one connection, opened before the
first publish and again after the broker (or an idle close) ended it; the
outbox waits meanwhile and the first publish carries the client's last
flight.  Without keep-alive every publish opens its own connection, closed
by its confirm; a publish whose handshake a broker restart cut off goes back
to the outbox.
"""

from __future__ import annotations

from collections import deque

from commsim.engine import call_later
from commsim.engine.recorder import OK, PUBLISH, UNFINISHED
from commsim.network import Message
from commsim.nodes.broker import Msg

NAN = float("nan")


class Publisher:
    """Publisher ``idx`` of one topic (its ``name`` shows in traces)."""

    __slots__ = ("name", "model", "idx", "topic", "outbox", "unconfirmed", "window", "blocked_since",
                 "blocked_s", "pumping", "_gap", "_size", "_stop", "connecting", "extra", "opening")

    def __init__(self, model, idx: int, topic: int, gap, size, stop: float | None):
        self.name = f"publisher {idx}"
        self.model = model
        self.idx = idx
        self.topic = topic
        self.outbox: deque = deque()
        self.unconfirmed = 0
        self.window = model.cfg["publish_window"]
        self.blocked_since = None
        self.blocked_s = 0.0
        self.pumping = False
        self._gap = gap
        self._size = size
        self._stop = stop
        self.connecting = False  # keep-alive: a handshake is under way
        self.extra = 0           # the client's last handshake flight, sent with the next publish
        self.opening: dict = {}  # keepalive false: publishes waiting for their own connection
        call_later(model.env, gap(), self._tick)

    def __str__(self) -> str:
        return self.name

    #: Makes a new message (``RecordedPublisher`` also records its publish).
    _new = Msg

    def _tick(self, _event) -> None:
        m = self.model
        now = m.env.now
        if self._stop is not None and now >= self._stop:
            return
        m.next_mid += 1
        self.outbox.append(self._new(m.next_mid, self.topic, int(self._size()), now, self))
        self.pump()
        call_later(m.env, self._gap(), self._tick)

    def pump(self) -> None:
        m = self.model
        outbox = self.outbox
        if m.mode == "direct":
            # send_direct may confirm at once (every subscriber offline):
            # the loop carries on instead of recursing.
            self.pumping = True
            while outbox and self.unconfirmed < self.window:
                self.unconfirmed += 1
                m.send_direct(outbox.popleft())
            self.pumping = False
        elif m.pub_conns is not None:
            if m.broker.up:
                self._pump_connected(m.pub_conns)
        elif m.broker.up:
            send = m.publish_link.send
            receive = m.broker.receive_publish
            header = m.header
            now = m.env.now
            while outbox and self.unconfirmed < self.window:
                msg = outbox.popleft()
                self.unconfirmed += 1
                send(Message("publish", self, "broker", header=header, payload=msg.size,
                             created=now, data=msg), receive)
        now = m.env.now
        if outbox:
            if self.blocked_since is None:
                self.blocked_since = now
        elif self.blocked_since is not None:
            self.blocked_s += m.sim.overlap(self.blocked_since, now)
            self.blocked_since = None

    # ------------------------------------------------------- connection --
    def _pump_connected(self, conns) -> None:
        m = self.model
        outbox = self.outbox
        if not conns.keepalive:
            while outbox and self.unconfirmed < self.window:
                msg = outbox.popleft()
                self.unconfirmed += 1
                self.opening[msg.mid] = msg
                conns.ensure(self, lambda extra, msg=msg: self._send_new(msg, extra))
        elif self not in conns.open:
            if outbox and self.unconfirmed < self.window and not self.connecting:
                self.connecting = True
                conns.ensure(self, self._opened)
        else:
            now = m.env.now
            while outbox and self.unconfirmed < self.window:
                msg = outbox.popleft()
                self.unconfirmed += 1
                conns.use(self)
                m.publish_link.send(Message("publish", self, "broker", header=m.header,
                                            payload=msg.size, handshake=self.extra, created=now,
                                            data=msg), m.broker.receive_publish)
                self.extra = 0

    def _opened(self, extra: int) -> None:
        self.connecting = False
        self.extra = extra
        self.model.pub_conns.done(self)  # the set-up itself; each publish is one request
        self.pump()

    def _send_new(self, msg, extra: int) -> None:
        m = self.model
        del self.opening[msg.mid]
        m.publish_link.send(Message("publish", self, "broker", header=m.header, payload=msg.size,
                                    handshake=extra, created=m.env.now, data=msg),
                            m.broker.receive_publish)

    def connection_lost(self) -> None:
        """The broker restarted: a handshake under way was cut off; publishes
        waiting for theirs go back to the outbox, in order."""
        self.connecting = False
        self.extra = 0
        if self.opening:
            waiting = list(self.opening.values())
            self.opening.clear()
            self.unconfirmed -= len(waiting)
            self.outbox.extendleft(reversed(waiting))

    # ------------------------------------------------------------ confirm --
    def confirmed(self, msg) -> None:
        self.unconfirmed -= 1
        m = self.model
        if m.pub_conns is not None:
            m.pub_conns.done(self)
        if msg.created >= m.sim.start:
            m.publish_latencies.append(m.env.now - msg.created)
        if self.outbox and not self.pumping:
            self.pump()

    def refused(self, msg) -> None:
        """The broker went down before storing ``msg``: send it again later."""
        self.unconfirmed -= 1
        if self.model.pub_conns is not None:
            self.model.pub_conns.done(self)
        self.outbox.appendleft(msg)
        self.pump()

    def close(self) -> None:
        if self.blocked_since is not None:
            self.blocked_s += self.model.sim.overlap(self.blocked_since, self.model.sim.end)
            self.blocked_since = None


class RecordedPublisher(Publisher):
    """A publisher that also records one row per publish (``commsim run
    --records``; the model uses it only then): from the message's creation
    (outbox time included, as ``publish_latency_mean``) to its confirm
    (``ok``), or ``unfinished`` if not confirmed by the end of the run."""

    __slots__ = ()

    def _new(self, mid: int, topic: int, size: int, created: float, publisher) -> Msg:
        msg = Msg(mid, topic, size, created, publisher)
        ops = self.model.ops
        msg.row = len(ops)
        ops.record(PUBLISH, created, NAN, self.idx, size, UNFINISHED)
        return msg

    def confirmed(self, msg) -> None:
        ops = self.model.ops
        ops.end[msg.row] = self.model.env.now
        ops.outcome[msg.row] = OK
        Publisher.confirmed(self, msg)
