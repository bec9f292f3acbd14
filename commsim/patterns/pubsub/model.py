"""The pubsub model: topology, links, the direct (broker-less) mode, loss
handling and metrics (assumptions in the package docstring)."""

from __future__ import annotations

from commsim.metrics import pubsub as _pubsub_metrics  # noqa: F401  (defines the metrics)
from commsim.engine import call_later
from commsim.engine.recorder import DELIVERED, DELIVERY, DUPLICATE, MISSED
from commsim.metrics.collect import Latencies, latency_metrics, percentiles
from commsim.network import Link, Message
from commsim.network.connection import Connections
from commsim.nodes.broker import Broker, Msg, Subscription
from commsim.nodes.faults import FaultPlan
from commsim.patterns.pubsub.consumer import Consumer
from commsim.patterns.pubsub.publisher import Publisher, RecordedPublisher

NAN = float("nan")


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
        self.deliveries = 0  # direct mode (the broker counts its own)
        self.fetch_count = 0
        self.empty_fetches = 0
        self.fetch_latency_sum = 0.0
        self.fetch_hold_sum = 0.0
        self.latencies = Latencies(sim)
        self.publish_latencies: list[float] = []
        self.healthy_latencies: list[float] = []  # subscriptions without a faulty consumer
        # Per-operation records (commsim run --records), None unless asked for:
        # then processings and publishes go through recording variants (set
        # here, so a run without records runs exactly the plain code).
        self.ops = sim.recorder.ops("pubsub") if sim.recorder.records else None
        if self.ops is not None:
            self.processed_copy = self._processed_copy_recorded

        topics = cfg["topics"]
        group = cfg["group_size"]
        partitions = cfg["partitions"] or group
        self.consumer_faults = FaultPlan(sim, downtime=cfg["restart_after"])
        brokered = self.mode != "direct"
        self.broker = Broker(sim, cfg, self.mode,
                             confirm_link=self.confirm_link if brokered else None,
                             deliver_link=self.deliver_link if brokered else None,
                             on_stored=self.accept)
        self.broker.ops = self.ops
        # Connections to the broker (network.handshake; direct refuses it):
        # the one connection module over each side's own links, TLS CPU on
        # the broker's CPU.  None: not modelled (the default), nothing changes.
        self.pub_conns = self.sub_conns = None
        if brokered and net["handshake"] != "none":
            b = self.broker
            self.pub_conns = Connections(sim, _Hops(self.publish_link, self.confirm_link), b.cpu,
                                         server="broker")
            self.sub_conns = Connections(sim, _Hops(self.control_link, self.deliver_link), b.cpu,
                                         server="broker")
            self.sub_conns.on_idle_close = _consumer_idle_closed
            b.connections = (self.pub_conns, self.sub_conns)
            b.consumer_conns = self.sub_conns
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
                self.broker.add_subscription(sub)
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
        publisher_class = Publisher if self.ops is None else RecordedPublisher
        for t in range(topics):
            for _ in range(cfg["publishers"]):
                i = len(self.publishers)
                gap = sim.sampler(gap_spec, f"pubsub/arrivals/{i}")
                size = sim.sampler(cfg["message_size"], f"pubsub/size/{i}", "size")
                pub = publisher_class(self, i, t, gap, size, cfg["publish_for"])
                self.publishers.append(pub)
                self.broker.add_publisher(pub)

        # Preloaded backlog.
        backlog_size = sim.sampler(cfg["message_size"], "pubsub/backlog_size", "size")
        for t in range(topics):
            for _ in range(cfg["backlog"]):
                self.next_mid += 1
                self.broker.store(Msg(self.next_mid, t, int(backlog_size()), 0.0, None))

        # Consumers start.
        for c in self.consumers:
            if self.mode == "push" and self.sub_conns is not None:
                c.connect()
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

    def processed_copy(self, c: Consumer, msg: Msg) -> None:
        """Consumer ``c`` finished processing its subscription's copy of ``msg``."""
        sub = c.sub
        if msg.mid in sub.seen:
            self.duplicates += 1
            return
        sub.seen.add(msg.mid)
        self.processed += 1
        self.latencies.record(msg.created)
        if sub.healthy and msg.created >= self.sim.start and self.env.now >= self.sim.start:
            self.healthy_latencies.append(self.env.now - msg.created)

    def _processed_copy_recorded(self, c: Consumer, msg: Msg) -> None:
        """processed_copy that also records the copy's delivery row (records on only)."""
        dup = msg.mid in c.sub.seen
        self.ops.record(DELIVERY, msg.created, self.env.now, c.idx, msg.size,
                        DUPLICATE if dup else DELIVERED)
        PubSub.processed_copy(self, c, msg)

    def lost_row(self, msg: Msg, client: int) -> None:
        """Record a copy of ``msg`` lost for consumer ``client`` (-1: none);
        callers test ``self.ops`` first, so this runs only with records on."""
        self.ops.record(DELIVERY, msg.created, NAN, client, msg.size, MISSED)

    def _dropped(self, wire) -> None:
        """A link gave up on ``wire`` (loss beyond max_retries): the
        endpoints react as a broken connection makes them (the message is in
        the link ledger's ``dropped``)."""
        kind = wire.kind
        data = wire.data
        if kind == "handshake":
            if data is not None:
                data.resend()  # a handshake flight: its sender sends it again
            return
        if kind in ("fetch", "fetch_response") and self.sub_conns is not None:
            c = data.consumer if kind == "fetch" else data[0].consumer
            self.sub_conns.done(c)  # that exchange is over
        if kind == "publish":
            data.publisher.refused(data)  # resent (idempotent publishing)
        elif kind == "confirm":
            if data.publisher is not None:
                data.publisher.confirmed(data)  # a resend would be deduplicated, then confirmed
        elif kind == "deliver" and self.mode == "direct":
            self.missed += 1
            if self.ops is not None:
                self.lost_row(data, wire.dst.idx)
            self.copy_done(data)
        elif kind == "ack" and self.mode == "direct":
            self.copy_done(data)
        elif kind in ("deliver", "ack"):
            # The broker gives the message to the group again (a redelivery).
            self.broker.redeliver(data[0], data[1], data[2])
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
                if self.ops is not None:
                    self.lost_row(msg, -1)  # no consumer of the subscription online
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

    def warmup_series(self):
        """``warmup: auto``'s output series (:mod:`commsim.experiment.warmup`):
        each delivered copy's latency, publish to its consumer, in order of
        delivery."""
        return self.latencies.values

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
        b = self.broker
        for name in ("published", "copies", "processed", "duplicates"):
            out[name] = getattr(self, name)
        out["missed"] = self.missed + b.missed
        out["deliveries"] = self.deliveries + b.deliveries
        out["redeliveries"] = b.redeliveries
        out["consumer_crashes"] = sum(c.crashes for c in self.consumers)
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
        if self.pub_conns is not None:
            both = (self.pub_conns, self.sub_conns)
            out["connections_opened"] = sum(c.opened for c in both)
            out["handshakes"] = sum(c.handshakes for c in both)
            out.update(self.sub_conns.metrics())  # one recorder counter for both sides
        return out

    def in_flight(self) -> int:
        return sum(link.pending() for link in self.links)


class _Hops:
    """The two links one side's connections run over (``up``: to the broker)."""

    __slots__ = ("up", "down")

    def __init__(self, up: Link, down: Link):
        self.up = up
        self.down = down


def _consumer_idle_closed(consumer) -> None:
    consumer.idle_closed()
