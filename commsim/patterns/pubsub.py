"""Publish/subscribe through a broker: push with prefetch, pull with long-poll
fetch, and a direct (broker-less) baseline.

Model and assumptions
---------------------
* **Topics and subscriptions.** ``topics`` topics, each with ``publishers``
  publishers and ``subscribers`` subscriptions.  Every subscription gets its
  own copy of every message of its topic (fan-out); the ``group_size``
  consumers of one subscription share its messages (competing consumers /
  a consumer group).  Consumers are numbered topic by topic, subscription by
  subscription; faults hit the first ones (consumer 0 is subscription 0 of
  topic 0).
* **Publishers** create messages as a Poisson (or periodic) stream of
  ``publish_rate`` per publisher (or any ``interarrival`` distribution),
  of ``message_size`` bytes plus ``header``
  bytes on the wire, until ``publish_for`` (default: the whole run).  A
  publisher keeps at most ``publish_window`` messages unconfirmed; a message
  that cannot be sent (window full, broker down) waits in the publisher's
  outbox and the publisher counts as *blocked*.  Latency runs from a
  message's creation (so outbox time is included) to its first processing
  by a subscriber.
* **Broker** (push and pull): see :mod:`commsim.nodes.broker` for its CPU,
  persistence, queues, logs, fetch rules and restarts.  A publish is
  confirmed to its publisher once stored (after the fsync when persistent).
* **Consumers** each have one core (a :class:`~commsim.nodes.Cpu`) and
  process their messages one at a time for ``processing_time``.
  push: the consumer acks each message after processing it.
  pull: poll loop: fetch, process the batch, commit (``commit: per_batch``
  sends the processed offsets after each batch, asynchronously, then
  fetches again at once; ``commit: periodic`` commits every
  ``commit_interval``).  A crashed pull consumer restarts from its group's
  committed offsets.
* **direct**: no broker.  A publisher sends each message to one online
  consumer of every subscription (round-robin within a group) and confirms
  it when every copy is acknowledged.  A subscriber acknowledges a copy when
  it enters its receive buffer of ``direct_buffer`` messages (the one being
  processed included); a full buffer holds the copy unacknowledged, which is
  TCP back-pressure: the publisher's window fills and it blocks, so one slow
  subscriber slows every subscriber of the publisher.  A copy for an offline
  subscriber (or in its buffer when it crashes) is lost (``missed``).
* **Links** (all shared, bytes counted by the links): publisher->broker and
  its confirms (``publish_latency``), broker->consumers (``deliver_latency``),
  consumers->broker for acks, fetches and commits (``ack_latency``).  In
  direct mode publisher->subscriber uses ``deliver_latency`` and the acks
  ``ack_latency``.  A null latency means ``network.latency``; bandwidth and
  loss come from the ``network`` section.
* **Faults.** ``crash_consumers`` consumers crash at ``crash_at`` and restart
  ``restart_after`` later (losing their buffer; the core finishes the
  message it was on, wasted).  ``slow_consumers`` consumers process
  ``slow_factor`` times slower from ``slow_from`` for ``slow_for``.  The
  broker restarts at ``broker_restart_at`` (see the broker).  Connection
  loss is noticed at once (no heartbeat timeout) and reconnection is free.
* **Loss.** A message a link gives up on (``network.loss`` beyond
  ``max_retries``) is handled as a broken connection: publishes are resent,
  deliveries and acks redelivered, fetches re-sent, direct copies missed,
  confirms taken as given, commits covered by the next (:meth:`PubSub._dropped`).
* ``backlog`` messages per topic are already stored at t = 0 (an
  always-full queue without publishing them: they are counted in
  ``published`` but put no bytes on the publish link).

Ledger (whole run): ``copies == processed + missed + backlog`` where
``backlog`` is read off the queues, logs, links and consumer buffers at the
end; ``duplicates`` are repeat processings.  Queue depth is sampled every
``sample_every`` by one callback for the time-series figure.
"""

from __future__ import annotations

from collections import deque

from commsim.config.schema import Field, Section, register_section
from commsim.engine.simulation import call_at, call_later
from commsim.errors import ConfigError
from commsim.metrics import pubsub as _pubsub_metrics  # noqa: F401  (defines the metrics)
from commsim.metrics.collect import Latencies, latency_metrics, percentiles
from commsim.network import Link, Message
from commsim.nodes import Cpu
from commsim.nodes.broker import Broker, Msg, Subscription, _Fetch
from commsim.nodes.faults import Crashable, FaultPlan
from commsim.patterns.base import Pattern

MODES = ("push", "pull", "direct")


def _check(cfg: dict, key: str) -> None:
    consumers = cfg["topics"] * cfg["subscribers"] * cfg["group_size"]
    for name in ("crash_consumers", "slow_consumers"):
        if cfg[name] > consumers:
            raise ConfigError(f"{key}.{name}", f"got {cfg[name]}; there are only {consumers} consumers "
                              "(topics x subscribers x group_size)")
    if cfg["backlog"] and cfg["delivery"] == "direct":
        raise ConfigError(f"{key}.backlog", f"got {cfg['backlog']}; a preloaded backlog needs a "
                          "broker (delivery: push or pull), direct has none")


SECTION = register_section(Section("pubsub", {
    "delivery": Field("choice", "push", "push: the broker pushes up to `prefetch` unacked messages; "
                      "pull: consumers fetch with a long poll; direct: no broker", choices=MODES),
    "topics": Field("int", 1, "number of topics", min=1),
    "publishers": Field("int", 1, "publishers per topic", min=1),
    "publish_rate": Field("rate", "100/s", "messages per second per publisher", min=0,
                          min_exclusive=True),
    "arrivals": Field("choice", "poisson", "publish times: poisson or periodic (constant gaps)",
                      choices=("poisson", "periodic")),
    "interarrival": Field("dist:duration", None, "time between a publisher's messages, any "
                          "distribution (overrides publish_rate and arrivals; null: use them)",
                          min=0, min_exclusive=True, nullable=True),
    "message_size": Field("dist:size", "1KiB", "payload bytes of a message", min=0),
    "header": Field("size", "64B", "header bytes of every message on the wire (publish, delivery, "
                    "fetch response, ack, confirm, fetch, commit)", min=0),
    "publish_window": Field("int", 1000, "unconfirmed messages a publisher may have outstanding", min=1),
    "publish_for": Field("duration", None, "publishers stop after this simulated time "
                         "(null: never)", min=0, nullable=True),
    "backlog": Field("int", 0, "messages already stored per topic at t = 0", min=0),
    "subscribers": Field("int", 1, "subscriptions per topic, each gets every message", min=1),
    "group_size": Field("int", 1, "consumers sharing one subscription (consumer group)", min=1),
    "processing_time": Field("dist:duration", {"dist": "exponential", "mean": "4ms"},
                             "consumer CPU time per message", min=0),
    "prefetch": Field("int", 10, "push: unacknowledged messages per consumer", min=1),
    "fetch_min_bytes": Field("size", "1B", "pull: the broker answers a fetch once this many bytes "
                             "are ready", min=0),
    "fetch_max_wait": Field("duration", "500ms", "pull: ... or after this long (long poll)", min=0),
    "max_poll_records": Field("int", 500, "pull: messages per fetch response at most", min=1),
    "partitions": Field("int", None, "pull: partitions per topic (null: group_size)", min=1,
                        nullable=True),
    "commit": Field("choice", "per_batch", "pull: commit offsets after each processed batch or "
                    "every commit_interval", choices=("per_batch", "periodic")),
    "commit_interval": Field("duration", "5s", "pull: period of periodic commits", min=0,
                             min_exclusive=True),
    "direct_buffer": Field("int", 100, "direct: messages a subscriber's receive buffer holds", min=1),
    "broker_cores": Field("int", 1, "broker CPU cores", min=1),
    "broker_cpu_per_message": Field("duration", "20us", "broker CPU per publish received and per "
                                    "copy sent", min=0),
    "broker_cpu_per_request": Field("duration", "10us", "broker CPU per ack, fetch or commit", min=0),
    "persistence": Field("bool", False, "store messages durably (fsync before confirming)"),
    "fsync_time": Field("duration", "2ms", "duration of one fsync (group commit)", min=0),
    "publish_latency": Field("dist:duration", None, "one-way latency publisher <-> broker "
                             "(null: network.latency)", min=0, nullable=True),
    "deliver_latency": Field("dist:duration", None, "one-way latency broker -> consumer "
                             "(direct: publisher -> subscriber; null: network.latency)", min=0,
                             nullable=True),
    "ack_latency": Field("dist:duration", None, "one-way latency consumer -> broker for acks, "
                         "fetches, commits (direct: subscriber -> publisher; null: network.latency)",
                         min=0, nullable=True),
    "crash_at": Field("duration", None, "time the first crash_consumers consumers crash (null: never)",
                      min=0, nullable=True),
    "crash_consumers": Field("int", 1, "consumers that crash at crash_at", min=0),
    "restart_after": Field("duration", "5s", "down time of a crashed consumer (null: never restarts)",
                           min=0, nullable=True),
    "slow_consumers": Field("int", 0, "consumers that become slow", min=0),
    "slow_factor": Field("number", 10, "processing time multiplier of a slow consumer", min=0,
                         min_exclusive=True),
    "slow_from": Field("duration", "0s", "time the slow consumers slow down", min=0),
    "slow_for": Field("duration", None, "how long they stay slow (null: until the end)", min=0,
                      nullable=True),
    "broker_restart_at": Field("duration", None, "time the broker goes down (null: never; "
                               "ignored by direct)", min=0, nullable=True),
    "broker_downtime": Field("duration", "5s", "how long the broker stays down", min=0),
    "sample_every": Field("duration", "1s", "period of the queue-depth samples", min=0,
                          min_exclusive=True),
}, doc="Publish/subscribe: publishers, broker (push or pull), subscribers, faults.",
    pattern="pubsub", check=_check))


# ---------------------------------------------------------------- publisher --
class Publisher:
    __slots__ = ("model", "idx", "topic", "outbox", "unconfirmed", "window", "blocked_since",
                 "blocked_s", "pumping", "_gap", "_size", "_stop")

    def __init__(self, model, idx: int, topic: int, gap, size, stop: float | None):
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


# ----------------------------------------------------------------- consumer --
class Consumer(Crashable):
    """A subscriber's consumer; crashes and restarts are
    :class:`~commsim.nodes.faults.Crashable` (``up`` is "online")."""

    __slots__ = ("model", "idx", "sub", "cpu", "buffer", "current", "busy",
                 "next_tag", "unacked", "parts", "position", "done_pos", "committed_sent",
                 "fetch_id", "fetch", "pending", "slow_until", "slow_from")

    def __init__(self, model, idx: int, sub: Subscription):
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
            m.processed_copy(self.sub, msg)
            m.control_link.send(Message("ack", self, "broker", header=m.header, created=m.env.now,
                                        data=(self, epoch, tag)), m.broker.receive_ack)
        elif mode == "pull":
            m.processed_copy(self.sub, item)
            i = self.parts.index(m.broker.partitions[item.topic][item.partition]) \
                if len(self.parts) > 1 else 0
            self.done_pos[i] = item.offset + 1
            if not self.buffer and m.commit_per_batch:
                self.commit()
        else:
            m.processed_copy(self.sub, item)
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
        self.fetch_id += 1
        f = _Fetch(self, self.fetch_id, m.env.now)
        self.fetch = f
        m.control_link.send(Message("fetch", self, "broker", header=m.header, created=m.env.now,
                                    data=f), m.broker.receive_fetch)

    def on_fetch_response(self, wire) -> None:
        f, records, positions, hold, _nbytes = wire.data
        if f.fid != self.fetch_id or not self.up:
            return
        m = self.model
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
        for i, pos in enumerate(self.done_pos):
            if pos > self.committed_sent[i]:
                self.committed_sent[i] = pos
        m.control_link.send(Message("commit", self, "broker", header=m.header, created=m.env.now,
                                    data=(self.sub, offsets)), m.broker.receive_commit)

    def _periodic_commit(self, _event) -> None:
        if self.up:
            self.commit()
        call_later(self.model.env, self.model.commit_interval, self._periodic_commit)

    def reconnect(self) -> None:
        """The broker is back (pull): fetch again from the current position."""
        self.fetch = None
        self.send_fetch()

    # -------------------------------------------------------------- direct --
    def on_direct(self, wire) -> None:
        msg = wire.data
        m = self.model
        if not self.up:
            m.missed += 1
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
        if m.env.now >= m.sim.start:
            m.consumer_crashes += 1
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
        else:
            m.missed += len(dropped) + len(self.pending)
            sub.queue.add(-(len(dropped) + len(self.pending)))
            for msg in self.pending:
                m.copy_done(msg)
            self.pending.clear()

    def on_restart(self) -> None:
        m = self.model
        if m.mode == "push":
            m.broker.dispatch(self.sub)
        elif m.mode == "pull":
            self.position = [self.sub.committed[p.index] for p in self.parts]
            self.done_pos = list(self.position)
            self.committed_sent = list(self.position)
            self.send_fetch()


# -------------------------------------------------------------------- model --
class PubSub:
    """The pubsub model on one :class:`~commsim.engine.Simulation`."""

    def __init__(self, sim):
        cfg = sim.config["pubsub"]
        net = sim.config["network"]
        self.sim = sim
        self.env = sim.env
        self.cfg = cfg
        self.mode = cfg["delivery"]
        self.header = int(cfg["header"])
        self.direct_buffer = cfg["direct_buffer"]
        self.commit_per_batch = cfg["commit"] == "per_batch"
        self.commit_interval = cfg["commit_interval"]
        self.slow_factor = cfg["slow_factor"]
        self.processing = sim.sampler(cfg["processing_time"], "pubsub/processing")
        sim.pubsub = self

        kw = dict(bandwidth=net["bandwidth"], loss=net["loss"], rto=net["rto"],
                  max_retries=net["max_retries"])

        def lat(key):
            return cfg[key] if cfg[key] is not None else net["latency"]

        self.links: list[Link] = []
        if self.mode == "direct":
            self.direct_link = Link(sim, "pubsub/direct", lat("deliver_latency"), **kw)
            self.direct_ack_link = Link(sim, "pubsub/direct_ack", lat("ack_latency"), **kw)
            self.links += [self.direct_link, self.direct_ack_link]
        else:
            self.publish_link = Link(sim, "pubsub/publish", lat("publish_latency"), **kw)
            self.confirm_link = Link(sim, "pubsub/confirm", lat("publish_latency"), **kw)
            self.deliver_link = Link(sim, "pubsub/deliver", lat("deliver_latency"), **kw)
            self.control_link = Link(sim, "pubsub/control", lat("ack_latency"), **kw)
            self.links += [self.publish_link, self.confirm_link, self.deliver_link, self.control_link]
        for link in self.links:
            link.on_drop = self._dropped

        # Counters (whole run unless noted).
        self.next_mid = 0
        self.published = 0
        self.copies = 0
        self.processed = 0
        self.duplicates = 0
        self.missed = 0
        self.deliveries = 0
        self.redeliveries = 0
        self.consumer_crashes = 0
        self.fetch_count = 0
        self.empty_fetches = 0
        self.fetch_latency_sum = 0.0
        self.fetch_hold_sum = 0.0
        self.latencies = Latencies(sim)
        self.publish_latencies: list[float] = []
        self.healthy_latencies: list[float] = []  # subscriptions without a faulty consumer

        topics = cfg["topics"]
        group = cfg["group_size"]
        partitions = cfg["partitions"] or group
        self.consumer_faults = FaultPlan(sim, downtime=cfg["restart_after"])
        self.broker = Broker(self, cfg)
        if self.mode == "pull":
            self.broker.setup_partitions(topics, partitions)
        self.subs: list[Subscription] = []
        self.subs_by_topic: list[list[Subscription]] = []
        self.consumers: list[Consumer] = []
        for t in range(topics):
            subs = []
            for s in range(cfg["subscribers"]):
                sub = Subscription(sim, t, s, partitions)
                for _ in range(group):
                    c = Consumer(self, len(self.consumers), sub)
                    sub.consumers.append(c)
                    self.consumers.append(c)
                if self.mode == "pull":
                    for p, part in enumerate(self.broker.partitions[t]):
                        c = sub.consumers[p % group]
                        sub.owner[p] = c
                        c.parts.append(part)
                    for c in sub.consumers:
                        c.position = [0] * len(c.parts)
                        c.done_pos = [0] * len(c.parts)
                        c.committed_sent = [0] * len(c.parts)
                subs.append(sub)
                self.subs.append(sub)
            self.subs_by_topic.append(subs)

        # Publishers.
        rate = cfg["publish_rate"]
        if cfg["interarrival"] is not None:
            gap_spec = cfg["interarrival"]
        elif cfg["arrivals"] == "poisson":
            gap_spec = {"dist": "exponential", "mean": 1.0 / rate}
        else:
            gap_spec = 1.0 / rate
        self.publishers: list[Publisher] = []
        for t in range(topics):
            for _ in range(cfg["publishers"]):
                i = len(self.publishers)
                gap = sim.sampler(gap_spec, f"pubsub/arrivals/{i}")
                size = sim.sampler(cfg["message_size"], f"pubsub/size/{i}", "size")
                self.publishers.append(Publisher(self, i, t, gap, size, cfg["publish_for"]))

        # Preloaded backlog.
        backlog_size = sim.sampler(cfg["message_size"], "pubsub/backlog_size", "size")
        for t in range(topics):
            for _ in range(cfg["backlog"]):
                self.next_mid += 1
                msg = Msg(self.next_mid, t, int(backlog_size()), 0.0, None)
                self.accept(msg)
                if self.mode == "push":
                    for sub in self.subs_by_topic[t]:
                        self.broker.enqueue(sub, msg)
                else:
                    self.broker.append(msg)

        # Consumers start.
        for c in self.consumers:
            if self.mode == "pull":
                c.send_fetch()
                if not self.commit_per_batch:
                    call_later(self.env, self.commit_interval, c._periodic_commit)

        # Faults.
        env = self.env
        if cfg["crash_at"] is not None:
            for c in self.consumers[:cfg["crash_consumers"]]:
                c.crash_at(cfg["crash_at"])
        for c in self.consumers[:cfg["slow_consumers"]]:
            c.slow_from = cfg["slow_from"]
            c.slow_until = None if cfg["slow_for"] is None else cfg["slow_from"] + cfg["slow_for"]
        if cfg["broker_restart_at"] is not None and self.mode != "direct":
            self.broker.crash_at(cfg["broker_restart_at"])

        faulty = self.consumers[:cfg["slow_consumers"]]
        if cfg["crash_at"] is not None:
            faulty = faulty + self.consumers[:cfg["crash_consumers"]]
        for c in faulty:
            c.sub.healthy = False

        # Queue depth: each subscription's is a recorder Level (peak over the
        # window); depths and publishers' outboxes are sampled periodically.
        self.samples = sim.recorder.every("pubsub/queues", cfg["sample_every"], self._sample)
        sim.at_end(self._close)

    # ----------------------------------------------------------- helpers --
    def _sample(self):
        return [sub.depth for sub in self.subs], sum(len(p.outbox) for p in self.publishers)

    @property
    def samples_t(self) -> list[float]:
        return self.samples.t

    @property
    def samples_depth(self) -> list[list[int]]:
        return [v[0] for v in self.samples.values]

    @property
    def samples_outbox(self) -> list[int]:
        return [v[1] for v in self.samples.values]

    def _close(self) -> None:
        for p in self.publishers:
            p.close()

    def accept(self, msg: Msg) -> None:
        """``msg`` is stored (broker) or sent (direct): it owes one copy per subscription."""
        self.published += 1
        self.copies += len(self.subs_by_topic[msg.topic])

    def processed_copy(self, sub: Subscription, msg: Msg) -> None:
        if msg.mid in sub.seen:
            self.duplicates += 1
            return
        sub.seen.add(msg.mid)
        self.processed += 1
        self.latencies.record(msg.created)
        if sub.healthy and msg.created >= self.sim.start and self.env.now >= self.sim.start:
            self.healthy_latencies.append(self.env.now - msg.created)

    def on_confirm(self, wire) -> None:
        msg = wire.data
        if msg.publisher is not None:
            msg.publisher.confirmed(msg)

    def _dropped(self, wire) -> None:
        """A link gave up on ``wire`` (loss beyond max_retries): the
        endpoints react as a broken connection makes them (the message is in
        the link ledger's ``dropped``)."""
        kind = wire.kind
        data = wire.data
        if kind == "publish":
            data.publisher.refused(data)  # resent (idempotent publishing)
        elif kind == "confirm":
            if data.publisher is not None:
                data.publisher.confirmed(data)  # a resend would be deduplicated, then confirmed
        elif kind == "deliver" and self.mode == "direct":
            self.missed += 1
            self.copy_done(data)
        elif kind == "ack" and self.mode == "direct":
            self.copy_done(data)
        elif kind in ("deliver", "ack"):
            # The broker gives the message to the group again (a redelivery).
            c, epoch, tag = data[0], data[1], data[2]
            if epoch == c.epoch and tag in c.unacked:
                c.sub.retry.append(c.unacked.pop(tag))
                self.broker.dispatch(c.sub)
        elif kind == "fetch":
            data.consumer.fetch = None
            data.consumer.send_fetch()  # the client's request timeout, then a new fetch
        elif kind == "fetch_response":
            c = data[0].consumer
            if data[0].fid == c.fetch_id:
                c.fetch = None
                c.send_fetch()
        # A lost commit is covered by the next one.

    # ------------------------------------------------------------ direct --
    def send_direct(self, msg: Msg) -> None:
        self.accept(msg)
        now = self.env.now
        sent = 0
        for sub in self.subs_by_topic[msg.topic]:
            consumers = sub.consumers
            n = len(consumers)
            target = None
            for k in range(n):
                c = consumers[(sub.rr + k) % n]
                if c.up:
                    target = c
                    sub.rr = (sub.rr + k + 1) % n
                    break
            if target is None:
                self.missed += 1
                continue
            sent += 1
            self.deliveries += 1
            self.direct_link.send(Message("deliver", msg.publisher, target, header=self.header,
                                          payload=msg.size, created=now, data=msg),
                                  target.on_direct)
        msg.pending = sent
        if sent == 0:
            msg.publisher.confirmed(msg)

    def on_direct_ack(self, wire) -> None:
        self.copy_done(wire.data)

    def copy_done(self, msg: Msg) -> None:
        msg.pending -= 1
        if msg.pending == 0:
            msg.publisher.confirmed(msg)

    # ----------------------------------------------------------- metrics --
    def backlog_now(self) -> int:
        """Copies neither processed nor missed, read off where they sit."""
        total = 0
        if self.mode == "push":
            for sub in self.subs:
                seen = sub.seen
                for q in (sub.ready, sub.retry):
                    total += sum(1 for msg in q if msg.mid not in seen)
                for c in sub.consumers:
                    total += sum(1 for msg in c.unacked.values() if msg.mid not in seen)
        elif self.mode == "pull":
            for sub in self.subs:
                seen = sub.seen
                for part in self.broker.partitions[sub.topic]:
                    total += sum(1 for msg in part.log[part.lost_before:] if msg.mid not in seen)
                for c in sub.consumers:
                    held = list(c.buffer) + ([c.current] if c.current is not None else [])
                    for msg in held:
                        part = self.broker.partitions[msg.topic][msg.partition]
                        if msg.offset < part.lost_before and msg.mid not in seen:
                            total += 1
        else:
            total += self.direct_link.pending()
            for c in self.consumers:
                total += len(c.buffer) + len(c.pending) + (c.current is not None)
        return total

    def metrics(self) -> dict:
        sim = self.sim
        d = sim.duration
        lat = self.latencies
        out = {"throughput": lat.completed / d}
        out.update(latency_metrics(lat.values))
        busy = sum(c.cpu.account.total for c in self.consumers)
        out["consumer_utilization"] = busy / (len(self.consumers) * d)
        out["queue_depth_max"] = max(sub.queue.peak for sub in self.subs)
        window = [sum(s) for t, s in zip(self.samples_t, self.samples_depth) if t >= sim.start]
        out["queue_depth_mean"] = sum(window) / len(window) if window else float("nan")
        out.update(percentiles(self.healthy_latencies, "healthy_latency", qs=(99,), mean=True))
        pl = self.publish_latencies
        out["publish_latency_mean"] = sum(pl) / len(pl) if pl else float("nan")
        blocked = sum(p.blocked_s for p in self.publishers)
        out["publisher_blocked_s"] = blocked
        out["publisher_blocked_fraction"] = blocked / (len(self.publishers) * d)
        for name in ("published", "copies", "processed", "duplicates", "missed",
                     "deliveries", "redeliveries", "consumer_crashes"):
            out[name] = getattr(self, name)
        out["backlog"] = self.backlog_now()
        b = self.broker
        cpu_s = b.cpu.account.total
        out["broker_cpu_s"] = cpu_s
        out["broker_utilization"] = b.cpu.account.utilization()
        out["broker_disk_utilization"] = b.disk.account.utilization() if b.disk is not None else 0.0
        n = lat.completed
        nan = float("nan")
        out["broker_cpu_per_message"] = cpu_s / n if n else nan
        out["bytes_per_message"] = sim.bytes.total / n if n else nan
        out["bytes_publish"] = sim.bytes.bytes_of("publish")
        out["bytes_deliver"] = sim.bytes.bytes_of("deliver", "fetch_response")
        out["bytes_control"] = sim.bytes.bytes_of("ack", "confirm", "fetch", "commit")
        out["broker_restarts"] = b.restarts
        fc = self.fetch_count
        out["fetches"] = fc
        out["empty_fetches"] = self.empty_fetches
        out["fetch_latency_mean"] = self.fetch_latency_sum / fc if fc else nan
        out["fetch_hold_mean"] = self.fetch_hold_sum / fc if fc else nan
        return out

    def in_flight(self) -> int:
        return sum(link.pending() for link in self.links)


def figures(result, out_dir):
    from commsim.figures.pubsub import pubsub_figures

    return pubsub_figures(result, out_dir)


PATTERN = Pattern(
    name="pubsub",
    summary="publishers, a broker and subscribers: push with prefetch vs pull with long-poll "
            "fetch vs direct; fan-out, slow and crashing consumers, broker restarts",
    model=PubSub,
    sections=("pubsub",),
    figures=figures,
)
