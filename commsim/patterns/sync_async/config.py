"""The ``sync_async`` configuration section and its checks."""

from __future__ import annotations

from commsim.config.schema import Field, Section, register_section


IO_MODELS = ("thread_pool", "event_loop", "io_uring", "thread_per_call")
COMMITS = ("none", "sync", "async")
RESET_BYTES = 40  # a TCP RST segment: 20 B IP + 20 B TCP header


SECTION = register_section(Section("sync_async", {
    "io_model": Field("choice", "thread_pool",
                      "thread_pool: bounded pool, a thread held per request and blocked during "
                      "I/O; event_loop: epoll-style readiness, threads never block; io_uring: "
                      "completion-based I/O; thread_per_call: a new thread per blocking call",
                      choices=IO_MODELS),
    "threads": Field("int", 200, "pool size (thread_pool only; event loops use one thread per "
                     "server core)", min=1),
    "cpu_before": Field("dist:duration", {"dist": "exponential", "mean": "0.5ms"},
                        "CPU per request before its first backend call (server.service_time is "
                        "not used by this pattern)", min=0),
    "io_time": Field("dist:duration", {"dist": "exponential", "mean": "10ms"},
                     "duration of one backend call (e.g. a database query), drawn per call",
                     min=0),
    "cpu_after": Field("dist:duration", {"dist": "exponential", "mean": "0.5ms"},
                       "CPU per request after its last backend call", min=0),
    "ios_per_request": Field("int", 1, "backend calls per request, made one after another",
                             min=0),
    "context_switch": Field("duration", "5us", "CPU of one context switch; a blocking call "
                            "costs two (block and wake), counted as wasted CPU", min=0),
    "readiness_cpu": Field("duration", "2us", "event_loop: CPU per I/O for the readiness "
                           "notification and the non-blocking read (overhead, not wasted)",
                           min=0),
    "completion_cpu": Field("duration", "1us", "io_uring: CPU per I/O to submit it and reap its "
                            "completion (overhead, not wasted)", min=0),
    "thread_spawn_cpu": Field("duration", "15us", "thread_per_call: CPU to create and tear down "
                              "the thread of one blocking call (wasted)", min=0),
    "thread_memory": Field("size", "1MiB", "memory reserved per thread (stack), for "
                           "thread_memory_max", min=0),
    "commit": Field("choice", "none", "none: requests are not durable writes; sync: acknowledge "
                    "a write after the flush covering it; async: acknowledge at once, flush in "
                    "the background every flush_interval", choices=COMMITS),
    "fsync_time": Field("dist:duration", "1ms", "duration of one log flush (fsync, or a "
                        "replica's acknowledgement)", min=0),
    "flush_interval": Field("duration", "200ms", "async commit: time between background flushes "
                            "(PostgreSQL's wal_writer_delay default)", min=0, min_exclusive=True),
    "crash_mtbf": Field("duration", None, "mean up-time between crashes (exponential); null: no "
                        "random crashes (behind a topology: topology.mtbf instead)", min=0, min_exclusive=True, nullable=True),
    "crash_at": Field("list:duration", None, "crash times, absolute simulated time including "
                      "the warm-up, e.g. [10s, 25s]; null: none (behind a topology: "
                      "topology.crash_at instead)", min=0, nullable=True),
    "restart_time": Field("duration", "1s", "time a crashed server takes to restart (behind a "
                          "topology: topology.mttr instead)", min=0),
    "retry_backoff": Field("duration", "100ms", "a client whose request was reset by a crash "
                           "retries it after this delay", min=0, min_exclusive=True),
    "request_header": Field("size", "200B", "bytes of each request", min=0),
    "response_header": Field("size", "150B", "bytes of each response", min=0),
}, doc="Server I/O model (thread pool, event loop, io_uring, thread per call), commit mode and "
       "crash injection.", pattern="sync_async"))
