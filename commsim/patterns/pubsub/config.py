"""The ``pubsub`` configuration section and its cross-key checks."""

from __future__ import annotations

from commsim.config.schema import Field, Section, register_section
from commsim.errors import ConfigError

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
