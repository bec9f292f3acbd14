"""A message broker node: topics, subscription queues (push) and partition
logs (pull), with its own CPU, optional persistence and restarts.

Model and assumptions
---------------------
* **CPU.** The broker is a :class:`~commsim.nodes.Cpu` (``broker_cores``
  cores, FIFO).  It spends ``broker_cpu_per_message`` per publish received
  and per copy sent (push: per delivery; pull: per message in a fetch
  response) and ``broker_cpu_per_request`` per ack, fetch request and offset
  commit.  A zero cost schedules nothing.
* **Persistence.** With ``persistence: true`` a publish is confirmed only
  after an fsync: the store is a :class:`~commsim.nodes.durable_log.DurableLog`
  on a one-"core" :class:`~commsim.nodes.Cpu` named ``broker-disk`` doing
  one fsync (``fsync_time``) at a time with *group commit*: every publish
  that arrives while an fsync runs is made durable by the next one (as
  RabbitMQ and Kafka batch their syncs).
* **Push** (RabbitMQ-like).  Each subscription has a FIFO queue shared by
  the consumers of its group (competing consumers).  The broker sends a
  consumer messages while it has fewer than ``prefetch`` unacknowledged ones,
  choosing consumers round-robin.  An ack frees one slot.  When a consumer
  crashes the broker notices at once (heartbeats are not modelled) and
  requeues its unacked messages ahead of the rest (redeliveries); acks from
  before the crash are ignored, so a message processed but not acked is
  processed again (a duplicate).
* **Pull** (Kafka-like).  A topic is ``partitions`` append-only logs;
  publishes go to partitions round-robin.  Each subscription is a consumer
  group whose consumers own fixed partitions (``p % group_size``; a member
  beyond the partition count stays idle; no rebalancing on a crash).  A fetch
  is answered when at least ``fetch_min_bytes`` are ready after the
  consumer's position, or after ``fetch_max_wait`` (long poll), with at most
  ``max_poll_records`` messages.  Committed offsets are kept per group and
  partition.
* **Restart.** ``broker_restart_at`` takes the broker down for
  ``broker_downtime``.  Publishes reaching it while down, or still in its CPU
  or fsync pipeline, are refused and resent by their publisher after the
  restart (publishing is idempotent: nothing is stored twice).  Consumers
  lose their connection: push consumers drop their prefetched messages;
  pull consumers keep their buffer and position and fetch again once the
  broker is back.  With persistence every stored message survives (push:
  unacked ones are requeued); without it every queued or unacked push
  message and every pull message not yet fetched is lost and counted in
  ``missed``, and committed offsets jump to the log end.

* **Connections** (``network.handshake``; the model's
  :class:`~commsim.network.connection.Connections`, TLS CPU on this broker's
  CPU): the broker delivers only to a push consumer whose connection is
  open; an unacknowledged delivery keeps it busy (never idle-closed); a
  restart resets every connection (the clients reconnect after it).

Offsets, queues and unacked sets are plain Python containers; a delivery or a
fetch response is one :class:`~commsim.network.Message` on the shared
broker-to-consumer link, so its bytes are counted once, by the link.
"""

from __future__ import annotations

from collections import deque

from commsim.engine.recorder import DELIVERY, MISSED
from commsim.network import Message
from commsim.nodes.broker_log import Fetch, Partition, PullLog  # noqa: F401  (re-exported)
from commsim.nodes.cpu import Cpu
from commsim.nodes.durable_log import DurableLog
from commsim.nodes.faults import Crashable, FaultPlan

NAN = float("nan")


class Msg:
    """One published message (its content is only a size)."""

    # ``row``: its publish record (set only with records on, else unset).
    __slots__ = ("mid", "topic", "size", "created", "publisher", "partition", "offset", "pending",
                 "row")

    def __init__(self, mid: int, topic: int, size: int, created: float, publisher):
        self.mid = mid
        self.topic = topic
        self.size = size
        self.created = created
        self.publisher = publisher
        self.partition = -1
        self.offset = -1
        self.pending = 0  # direct mode: copies not yet acknowledged


class Subscription:
    """One subscription of a topic: every message of the topic once
    (push: a queue; pull: a consumer group's offsets)."""

    __slots__ = ("topic", "index", "consumers", "ready", "retry", "queue",
                 "seen", "rr", "committed", "high", "owner", "healthy")

    def __init__(self, sim, topic: int, index: int, partitions: int):
        self.topic = topic
        self.index = index
        self.consumers: list = []
        self.ready: deque = deque()
        self.retry: deque = deque()  # requeued messages, delivered first
        # messages not yet processed: a recorder Level (peak over the window)
        self.queue = sim.recorder.level(f"pubsub/queue/{topic}/{index}")
        self.seen: set = set()  # message ids processed by this subscription
        self.rr = 0
        self.committed = [0] * partitions
        self.high = [0] * partitions  # highest offset fetched + 1 (redelivery detection)
        self.owner: list = [None] * partitions
        self.healthy = True  # no slow or crashing consumer (for healthy_latency_*)

    @property
    def depth(self) -> int:
        return self.queue.value


class Broker(Crashable, PullLog):
    """A message broker node (see the module docstring).

    API: the model builds it with its ``cfg`` (the ``pubsub`` section), the
    delivery ``mode``, the broker->publisher ``confirm_link`` and
    broker->consumer ``deliver_link``, and ``on_stored(msg)`` (called once per
    message the broker stores); registers topics, subscriptions, consumers
    and publishers (:meth:`add_subscription`, :meth:`add_publisher`); and
    feeds it wire messages (``receive_publish``, ``receive_ack``,
    ``receive_fetch``, ``receive_commit``).  The broker's own counters are
    ``deliveries``, ``redeliveries`` and ``missed`` (copies a restart without
    persistence lost).  Consumers expose ``up``, ``epoch``, ``unacked``,
    ``next_tag``, ``parts``, ``position``, ``sub``, ``fetch_id`` and the hooks
    ``on_delivery``, ``on_fetch_response``, ``connection_lost``, ``reconnect``;
    publishers ``refused(msg)``, ``confirmed(msg)``, ``pump()`` and
    ``connection_lost()``.  With modelled connections the model sets
    ``connections`` (every Connections to this broker, reset by a restart)
    and ``consumer_conns`` (the consumers').
    """

    name = "broker"

    def __init__(self, sim, cfg: dict, mode: str, confirm_link, deliver_link, on_stored):
        self.sim = sim
        self.env = sim.env
        self.cpu = Cpu(sim, "broker", cfg["broker_cores"])
        self.persistent = cfg["persistence"]
        self.disk = Cpu(sim, "broker-disk", 1) if self.persistent else None
        # Persistence: the store is a group-commit DurableLog on the disk.
        self.log = DurableLog(sim, self, cfg["fsync_time"], disk=self.disk) \
            if self.persistent else None
        self.cost_msg = cfg["broker_cpu_per_message"]
        self.cost_req = cfg["broker_cpu_per_request"]
        self.prefetch = cfg["prefetch"]
        self.min_bytes = cfg["fetch_min_bytes"]
        self.max_wait = cfg["fetch_max_wait"]
        self.max_records = cfg["max_poll_records"]
        self.header = int(cfg["header"])
        self.init_faults(FaultPlan(sim, downtime=cfg["broker_downtime"]), arm=False)
        self.mode = mode
        self.confirm_link = confirm_link
        self.deliver_link = deliver_link
        self.on_stored = on_stored
        self.partitions: list[list[Partition]] = []  # by topic
        self._part_rr: list[int] = []
        self.subs: list[Subscription] = []
        self.subs_by_topic: list[list[Subscription]] = []
        self.consumers: list = []
        self.publishers: list = []
        self.deliveries = 0
        self.redeliveries = 0
        self.missed = 0
        self.connections: tuple = ()
        self.consumer_conns = None
        self.ops = None  # per-operation records (the model sets them with records on)

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------- topology --
    def add_subscription(self, sub: Subscription) -> None:
        """Register ``sub`` (its consumers already in ``sub.consumers``)."""
        while len(self.subs_by_topic) <= sub.topic:
            self.subs_by_topic.append([])
        self.subs_by_topic[sub.topic].append(sub)
        self.subs.append(sub)
        self.consumers.extend(sub.consumers)

    def add_publisher(self, publisher) -> None:
        self.publishers.append(publisher)

    # ------------------------------------------------------------ CPU --
    def _work(self, cost: float, purpose: str, fn, token, stale=None) -> None:
        """Run ``fn(token)`` after ``cost`` of broker CPU; if the broker
        restarted meanwhile run ``stale(token)`` (if given) instead."""
        if cost <= 0.0:
            fn(token)
            return
        self.cpu.submit(cost, purpose, self._after, (self.epoch, fn, token, stale))

    def _after(self, tok, _wait) -> None:
        epoch, fn, token, stale = tok
        if epoch == self.epoch and self.up:
            fn(token)
        elif stale is not None:
            stale(token)

    # -------------------------------------------------------- publish --
    def receive_publish(self, wire) -> None:
        msg = wire.data
        if not self.up:
            msg.publisher.refused(msg)
            return
        self._work(self.cost_msg, "publish", self._stored, msg, self._refuse)

    def _refuse(self, msg) -> None:
        msg.publisher.refused(msg)

    def _stored(self, msg) -> None:
        if self.log is None:
            self._commit(msg)
        else:
            self.log.append(self._commit, msg)

    def _commit(self, msg) -> None:
        """The message is stored: hand it to its subscriptions, confirm it."""
        self.store(msg)
        self.confirm_link.send(Message("confirm", "broker", msg.publisher, header=self.header,
                                       created=self.env.now, data=msg), _confirmed)

    def store(self, msg) -> None:
        """Store ``msg`` (also the model's way to preload a backlog)."""
        self.on_stored(msg)
        if self.mode == "push":
            for sub in self.subs_by_topic[msg.topic]:
                self.enqueue(sub, msg)
        else:
            self.append(msg)

    def _grow(self, sub: Subscription, n: int) -> None:
        sub.queue.add(n)

    # ------------------------------------------------------------ push --
    def enqueue(self, sub: Subscription, msg: Msg) -> None:
        sub.ready.append(msg)
        self._grow(sub, 1)
        self.dispatch(sub)

    def dispatch(self, sub: Subscription) -> None:
        if not self.up:
            return
        consumers = sub.consumers
        n = len(consumers)
        prefetch = self.prefetch
        conns = self.consumer_conns
        while sub.retry or sub.ready:
            start = sub.rr
            for k in range(n):
                c = consumers[(start + k) % n]
                if c.up and len(c.unacked) < prefetch and (conns is None or c in conns.open):
                    break
            else:
                return
            sub.rr = (start + k + 1) % n
            if sub.retry:
                msg = sub.retry.popleft()
                self.redeliveries += 1
            else:
                msg = sub.ready.popleft()
            tag = c.next_tag
            c.next_tag = tag + 1
            c.unacked[tag] = msg
            if conns is not None:
                conns.use(c)  # busy until acknowledged
            self._work(self.cost_msg, "deliver", self._deliver, (c, c.epoch, tag, msg))

    def _deliver(self, token) -> None:
        c, epoch, tag, msg = token
        if epoch != c.epoch:
            return  # the consumer crashed meanwhile: the message was requeued
        self.deliveries += 1
        self.deliver_link.send(Message("deliver", "broker", c, header=self.header, payload=msg.size,
                                       created=self.env.now, data=token), c.on_delivery)

    def receive_ack(self, wire) -> None:
        if not self.up:
            return
        self._work(self.cost_req, "ack", self._acked, wire.data)

    def _acked(self, token) -> None:
        c, epoch, tag = token
        if epoch != c.epoch:
            return  # an ack from before a crash or restart: its message was requeued or lost
        msg = c.unacked.pop(tag, None)
        if msg is None:
            return
        if self.consumer_conns is not None:
            self.consumer_conns.done(c)
        c.sub.queue.add(-1)
        self.dispatch(c.sub)

    def redeliver(self, c, epoch: int, tag: int) -> None:
        """A delivery or its ack was lost on the wire: give the message to the
        group again (if it is still that consumer's, unacked)."""
        if epoch == c.epoch and tag in c.unacked:
            c.sub.retry.append(c.unacked.pop(tag))
            if self.consumer_conns is not None:
                self.consumer_conns.done(c)
            self.dispatch(c.sub)

    def consumer_lost(self, c) -> None:
        """A push consumer crashed: requeue its unacked messages."""
        sub = c.sub
        if c.unacked:
            sub.retry.extend(c.unacked.values())
            c.unacked.clear()
        self.dispatch(sub)

    # --------------------------------------------------------- restart --
    @property
    def restarts(self) -> int:
        """Broker crashes (each followed by a restart) inside the window."""
        return self.crashes

    def on_crash(self) -> None:
        for conns in self.connections:
            conns.reset()  # every client's connection is gone, handshakes under way too
        if self.connections:
            for pub in self.publishers:
                pub.connection_lost()
        if self.log is not None:
            # Publishes not yet durable are refused; newest first, so that each
            # publisher's outbox gets them back in their original order.
            for msg in reversed(self.log.crash()):
                msg.publisher.refused(msg)
        if self.mode == "push":
            for sub in self.subs:
                for c in sub.consumers:
                    c.connection_lost()
                    if c.unacked:
                        sub.retry.extend(c.unacked.values())
                        c.unacked.clear()
                if not self.persistent:
                    lost = 0
                    ops = self.ops
                    for q in (sub.retry, sub.ready):
                        for msg in q:
                            lost += 1
                            if msg.mid not in sub.seen:
                                self.missed += 1
                                if ops is not None:  # no consumer holds it: client unknown
                                    ops.record(DELIVERY, msg.created, NAN, -1, msg.size, MISSED)
                        q.clear()
                    sub.queue.add(-lost)
        else:
            self.pull_crash()

    def on_restart(self) -> None:
        for pub in self.publishers:
            pub.pump()
        if self.mode == "push":
            for sub in self.subs:
                self.dispatch(sub)
            if self.consumer_conns is not None:
                for c in self.consumers:
                    c.reconnect()  # each opens its connection again
        else:
            for c in self.consumers:
                c.reconnect()
        if self.log is not None:
            self.log.resume()


def _confirmed(wire) -> None:
    msg = wire.data
    if msg.publisher is not None:
        msg.publisher.confirmed(msg)
