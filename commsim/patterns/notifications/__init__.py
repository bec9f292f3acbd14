"""Notification patterns: short polling, long polling, server-sent events, push.

A package: :mod:`.base` (sections, the shared :class:`_Base`),
:mod:`.polling` (short and long polling), :mod:`.streaming` (SSE and push).

The question: a server produces updates (:mod:`commsim.workload`); how should
clients learn of them, and what does each choice cost?  The four patterns
are driven by the same workload (common random numbers), so a sweep over
``pattern`` compares them on identical updates.

Model and assumptions (all patterns)
------------------------------------
* Topology: the shared :class:`~commsim.network.Network` (``up`` and
  ``down`` links; every message goes through them, so every byte is counted
  by :class:`~commsim.accounting.bytes.ByteCounter`), built by the one
  link factory, so every ``network`` key applies: loss with retransmission
  after the RTO (a message the link gives up on is re-sent by its sender),
  frames of a stream in order (head-of-line blocking), bandwidth as the
  server's access link.  Handshakes (``network.handshake``) use the one
  handshake module :class:`~commsim.network.connection.Connections`: per
  poll without keep-alive, per online period with it, per (re)connect for
  SSE and push; ``network.keepalive: false`` is refused for SSE and push.
* Server: a :class:`~commsim.nodes.Cpu` with ``server.cores`` cores; every
  message the server *sends* (a poll response, a stream's opening response,
  one event frame, a job handle) costs one ``server.service_time`` of CPU,
  accounted by :class:`~commsim.accounting.cpu.CpuAccount` under a purpose
  (``poll``, ``connect``, ``event``, ``job``).  A poll response or an opening
  response that carries no update is *wasted* CPU.
* Latency of an update: from its creation at the server to its arrival at
  the client (``latency_*``), for updates created inside the window.
* Memory: each open connection holds ``<pattern>.connection_memory`` bytes
  at the server; ``server_memory_max`` = ``connections_max`` x that.
* Client processing (``clients.service_time``, ``clients.buffer``) applies
  to the streaming patterns (``sse``, ``push``), where updates arrive
  unasked: each client is a FIFO single server with ``buffer`` waiting
  slots (an M/G/1/K queue with K = buffer + 1 under Poisson arrivals);
  arrivals that find it full are dropped (``missed``).  Polling clients
  take updates only when they ask, so they never overflow.
* Offline clients (``workload.online_time``) send nothing.  A response or
  frame that reaches an offline client is lost (``missed``), except that
  SSE with ``resume`` replays it after the reconnect (the Last-Event-ID the
  client sends names the last update it actually got).
* Jobs: the submission is a request (``<pattern>.request_header`` +
  ``workload.job_request``) answered at once with a header-only handle;
  the job's completion is an update for its client.

Per-pattern assumptions are in each class docstring and in
``docs/notifications.md``.
"""

from __future__ import annotations

from commsim.errors import ConfigError
from commsim.network.connection import check_idle_timeout
from commsim.patterns.base import (CLIENT_QUEUE, CLIENT_QUEUE_WHY, IDLE_CLOSE, NO_POPULATION,
                                   WIRE_COUNTED, Pattern, ignoring)
from commsim.patterns.notifications.base import _WORKLOAD
from commsim.patterns.notifications.long_polling import LongPolling
from commsim.patterns.notifications.polling import ShortPolling
from commsim.patterns.notifications.streaming import Push, ServerSentEvents
from commsim.nodes import cluster
from commsim.patterns.notifications.clustered import ClusteredStreaming
from commsim.patterns.notifications.clustered_polling import ClusteredLongPolling, ClusteredPolling
from commsim.patterns.notifications.mesh_polling import MeshLongPolling, MeshPolling
from commsim.patterns.notifications.mesh_streaming import MeshStreaming


def _composable(cls, mixin=ClusteredStreaming, mesh=None):
    """The pattern's model factory: the plain class, or with a non-default
    ``topology`` the class behind N instances and a load balancer (with
    ``topology.sidecar``: the ``mesh`` mixin's, commsim/patterns/notifications/mesh_polling.py)."""
    composed = type(f"Clustered{cls.__name__}", (mixin, cls), {})
    meshed = type(f"Mesh{cls.__name__}", (mesh, cls), {}) if mesh is not None else None

    def model(sim):
        if meshed is not None and cluster.active(sim.config) \
                and sim.config["topology"]["sidecar"] == "sidecar":
            return meshed(sim)
        return (composed if cluster.active(sim.config) else cls)(sim)

    model.__doc__ = cls.__doc__
    return model


def _figures(result, out_dir):
    if any(cluster.active(p.config) for p in result.experiment.points):
        from commsim.figures.reconnect_storm import figures as storm

        return storm(result, out_dir)
    from commsim.figures.notifications import figures

    return figures(result, out_dir)


def _check(cfg: dict) -> None:
    """What these models do not cover is refused at load time (exit 2)."""
    net = cfg["network"]
    check_idle_timeout(cfg, _IDLE_REFUSED.get(cfg["pattern"]))
    if cfg["pattern"] in ("sse", "push", "websocket") and not net["keepalive"]:
        raise ConfigError("network.keepalive", f"got false; {cfg['pattern']} keeps one long-lived "
                          "connection per client and every (re)connect opens a new one "
                          "(with its handshake), so there is no later request to reuse a "
                          "connection for: use true")
    if cfg["pattern"] in cluster.COMPOSED and cluster.active(cfg):
        cluster.check_sidecar(cfg)  # topology.sidecar
        if cfg["pattern"] in ("short_polling", "long_polling") and not net["keepalive"]:
            raise ConfigError("network.keepalive", f"got false; behind a topology "
                              f"{cfg['pattern']} pins each client's kept-alive connection to one "
                              "instance; a connection per poll is not routed: use true")
        if cfg["pattern"] == "short_polling":
            cluster.refuse_unused(cfg, ("reconnect_jitter", "reconnect_backoff"),
                                  "its clients poll on schedule: a reset connection is "
                                  "re-opened by the next poll")
        if cfg["workload"]["job_rate"] > 0:
            raise ConfigError("workload.job_rate", f"got {cfg['workload']['job_rate']:g}/s; jobs "
                              "are not modelled behind a topology (a job lives on one instance "
                              "and its fate in a crash is not defined here): use 0")

def _network(loss: str, connections: str, idle_close: str = "") -> dict:
    """What the ``network`` keys do in a notification pattern (docs/patterns.md)."""
    return {"latency": "every client-server hop, each direction",
            "bandwidth": "the server's access link, each direction",
            "loss": loss, "connections": connections, "wire": WIRE_COUNTED,
            "idle_close": idle_close or "refused: " + _IDLE_REFUSED["sse"]}


#: Why network.idle_timeout is refused where it is (short polling takes it).
_IDLE_REFUSED = {
    "long_polling": "a long-polling client sends its next poll as soon as a response arrives, "
                    "so its connection is never idle (a held poll is a request in progress)",
    **dict.fromkeys(("sse", "push", "websocket"), "a server closing a silent stream is not "
                    "modelled (a stream is a connection in use); websocket.idle_timeout models "
                    "an intermediary that drops connections silent for that long"),
}


#: Polling: request/response exchanges; streaming: one long-lived connection.
POLL_NETWORK = _network(
    "a lost poll or response is resent after rto (its latency and bytes grow geometrically); "
    "one given up after max_retries is sent again by its sender, so no update is lost to the "
    "network",
    "a handshake per poll without keep-alive, once per online period with it; tls_server_cpu "
    "per TLS handshake; behind a topology keepalive: false is refused", IDLE_CLOSE)
LONG_POLL_NETWORK = {**POLL_NETWORK, "idle_close": "refused: " + _IDLE_REFUSED["long_polling"]}
STREAM_NETWORK = _network(
    "a lost frame is resent after rto and the frames behind it on that connection wait "
    "(head-of-line); one given up after max_retries is sent again by its sender",
    "a handshake per (re)connect, tls_server_cpu per TLS handshake; keepalive: false is refused "
    "(a stream has no later request to reuse its connection for)")

#: clients/server keys the four patterns do not read (refused when set)
_OWN_SCHEDULE = ("a notification client asks on the pattern's own schedule: every interval, "
                 "again on each response, or once for a stream")
STREAM_IGNORES = ignoring(NO_POPULATION, _OWN_SCHEDULE)
POLL_IGNORES = {**STREAM_IGNORES, **ignoring(CLIENT_QUEUE, CLIENT_QUEUE_WHY + "; a polling client "
                                             "takes updates only when it asks")}


PATTERNS = [
    Pattern("short_polling", "clients ask every interval; the server answers at once, empty "
            "or with everything pending", _composable(ShortPolling, ClusteredPolling, MeshPolling),
            ("short_polling", *_WORKLOAD, "topology"), _figures, _check, POLL_NETWORK, POLL_IGNORES),
    Pattern("long_polling", "the server holds each poll until an update or a timeout; the client "
            "re-polls on every response",
            _composable(LongPolling, ClusteredLongPolling, MeshLongPolling),
            ("long_polling", *_WORKLOAD, "topology"), _figures, _check, LONG_POLL_NETWORK,
            POLL_IGNORES),
    Pattern("sse", "server-sent events: one request, an unending response of event frames, "
            "reconnects with or without resume", _composable(ServerSentEvents, mesh=MeshStreaming),
            ("sse", *_WORKLOAD, "topology"), _figures, _check, STREAM_NETWORK, STREAM_IGNORES),
    Pattern("push", "a persistent bidirectional connection; the server sends as updates happen",
            _composable(Push, mesh=MeshStreaming), ("push", *_WORKLOAD, "topology"), _figures, _check,
            STREAM_NETWORK, STREAM_IGNORES),
]
