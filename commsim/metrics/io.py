"""Metrics of the I/O-model and durability family (pattern ``sync_async``).

Defined once here with :func:`commsim.metrics.define`; the values are computed
by :mod:`commsim.patterns.sync_async` from its own counters and from the
server's :class:`~commsim.accounting.cpu.CpuAccount` (CPU is only ever
counted there).  See ``docs/sync_async.md`` for the model behind each one.
"""

from __future__ import annotations

from commsim.metrics import define

# ------------------------------------------------------------- threads ----
define("threads_mean", "1", "time-average number of server threads in use: pool threads holding a "
       "request, event-loop threads (one per core, always in use while the server is up), "
       "and live per-call threads")
define("threads_max", "1", "largest number of server threads in use at once in the window")
define("thread_memory_max", "B", "threads_max x sync_async.thread_memory: peak memory reserved by "
       "the threads in use")
define("thread_wait_mean", "s", "mean time a request waited for a free pool thread "
       "(thread_pool; 0 for the other I/O models, which never wait for a thread)")
define("threads_spawned", "1", "threads created in the window (thread_per_call: one per blocking call)")

# ------------------------------------------------------------ blocking ----
define("io_blocked_s", "s", "thread-seconds spent blocked on I/O (backend calls and commit waits) "
       "in the window; 0 for event_loop and io_uring, whose threads never block")
define("io_calls", "1", "backend I/O calls completed in the window")
define("context_switches", "1", "thread context switches in the window (one when a thread blocks "
       "on I/O, one when it is woken); their CPU is counted as wasted")
define("io_overhead_cpu_s", "s", "CPU-seconds of per-I/O readiness (event_loop) or completion "
       "(io_uring) handling in the window: overhead, not wasted")

# ---------------------------------------------------------- durability ----
define("writes_acked", "1", "writes acknowledged to a client in the window (commit sync or async)")
define("writes_lost", "1", "writes applied but not yet durable when the server crashed "
       "(crashes in the window), acknowledged or not")
define("acked_writes_lost", "1", "writes acknowledged to a client and then lost in a crash "
       "(crashes in the window); always 0 with synchronous commit")
define("flushes", "1", "log flushes (fsync or replica acknowledgement) completed in the window")
define("crashes", "1", "server crashes in the window")
define("requests_reset", "1", "requests failed by a crash or refused while the server was down, "
       "in the window (the client retries each after sync_async.retry_backoff)")
define("server_down_s", "s", "seconds of the window the server spent crashed / restarting")
