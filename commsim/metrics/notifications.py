"""Metrics of the notification patterns (short/long polling, SSE, push).

``latency_*`` (defined by the foundation) is, for these patterns, the time
from an update's creation at the server to its arrival at the client, over
updates created inside the window.
"""

from __future__ import annotations

from commsim.metrics import define

define("updates_created", "1", "updates (including job notices; broadcasts once per client) "
       "created for clients inside the window")
define("updates_delivered", "1", "updates created inside the window that reached their client "
       "by the end of the run")
define("empty_responses", "1", "poll responses in the window that carried nothing new")
define("empty_fraction", "fraction", "empty_responses / poll responses in the window "
       "(NaN for patterns without polls)")
define("connections_max", "1", "most connections open at the server at once "
       "(kept-alive, held or streaming)")
define("server_memory_max", "B", "most server memory held by open connections at once "
       "(connections x <pattern>.connection_memory)")
define("reconnects", "1", "connections re-opened in the window after a drop or an offline period")
define("jobs", "1", "job notices that reached their client in the window")
define("polls_per_job", "1", "mean number of polls a client sent between submitting a job "
       "and receiving its notice (0 for SSE and push)")
define("job_notify_delay", "s", "mean time from a job's completion to the client learning of it")
define("poll_rtt_mean", "s", "mean time from a client sending a poll (before any handshake) to "
       "its response arriving, polls sent in the window (long polling: includes the hold; "
       "NaN for SSE and push)")
# Notification honesty (issue 12 item 9): how much arrives, and when it is processed.
define("delivery_ratio", "1", "updates_delivered / updates_created: the share of the window's "
       "updates that reached their client by the end of the run (NaN: none created)")
define("process_time_mean", "s", "streaming patterns (sse, push, websocket): mean time from an "
       "update's creation to the end of its processing at the client (arrival + queueing at "
       "the client + clients.service_time), beside latency_* (time to arrive); NaN for polling")
define("process_time_p50", "s", "median of process_time")
define("process_time_p95", "s", "95th percentile of process_time")
define("process_time_p99", "s", "99th percentile of process_time")
