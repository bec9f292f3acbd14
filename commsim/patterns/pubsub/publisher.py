"""A publisher: a message stream, an outbox and a window of unconfirmed publishes."""

from __future__ import annotations

from collections import deque

from commsim.engine import call_later
from commsim.network import Message
from commsim.nodes.broker import Msg


class Publisher:
    """Publisher ``idx`` of one topic (its ``name`` shows in traces)."""

    __slots__ = ("name", "model", "idx", "topic", "outbox", "unconfirmed", "window", "blocked_since",
                 "blocked_s", "pumping", "_gap", "_size", "_stop")

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
        call_later(model.env, gap(), self._tick)

    def __str__(self) -> str:
        return self.name

    def _tick(self, _event) -> None:
        m = self.model
        now = m.env.now
        if self._stop is not None and now >= self._stop:
            return
        m.next_mid += 1
        self.outbox.append(Msg(m.next_mid, self.topic, int(self._size()), now, self))
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

    def confirmed(self, msg) -> None:
        self.unconfirmed -= 1
        m = self.model
        if msg.created >= m.sim.start:
            m.publish_latencies.append(m.env.now - msg.created)
        if self.outbox and not self.pumping:
            self.pump()

    def refused(self, msg) -> None:
        """The broker went down before storing ``msg``: send it again later."""
        self.unconfirmed -= 1
        self.outbox.appendleft(msg)
        self.pump()

    def close(self) -> None:
        if self.blocked_since is not None:
            self.blocked_s += self.model.sim.overlap(self.blocked_since, self.model.sim.end)
            self.blocked_since = None
