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
  by :class:`~commsim.accounting.bytes.ByteCounter`).  Connection set-up
  handshakes are not modelled (``network.handshake`` must be ``none``).
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
from commsim.patterns.base import Pattern
from commsim.patterns.notifications.base import _WORKLOAD
from commsim.patterns.notifications.polling import LongPolling, ShortPolling
from commsim.patterns.notifications.streaming import Push, ServerSentEvents


def _figures(result, out_dir):
    from commsim.figures.notifications import figures

    return figures(result, out_dir)


def _check(cfg: dict) -> None:
    """What these models do not cover is refused at load time (exit 2)."""
    net = cfg["network"]
    if net["handshake"] != "none":
        raise ConfigError("network.handshake", f"got {net['handshake']!r}; the notification "
                          "patterns do not model handshakes: use none")
    if net["loss"] > 0:
        raise ConfigError("network.loss", f"got {net['loss']!r}; the notification patterns do not "
                          "model lost messages (a poll, frame or connect given up on by the link "
                          "would go unnoticed): use 0")


PATTERNS = [
    Pattern("short_polling", "clients ask every interval; the server answers at once, empty "
            "or with everything pending", ShortPolling, ("short_polling", *_WORKLOAD), _figures, _check),
    Pattern("long_polling", "the server holds each poll until an update or a timeout; the client "
            "re-polls on every response", LongPolling, ("long_polling", *_WORKLOAD), _figures, _check),
    Pattern("sse", "server-sent events: one request, an unending response of event frames, "
            "reconnects with or without resume", ServerSentEvents, ("sse", *_WORKLOAD), _figures, _check),
    Pattern("push", "a persistent bidirectional connection; the server sends as updates happen",
            Push, ("push", *_WORKLOAD), _figures, _check),
]
