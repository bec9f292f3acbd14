"""WebSocket behind a topology: N instances, a load balancer, crashes.

Built only when :func:`commsim.nodes.cluster.active` says the config asks for
a cluster (the default is the plain :class:`~commsim.patterns.websocket.WebSocket`,
bit-identical).  :class:`ClusteredWebSocketParts` is the push mixin
:class:`~commsim.patterns.notifications.clustered.ClusteredStreaming` (routing
of every (re)connect, frames and TLS on the picked instance, crash resets,
the ``topology`` series and storm latencies) plus what heartbeats and the
idle-dropping intermediary add.

Model and assumptions (beside push's behind a topology, docs/topologies.md)
---------------------------------------------------------------------------
* Heartbeats run on the instance that holds the connection: the ping's and
  the pong's ``heartbeat_cpu`` go to its CPU (``heartbeat_cpu_s`` sums over
  instances).  A ping job lost in a crashed instance's CPU is simply gone
  (the connection it was for is reset).
* The idle-dropping intermediary sits between the clients and the
  instances (the load balancer's connection table, or a NAT before it);
  ``idle_timeout`` applies as without a topology.
* **A crash** resets, as for push, every stream the instance held and every
  connect in progress to it: the client gets the reset after the frames on
  the wire.  A reset is a *detected drop* for WebSocket: the client
  reconnects after its own back-off (``websocket.retry`` x
  ``backoff``^k, at most ``retry_max``; k counts consecutive reconnects
  without a healthy connection) plus uniform [0, ``topology.reconnect_jitter``],
  through the balancer, to a survivor.  Updates of the outage are missed
  (no server-side queue).
* A connection the intermediary had already forgotten (silent longer than
  ``idle_timeout``, the server not yet aware) gets **no** reset: the
  intermediary has no state to send it through.  The client learns as
  without a crash, by its watchdog: ``pong_timeout`` after the ping that
  would have come next on the server's schedule; without heartbeats it stays
  a zombie until it goes offline.  It is not counted in ``crash_resets``.
"""

from __future__ import annotations

import math

from commsim.engine.events import call_later, value_of
from commsim.patterns.notifications.clustered import ClusteredStreaming


class ClusteredWebSocketParts(ClusteredStreaming):
    """Mixin: put before :class:`~commsim.patterns.websocket.WebSocket`."""

    def _on_instance(self, c, method, arg) -> None:
        """Run ``method(arg)`` with ``self.cpu`` the CPU of the instance that
        holds client ``c``'s connection (the base submits heartbeats to
        ``self.cpu``)."""
        s = self.assigned[c]
        if s is None:
            method(arg)
            return
        cpu = self.cpu
        self.cpu = s.cpu
        try:
            method(arg)
        finally:
            self.cpu = cpu

    def _ping(self, event) -> None:
        self._on_instance(value_of(event)[0], super()._ping, event)

    def _server_pong(self, msg) -> None:
        self._on_instance(msg.src, super()._server_pong, msg)

    def _client_reset(self, msg) -> None:
        """A crash reset reached the client: a detected drop, reconnect with
        WebSocket's back-off (plus the topology's jitter)."""
        c = msg.dst
        if not self.online[c]:
            return
        k = self.failures[c]
        self.failures[c] = k + 1
        delay = min(self.retry_max, self.retry0 * self.retry_factor ** k)
        if self._jitter is not None:
            delay += self._jitter()
        call_later(self.env, delay, self._retry, c)

    def _server_crashed(self, s) -> None:
        # Connections the intermediary had forgotten: no reset reaches their
        # clients; they find out by their watchdog (module docstring).
        now = self.env.now
        for c in range(self.n):
            if self.assigned[c] is not s or not self.open[c] or not self.dead[c]:
                continue
            self.open[c] = 0
            self._conn(-1)
            self.gen[c] += 1
            self._release(c)
            if self.handshakes:
                self.connector.close(c)
            self.down.forget_stream(c)
            if self.interval is not None:
                t0 = self.opened_at[c]
                due = t0 + max(1, math.ceil((now - t0) / self.interval)) * self.interval
                call_later(self.env, due - now + self.pong_timeout, self._client_gives_up, c)
        super()._server_crashed(s)

    def metrics(self) -> dict:
        out = super().metrics()
        out["heartbeat_cpu_s"] = sum(s.cpu.account.by_purpose.get("heartbeat", 0.0)
                                     for s in self.cluster.servers)
        return out


def model(sim):
    """The model factory of ``websocket``: plain, or behind a topology."""
    from commsim.nodes import cluster
    from commsim.patterns.websocket import WebSocket

    if not cluster.active(sim.config):
        return WebSocket(sim)
    global _CLUSTERED
    if _CLUSTERED is None:
        _CLUSTERED = type("ClusteredWebSocket", (ClusteredWebSocketParts, WebSocket), {})
    return _CLUSTERED(sim)


_CLUSTERED = None
