"""WebSocket: push with application heartbeats through an idle-dropping
intermediary.

The question: a NAT or load balancer between clients and server silently
forgets a connection that carried nothing for ``websocket.idle_timeout``;
application heartbeats (ping/pong every ``ping_interval``) keep connections
alive and detect dead ones, at a cost in bytes and server CPU.  What do the
heartbeats cost against the reconnects (handshakes) and the updates they save?

Built only from the parts: the push stream of
:mod:`commsim.patterns.notifications.streaming` (connections, frames, the
client queue, offline periods, reconnects), the links of the one factory
(every ``network`` key applies as in push), the one handshake module (a
handshake per reconnect), the server :class:`~commsim.nodes.Cpu` and the
shared workload.

Model and assumptions (beside push's, ``docs/websocket.md``)
-------------------------------------------------------------
* **Intermediary** at the server's edge: a connection's activity is a
  frame leaving the server (update or ping) or a pong reaching it.  When the
  connection has been silent for ``idle_timeout`` the intermediary forgets
  it, telling neither end (``idle_drops``).
* **Heartbeats** (``ping_interval`` not null): the server pings every
  connection every ``ping_interval`` from its opening (a ``ping_size``
  frame; ``heartbeat_cpu`` of server CPU), the client answers with a pong
  (``pong_size``; ``heartbeat_cpu`` again when it arrives).
* **Detection**: the server learns a connection is dead when it next sends
  on it (update or ping): the intermediary answers with a reset, nothing
  reaches the client, an update sent is lost (``missed``).  The client
  learns when a ping is overdue by ``pong_timeout`` (its watchdog runs on the
  server's ping schedule); without heartbeats it never learns (a "zombie"
  connection) until it goes offline and comes back.
* **Reconnect with backoff**: the k-th consecutive reconnect waits
  ``min(retry_max, retry x backoff^(k-1))``; k resets when a connection
  proves healthy (the client receives a ping or an update on it).
"""

from __future__ import annotations

from commsim.config.schema import Field, Section, register_section
from commsim.engine.simulation import call_later
from commsim.metrics import websocket as _defs  # noqa: F401  (defines the metrics)
from commsim.network import Message
from commsim.patterns.base import Pattern
from commsim.patterns.notifications import STREAM_IGNORES, STREAM_NETWORK
from commsim.patterns.notifications import _check as _notification_check
from commsim.patterns.notifications.base import _MEM, _WORKLOAD, SERVER
from commsim.patterns.notifications.streaming import _Streaming

register_section(Section("websocket", {
    "request_header": Field("size", "500B", "header bytes of the upgrade request", min=0),
    "response_header": Field("size", "150B", "header bytes of the upgrade response", min=0),
    "frame_overhead": Field("size", "4B", "frame header bytes per update (WebSocket: 2-14)", min=0),
    "connection_memory": _MEM,
    "ping_interval": Field("duration", "30s", "time between two server pings on a connection "
                           "(null: no heartbeats)", min=0, min_exclusive=True, nullable=True),
    "ping_size": Field("size", "2B", "bytes of a ping frame (server to client, unmasked)", min=0),
    "pong_size": Field("size", "6B", "bytes of a pong frame (client to server, masked)", min=0),
    "pong_timeout": Field("duration", "5s", "how long after a missed ping the client gives the "
                          "connection up", min=0),
    "heartbeat_cpu": Field("duration", "20us", "server CPU per ping sent and per pong received",
                           min=0),
    "idle_timeout": Field("duration", "60s", "an intermediary forgets a connection silent this "
                          "long (null: no intermediary)", min=0, min_exclusive=True, nullable=True),
    "retry": Field("duration", "1s", "wait before the first reconnect after a detected drop",
                   min=0),
    "backoff": Field("number", 2, "factor by which each consecutive reconnect's wait grows",
                     min=1),
    "retry_max": Field("duration", "30s", "longest wait before a reconnect", min=0),
}, doc="Push over WebSocket with ping/pong heartbeats, an idle-dropping NAT or load "
       "balancer, and reconnects with backoff.", pattern="websocket"))


class WebSocket(_Streaming):
    """Push with heartbeats and an idle-timeout intermediary (module docstring)."""

    pattern = "websocket"

    def __init__(self, sim):
        sec = sim.config["websocket"]
        self.interval = sec["ping_interval"]
        self.idle = sec["idle_timeout"]
        self.ping_size = int(sec["ping_size"])
        self.pong_size = int(sec["pong_size"])
        self.pong_timeout = sec["pong_timeout"]
        self.hb_cpu = sec["heartbeat_cpu"]
        self.retry0, self.retry_factor = sec["retry"], sec["backoff"]  # factor: not topology's
        self.retry_max = sec["retry_max"]
        n = sim.config["clients"]["count"]
        self.dead = bytearray(n)        # forgotten by the intermediary, server unaware
        self.last_act = [0.0] * n       # last activity seen by the intermediary
        self.opened_at = [0.0] * n
        self.failures = [0] * n         # consecutive reconnects without a healthy connection
        self.idle_drops = 0
        self.lifetimes: list = []
        super().__init__(sim)

    # ---------------------------------------------------------- connection --
    def _opened(self, token, wait) -> None:
        c = token[0]
        no = self.conn_no[c]
        super()._opened(token, wait)
        if self.conn_no[c] == no:  # the client left while connecting
            return
        now = self.env.now
        self.dead[c] = 0
        self.last_act[c] = self.opened_at[c] = now
        no = self.conn_no[c]
        if self.idle is not None:
            call_later(self.env, self.idle, self._idle_check, (c, no))
        if self.interval is not None:
            call_later(self.env, self.interval, self._ping, (c, no))

    def _current(self, c: int, no: int) -> bool:
        return self.open[c] and self.conn_no[c] == no

    def _idle_check(self, event) -> None:
        c, no = event.value
        if not self._current(c, no) or self.dead[c]:
            return
        now = self.env.now
        due = self.last_act[c] + self.idle
        if due > now:  # there was activity since: check again then
            call_later(self.env, due - now, self._idle_check, (c, no))
            return
        self.dead[c] = 1  # silently forgotten
        # by hand: one test guards a count and a lifetime (sampled at its end, not Samples' rule)
        if now >= self.sim.start:
            self.idle_drops += 1
            self.lifetimes.append(now - self.opened_at[c])

    def _server_learns(self, c: int) -> None:
        """A send on a dead connection was reset: the server closes it."""
        self._close(c)
        if self.handshakes:
            self.connector.close(c)
        self.down.forget_stream(c)

    # ---------------------------------------------------------- heartbeats --
    def _ping(self, event) -> None:
        c, no = event.value
        if not self._current(c, no):
            return
        if self.dead[c]:
            self._server_learns(c)
            call_later(self.env, self.pong_timeout, self._client_gives_up, c)
            return
        call_later(self.env, self.interval, self._ping, (c, no))
        self.cpu.submit(self.hb_cpu, "heartbeat", self._send_ping, (c, no))

    def _send_ping(self, token, _wait) -> None:
        c, no = token
        if not self._current(c, no) or self.dead[c]:
            return
        self.last_act[c] = self.env.now
        self.down.send_ordered(Message("ping", SERVER, c, framing=self.ping_size,
                                       created=self.env.now), self._client_ping, c)

    def _client_ping(self, msg) -> None:
        c = msg.dst
        if not self.online[c]:
            return
        self.failures[c] = 0
        self.up.send(Message("pong", c, SERVER, framing=self.pong_size, created=self.env.now,
                             data=self.conn_no[c]), self._server_pong)

    def _server_pong(self, msg) -> None:
        c = msg.src
        if self._current(c, msg.data) and not self.dead[c]:
            self.last_act[c] = self.env.now
            self.cpu.submit(self.hb_cpu, "heartbeat", _noop)

    def _client_gives_up(self, event) -> None:
        c = event.value
        if not self.online[c] or self.open[c] or self.connecting[c]:
            return
        k = self.failures[c]
        self.failures[c] = k + 1
        delay = min(self.retry_max, self.retry0 * self.retry_factor ** k)
        call_later(self.env, delay, self._retry, c)

    # -------------------------------------------------------------- frames --
    def _deliver(self, c: int, created: float, size: int, uid: int) -> None:
        if self.open[c] and self.dead[c]:
            self._server_learns(c)
        super()._deliver(c, created, size, uid)

    def _frame_ready(self, token, wait) -> None:
        c = token[0]
        if self.open[c] and self.dead[c]:  # died while the frame was queued
            self._server_learns(c)
            self._lost(token[1], c, token[2])
            return
        self.last_act[c] = self.env.now
        super()._frame_ready(token, wait)

    def _client_frame(self, msg) -> None:
        if self.online[msg.dst]:
            self.failures[msg.dst] = 0
        super()._client_frame(msg)

    # ------------------------------------------------------------- metrics --
    def metrics(self) -> dict:
        out = super().metrics()
        b = self.sim.bytes
        acct = self.cpu.account.by_purpose
        out["heartbeat_bytes"] = b.bytes_of("ping", "pong")
        out["heartbeat_cpu_s"] = acct.get("heartbeat", 0.0)
        out["handshake_cpu_s"] = acct.get("handshake", 0.0)
        out["idle_drops"] = self.idle_drops
        out["idle_lifetime_mean"] = (sum(self.lifetimes) / len(self.lifetimes)
                                     if self.lifetimes else float("nan"))
        return out


def _noop(_token, _wait) -> None:
    pass


def _model(sim):  # plain, or behind a topology (commsim/patterns/websocket_cluster.py)
    from commsim.patterns.websocket_cluster import model

    return model(sim)


def _figures(result, out_dir):
    from commsim.figures.websocket import figures

    return figures(result, out_dir)


def _check(cfg: dict) -> None:
    _notification_check(cfg)
    sec = cfg["websocket"]
    if sec["retry_max"] < sec["retry"]:
        from commsim.errors import ConfigError

        raise ConfigError("websocket.retry_max", f"got {sec['retry_max']:g}s; must be >= "
                          f"websocket.retry ({sec['retry']:g}s)")


PATTERN = Pattern("websocket", "push over WebSocket with ping/pong heartbeats, an idle-dropping "
                  "NAT or load balancer, and reconnects with backoff", _model,
                  ("websocket", *_WORKLOAD, "topology"), _figures, _check,
                  network=STREAM_NETWORK,  # heartbeats ride the same connection
                  ignores=STREAM_IGNORES)
