"""Every metric commsim reports is defined here, once: name, unit, meaning.

Patterns compute metrics with the helpers in :mod:`commsim.metrics.collect`
and may only report names defined here (the runner checks), so a column name
in ``runs.csv`` always has one definition.  Pattern families add their own
definitions with :func:`define` in their metrics module
(``commsim/metrics/<family>.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    doc: str
    module: str = ""  # the module that defined it (its family), for the reference




METRICS: dict[str, Metric] = {}


def define(name: str, unit: str, doc: str) -> Metric:
    """Define a metric; defining the same name twice is an error."""
    if name in METRICS:
        raise RuntimeError(f"metric {name!r} defined twice")
    import sys

    module = sys._getframe(1).f_globals.get("__name__", "")
    METRICS[name] = m = Metric(name, unit, doc, module)
    return m


# ------------------------------------------------------------ foundation ----
define("throughput", "1/s", "operations completed per second in the window "
       "(an operation is one client request, or one whole chunked upload)")
define("latency_mean", "s", "mean time from a client's request to its response "
       "(operations started in the window); notification patterns: event creation to arrival")
define("latency_p50", "s", "median of the latency")
define("latency_p90", "s", "90th percentile of the latency")
define("latency_p95", "s", "95th percentile of the latency")
define("latency_p99", "s", "99th percentile of the latency")
define("latency_trend", "1", "mean latency of the later half of the window's latency samples (in "
       "the order they completed) over that of the earlier half: about 1 in steady state, above 1 "
       "when latency rises with time (a queue building up); NaN below 40 samples. Used by the "
       "stability check (docs/metrics.md)")
define("wait_mean", "s", "mean time a request queued at the server before its service started")
define("server_utilization", "fraction", "fraction of the server's core-time busy in the window")
define("requests", "1", "request messages sent in the window")
define("responses", "1", "response messages sent in the window")
define("bytes_total", "B", "bytes put on the wire in the window, all categories, retransmissions included")
define("bytes_header", "B", "header bytes in the window")
define("bytes_payload", "B", "payload (body) bytes in the window")
define("bytes_framing", "B", "stream framing bytes in the window")
define("bytes_handshake", "B", "connection set-up bytes in the window")
define("bytes_retransmitted", "B", "bytes of retransmissions in the window (included in bytes_total)")
define("bandwidth", "B/s", "bytes_total per second of the window")
define("server_cpu_s", "s", "CPU-seconds the server spent in the window")
define("server_cpu_wasted_s", "s", "CPU-seconds spent on work that delivered nothing new to anyone")
define("client_blocked_s", "s", "client-seconds spent blocked waiting for a response (sync clients)")
define("client_blocked_fraction", "fraction", "client_blocked_s / (clients x duration)")
define("sent", "1", "messages sent in the whole run (ledger: sent = delivered + dropped + in_flight)")
define("delivered", "1", "messages delivered in the whole run")
define("dropped", "1", "messages given up on (loss beyond max_retries, receiver gone) in the whole run")
define("in_flight", "1", "messages still on a link when the run ended")
define("server_jobs_mean", "1", "time-average number of jobs at the server CPU (queued + in service)")
define("server_sojourn_mean", "s", "mean time a job spent at the server CPU (wait + service)")
define("connections_opened", "1", "connections opened in the window")
define("handshakes", "1", "connection handshakes completed in the window")
define("missed", "1", "messages a receiver should have got and never will: sent while it was "
       "offline, lost between a dropped stream and a reconnect without resume, dropped by a full "
       "buffer, lost in a broker restart without persistence. Notification patterns count updates "
       "created in the window; pubsub counts message copies of the whole run")
define("duplicates", "1", "messages a receiver got (or processed) more than once: redeliveries "
       "after a crash, replays from the last committed offset. Window as for `missed`")
define("proxy_cpu_s", "s", "CPU-seconds spent by proxies (sidecars, reverse proxies) in the window")
define("events", "1", "simulation events scheduled (engine work, for speed reports)")
define("stopped", "1", "1 when a CPU run queue reached max_run_queue jobs and the run was "
       "stopped there (its load exceeds capacity), else 0; over replications, the share stopped")
define("stopped_at", "s", "simulated time at which the run ended: warmup + duration, or earlier "
       "when it was stopped (stopped = 1)")
