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
* **Connections** (``network.handshake``, off by default): every publisher
  and consumer opens a connection to the broker through the one connection
  module (:mod:`commsim.network.connection`): the handshake's flights travel
  on that client's own links (publish/confirm, ack/deliver), the broker
  spends ``network.tls_server_cpu`` per TLS handshake on its own CPU, and the
  client's last flight rides with its first publish or fetch (a push
  consumer sends it alone).  Opened at start, after the consumer's own
  restart and after a broker restart (which resets every connection and
  cuts off handshakes under way).  ``keepalive: false`` (pull only): every
  publish, fetch and commit opens its own connection.
  ``network.idle_timeout``: the broker closes a connection idle that long
  (see :mod:`commsim.patterns.pubsub.consumer` and ``publisher``).
  Connection set-up in ``direct`` mode is refused (no broker).
* **Faults.** ``crash_consumers`` consumers crash at ``crash_at`` and restart
  ``restart_after`` later (losing their buffer; the core finishes the
  message it was on, wasted).  ``slow_consumers`` consumers process
  ``slow_factor`` times slower from ``slow_from`` for ``slow_for``.  The
  broker restarts at ``broker_restart_at`` (see the broker).  Connection
  loss is noticed at once (no heartbeat timeout); reconnection is free
  unless ``network.handshake`` models the connections.
* **Loss.** A message a link gives up on (``network.loss`` beyond
  ``max_retries``) is handled as a broken connection: publishes are resent,
  deliveries and acks redelivered, fetches re-sent, direct copies missed,
  confirms taken as given, commits covered by the next (:meth:`PubSub._dropped`).
* ``backlog`` messages per topic are already stored at t = 0 (an
  always-full queue without publishing them: they are counted in
  ``published`` but put no bytes on the publish link).

* **Records** (``--records`` only): one ``publish`` row per created message
  (creation to confirm: ``ok`` / ``unfinished``) and one ``delivery`` row
  per copy processed (creation to end of processing: ``delivered`` the
  first time, ``duplicate`` again) or lost (``missed``); copies still
  waiting at the end have none (docs/pubsub.md).  Without records the
  plain hooks run (the recording ones are chosen at set-up).

Ledger (whole run): ``copies == processed + missed + backlog`` where
``backlog`` is read off the queues, logs, links and consumer buffers at the
end; ``duplicates`` are repeat processings.  Queue depth is sampled every
``sample_every`` by one callback for the time-series figure.

Package layout: ``config`` (the ``pubsub`` section), ``publisher``,
``consumer``, ``model`` (:class:`PubSub`: topology, links, direct mode,
metrics); the broker is the node :mod:`commsim.nodes.broker`.
"""

from __future__ import annotations

from commsim.errors import ConfigError
from commsim.network.connection import check_idle_timeout
from commsim.patterns.base import CLIENT_QUEUE, CLIENT_QUEUE_WHY, NO_POPULATION, WIRE_COUNTED, Pattern, ignoring
from commsim.patterns.pubsub.config import MODES, SECTION
from commsim.patterns.pubsub.consumer import Consumer
from commsim.patterns.pubsub.model import PubSub
from commsim.patterns.pubsub.publisher import Publisher

__all__ = ["MODES", "SECTION", "Consumer", "PubSub", "Publisher", "PATTERN", "figures"]


def figures(result, out_dir):
    from commsim.figures.pubsub import pubsub_figures

    return pubsub_figures(result, out_dir)


def _check_network(cfg: dict) -> None:
    net = cfg["network"]
    mode = cfg["pubsub"]["delivery"]
    if mode == "direct" and net["handshake"] != "none":
        raise ConfigError("network.handshake", f"got {net['handshake']!r}; delivery: direct has no "
                          "broker, and its publisher-to-subscriber connections are not modelled: "
                          "use none (or delivery: push / pull)")
    if not net["keepalive"] and mode != "pull":
        raise ConfigError("network.keepalive", f"got false; with delivery: {mode} "
                          + ("the broker pushes over each consumer's long-lived connection, so a "
                             "connection per message has no meaning" if mode == "push" else
                             "connections are not modelled") + ": use true (or delivery: pull, "
                          "where every publish, fetch and commit opens its own)")
    check_idle_timeout(cfg)  # needs a handshake and keep-alive


PATTERN = Pattern(
    name="pubsub",
    summary="publishers, a broker and subscribers: push with prefetch vs pull with long-poll "
            "fetch vs direct; fan-out, slow and crashing consumers, broker restarts",
    model=PubSub,
    sections=("pubsub",),
    figures=figures,
    ignores={**ignoring(NO_POPULATION + ("clients.count",), "publishers and subscribers are "
                        "pubsub.topics, publishers, publish_rate, subscribers and group_size"),
             **ignoring(CLIENT_QUEUE, CLIENT_QUEUE_WHY),
             **ignoring(("server.cores", "server.service_time"), "the broker is "
                        "pubsub.broker_cores and broker_cpu_per_message / _per_request; "
                        "consumers take pubsub.processing_time")},
    check=_check_network, network={
        "latency": "pubsub.publish_latency / deliver_latency / ack_latency where set, else "
                   "network.latency on every link",
        "bandwidth": "every publisher, broker and consumer link",
        "loss": "resent after rto; a message given up after max_retries is a broken connection: "
                "publishes are resent, deliveries redelivered, fetches re-sent, a lost direct "
                "copy is missed",
        "connections": "each publisher and consumer opens its connection to the broker (handshake "
                       "over its own links, tls_server_cpu on the broker's CPU) at start and "
                       "after a broker or consumer restart; keepalive: false (pull only): a "
                       "connection per publish, fetch and commit; direct refuses handshake",
        "idle_close": "the broker closes a connection idle for idle_timeout (a push consumer with "
                      "no unacked delivery, a publisher with nothing unconfirmed, a pull consumer "
                      "between fetches); publishers and pull consumers reconnect with their next "
                      "request, push consumers at once",
        "wire": WIRE_COUNTED})
