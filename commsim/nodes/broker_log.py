"""The pull (Kafka-like) side of the broker node :mod:`commsim.nodes.broker`:
partition logs, long-poll fetches, committed offsets, and what a restart does
to them (assumptions in that module's docstring).  :class:`PullLog` is a
part of :class:`~commsim.nodes.broker.Broker`, which provides ``env``,
``up``, ``epoch``, ``persistent``, ``subs_by_topic``, ``consumers``,
``deliver_link``, ``ops`` (records or None), the fetch rules and ``_work``/``_grow``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from commsim.engine.recorder import DELIVERY, MISSED
from commsim.engine.simulation import call_later
from commsim.network import Message

NAN = float("nan")

if TYPE_CHECKING:
    from commsim.nodes.broker import Msg


class Partition:
    """An append-only log with cumulative byte counts (so "bytes ready after
    offset o" is one subtraction)."""

    __slots__ = ("topic", "index", "log", "cum", "lost_before", "waiters")

    def __init__(self, topic: int, index: int):
        self.topic = topic
        self.index = index
        self.log: list[Msg] = []
        self.cum: list[int] = [0]
        self.lost_before = 0  # offsets below were lost in a restart without persistence
        self.waiters: list = []  # held fetches that read this partition

    @property
    def end(self) -> int:
        return len(self.log)


class Fetch:
    """One fetch request of a pull consumer (``fid``: the consumer's fetch number)."""

    __slots__ = ("consumer", "fid", "sent", "arrived", "done", "epoch")

    def __init__(self, consumer, fid: int, sent: float):
        self.consumer = consumer
        self.fid = fid
        self.sent = sent
        self.arrived = 0.0
        self.done = False
        self.epoch = 0


class PullLog:
    """Partition logs and fetches of the broker (pull mode)."""

    def setup_partitions(self, topics: int, partitions: int) -> None:
        self.partitions = [[Partition(t, p) for p in range(partitions)] for t in range(topics)]
        self._part_rr = [0] * topics

    def append(self, msg: Msg) -> None:
        t = msg.topic
        parts = self.partitions[t]
        i = self._part_rr[t]
        self._part_rr[t] = (i + 1) % len(parts)
        part = parts[i]
        msg.partition = i
        msg.offset = len(part.log)
        part.log.append(msg)
        part.cum.append(part.cum[-1] + msg.size)
        for sub in self.subs_by_topic[t]:
            self._grow(sub, 1)
        if part.waiters:
            for f in list(part.waiters):
                if not f.done and self._ready_bytes(f.consumer) >= self.min_bytes:
                    self._respond(f)

    def _ready_bytes(self, c) -> int:
        total = 0
        for part, pos in zip(c.parts, c.position):
            start = pos if pos > part.lost_before else part.lost_before
            if start < len(part.log):
                total += part.cum[-1] - part.cum[start]
        return total

    def receive_fetch(self, wire) -> None:
        if not self.up:
            return  # lost; the consumer fetches again after the restart
        self._work(self.cost_req, "fetch", self._fetch_arrived, wire.data)

    def _fetch_arrived(self, f: Fetch) -> None:
        c = f.consumer
        if f.fid != c.fetch_id:
            return
        f.arrived = self.env.now
        f.epoch = self.epoch
        if self._ready_bytes(c) >= self.min_bytes:
            self._respond(f)
            return
        for part in c.parts:
            part.waiters.append(f)
        call_later(self.env, self.max_wait, self._fetch_timeout, f)

    def _fetch_timeout(self, event) -> None:
        f = event.value
        if not f.done and f.epoch == self.epoch and self.up:
            self._respond(f)

    def _respond(self, f: Fetch) -> None:
        f.done = True
        c = f.consumer
        for part in c.parts:
            if f in part.waiters:
                part.waiters.remove(f)
        if f.fid != c.fetch_id:
            return  # the consumer crashed while its fetch was held
        left = self.max_records
        records: list[Msg] = []
        positions = list(c.position)
        sub = c.sub
        nbytes = 0
        for i, part in enumerate(c.parts):
            if left <= 0:
                break
            start = positions[i] if positions[i] > part.lost_before else part.lost_before
            stop = min(len(part.log), start + left)
            if stop > start:
                records.extend(part.log[start:stop])
                nbytes += part.cum[stop] - part.cum[start]
                high = sub.high[part.index]
                if start < high:
                    self.redeliveries += min(stop, high) - start
                if stop > high:
                    sub.high[part.index] = stop
                left -= stop - start
            positions[i] = stop if stop > start else start
        hold = self.env.now - f.arrived
        self._work(self.cost_msg * len(records), "fetch", self._send_response,
                   (f, records, positions, hold, nbytes))

    def _send_response(self, token) -> None:
        f, records, _positions, _hold, nbytes = token
        self.deliveries += len(records)
        self.deliver_link.send(Message("fetch_response", "broker", f.consumer, header=self.header,
                                       payload=nbytes, created=self.env.now, data=token),
                               f.consumer.on_fetch_response)

    def receive_commit(self, wire) -> None:
        if not self.up:
            return
        self._work(self.cost_req, "commit", self._committed, wire.data)

    def _committed(self, token) -> None:
        sub, offsets = token
        committed = sub.committed
        for p, off in offsets:
            old = committed[p]
            if off > old:
                committed[p] = off
                sub.queue.add(-(off - old))

    def pull_crash(self) -> None:
        """A restart: held fetches end; consumers lose their connection;
        without persistence what no group has fetched is lost."""
        for parts in self.partitions:
            for part in parts:
                for f in part.waiters:
                    f.done = True
                part.waiters.clear()
        for c in self.consumers:
            c.connection_lost()
        if not self.persistent:
            for t, parts in enumerate(self.partitions):
                for part in parts:
                    end = len(part.log)
                    for sub in self.subs_by_topic[t]:
                        # Messages the group has not fetched are lost; an offline
                        # owner would have replayed from its committed offset.
                        owner = sub.owner[part.index]
                        if owner.up:
                            pos = owner.position[owner.parts.index(part)]
                        else:
                            pos = sub.committed[part.index]
                        start = max(pos, part.lost_before)
                        seen = sub.seen
                        ops = self.ops
                        for msg in part.log[start:end]:
                            if msg.mid not in seen:
                                self.missed += 1
                                if ops is not None:  # the partition owner's copy
                                    ops.record(DELIVERY, msg.created, NAN, owner.idx, msg.size,
                                               MISSED)
                        old = sub.committed[part.index]
                        if end > old:
                            sub.committed[part.index] = end
                            sub.queue.add(-(end - old))
                    part.lost_before = end
