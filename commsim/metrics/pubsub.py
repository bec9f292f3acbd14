"""Metrics of the publish/subscribe family (``commsim.patterns.pubsub``).

A *copy* is one message for one subscription: a message published to a topic
with S subscriptions makes S copies.  The message ledger covers the whole
run (like the link ledger) so that it balances exactly at the end::

    copies == processed + missed + backlog

where ``duplicates`` (repeat processings) are counted apart from
``processed`` (first processings).  Rates, latencies, utilisations and bytes
cover the measurement window.

``missed`` and ``duplicates`` are shared with the notification family and
defined once, in :mod:`commsim.metrics`.
"""

from __future__ import annotations

from commsim.metrics import define

define("published", "1", "messages accepted for delivery in the whole run (by the broker; "
       "direct: sent by a publisher); the preloaded backlog included")
define("copies", "1", "message copies owed to subscriptions in the whole run "
       "(published x subscriptions of the message's topic)")
define("processed", "1", "copies processed by a subscriber for the first time in the whole run")
define("backlog", "1", "copies neither processed nor missed when the run ended "
       "(queued, in flight or in a consumer's buffer)")
define("deliveries", "1", "copies sent to consumers in the whole run, redeliveries included")
define("redeliveries", "1", "deliveries of a copy that had been delivered to its "
       "subscription before (requeued after a crash, or re-fetched after a replay)")
define("healthy_latency_mean", "s", "mean publish -> processed latency of the subscriptions "
       "that have no slow or crashing consumer (what a fault costs the others)")
define("healthy_latency_p99", "s", "99th percentile of the healthy subscriptions' latency")
define("consumer_utilization", "fraction", "mean fraction of the consumers' core-time spent processing "
       "in the window (down time included in the denominator)")
define("queue_depth_max", "1", "largest number of copies waiting for one subscription in the "
       "window: push: ready + unacked at the broker; pull: log end - committed offset; "
       "direct: in the subscriber's receive buffer")
define("queue_depth_mean", "1", "mean over the periodic samples (pubsub.sample_every) of the "
       "queue depth summed over subscriptions")
define("publish_latency_mean", "s", "mean time from a message's creation at its publisher to "
       "the publisher's confirmation (broker confirm; direct: every subscriber's ack)")
define("publisher_blocked_s", "s", "publisher-seconds with a message waiting to be sent "
       "(window of unconfirmed messages full, or broker down)")
define("publisher_blocked_fraction", "fraction", "publisher_blocked_s / (publishers x duration)")
define("broker_cpu_s", "s", "CPU-seconds the broker spent in the window")
define("broker_utilization", "fraction", "fraction of the broker's core-time busy in the window")
define("broker_disk_utilization", "fraction", "fraction of the window the broker's disk spent in fsync")
define("broker_cpu_per_message", "s", "broker CPU-seconds per copy processed in the window")
define("bytes_per_message", "B", "bytes on the wire (all links, all kinds) per copy processed "
       "in the window")
define("bytes_publish", "B", "bytes of publish messages (publisher to broker) in the window")
define("bytes_deliver", "B", "bytes of deliveries and fetch responses (to subscribers; direct: "
       "publisher to subscriber) in the window")
define("bytes_control", "B", "bytes of acks, confirms, fetch requests and offset commits in the window")
define("fetches", "1", "fetch responses received by pull consumers in the window")
define("empty_fetches", "1", "fetch responses that carried no message, in the window")
define("fetch_latency_mean", "s", "mean time from sending a fetch to receiving its response (window)")
define("fetch_hold_mean", "s", "mean time the broker held a fetch before answering (window)")
define("broker_restarts", "1", "broker restarts in the window")
define("consumer_crashes", "1", "consumer crashes in the window")
