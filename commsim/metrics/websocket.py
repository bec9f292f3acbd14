"""Metrics of the ``websocket`` pattern: what heartbeats cost and what the
idle-dropping intermediary does (beside the notification metrics)."""

from __future__ import annotations

from commsim.metrics import define

define("heartbeat_bytes", "B", "bytes of ping and pong frames put on the wire in the window")
define("heartbeat_cpu_s", "s", "server CPU spent on heartbeats in the window (pings sent, "
       "pongs received)")
define("handshake_cpu_s", "s", "server CPU spent on TLS handshakes in the window "
       "(network.tls_server_cpu per handshake)")
define("idle_drops", "1", "connections an intermediary forgot in the window because they were "
       "silent for websocket.idle_timeout")
define("idle_lifetime_mean", "s", "mean time from a connection opening to its idle drop, over "
       "the drops in the window (NaN: none)")
