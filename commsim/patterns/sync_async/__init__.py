"""Synchronous vs asynchronous I/O on a server, and synchronous vs
asynchronous commit with crash injection.

Model and assumptions (details, closed forms and parameter table in
``docs/sync_async.md``)
-----------------------------------------------------------------------
* Clients are the shared :class:`~commsim.clients.ClientPopulation`; each
  operation is one request (``request_header`` bytes) answered by one
  response (``response_header`` bytes) on the shared
  :class:`~commsim.network.Network`, so bytes and the message ledger are
  counted in the one place.
* A request needs ``cpu_before`` of CPU, then ``ios_per_request`` backend
  calls one after another (each lasts ``io_time``; the backend has unlimited
  parallelism and is not on the modelled network), then ``cpu_after``.
  ``server.service_time`` is **not** used by this pattern.
* The server's cores are one :class:`~commsim.nodes.Cpu` (``server.cores``,
  FIFO run queue), so all CPU is accounted by the shared
  :class:`~commsim.accounting.cpu.CpuAccount`.  Threads are a separate
  counting resource: a thread needs a core only for its CPU parts.
* I/O models (``io_model``):

  - ``thread_pool``: ``threads`` pool threads; a request holds one from
    the start of its CPU to its response (queueing FIFO for one if none is
    free) and the thread stays held while blocked on I/O.  Each blocking call
    costs two context switches (block, wake) of ``context_switch`` CPU each.
  - ``event_loop``: one non-blocking loop per core (the Cpu's run queue is
    the loops' shared ready queue); no thread ever blocks; each I/O costs
    ``readiness_cpu`` (epoll readiness notification + non-blocking read).
  - ``io_uring``: like ``event_loop`` with completion-based I/O costing
    ``completion_cpu`` per I/O.
  - ``thread_per_call``: requests run on event loops, but every blocking
    call is handed to a newly created thread: the loop spends
    ``thread_spawn_cpu``, the new thread waits for a core, makes the call and
    blocks (a context switch), is woken (a context switch) and hands the
    result back to the loop, which continues the request.  The thread exists,
    with ``thread_memory``, from its creation until it has been woken.  No
    bound on threads.

* CPU pieces that run back to back on one thread (e.g. the CPU before an I/O
  and the context switch when the thread then blocks) are submitted to the
  run queue together and the thread continues when all are done; with one
  core they run exactly back to back, with several they may overlap by at
  most the length of the shorter piece (microseconds).
* **Wasted CPU** (work that delivered nothing new to anyone): context
  switches and thread creation.  Readiness / completion handling is I/O
  *overhead* (``io_overhead_cpu_s``), not waste: it is the work of moving
  the I/O's result to the request.  The data-moving part of the system calls
  is common to all models and belongs to ``cpu_before`` / ``cpu_after``.
* Durability (``commit``): with ``sync`` or ``async`` every request is a
  write appended to a log at the end of ``cpu_after``.  A flush (fsync or
  replica acknowledgement, ``fsync_time``) makes durable every write
  appended before it started; one flush at a time.  ``sync``: the request
  waits for a flush covering its write before it is acknowledged (group
  commit: a flush starts as soon as the previous one ends while writes wait);
  the wait is one more I/O of the I/O model.  ``async``: acknowledged at
  once; a background flush every ``flush_interval``.  The log is the shared
  :class:`~commsim.nodes.durable_log.DurableLog`.
* Crashes (``crash_at``, ``crash_mtbf``): the server process dies; writes
  not yet durable are lost (``writes_lost``; those already acknowledged are
  ``acked_writes_lost``), a flush in progress never completes, every request
  in the server is failed with a reset message, and requests arriving during
  ``restart_time`` are refused the same way.  A client whose request is
  reset retries it after ``retry_backoff`` (latency then includes the
  outage).  CPU jobs of crashed requests already queued at the Cpu still run
  (the Cpu has no cancel) but their results are discarded.
* Connections (``network.handshake``, ``network.keepalive``): each client
  has at most one connection to the server, set up by the shared
  :mod:`commsim.network.connection` module (TCP / TLS flights on the links,
  ``network.tls_server_cpu`` on the server's cores) before a request when
  it has none: once with keep-alive, per request without.  A reset (a crash)
  or a message lost beyond ``max_retries`` closes the connection, so the
  retry opens a new one.  Handshakes are answered while the server process
  restarts (the kernel and TLS terminator are taken to stay up).

* Behind an active ``topology`` (``cluster``): N instances, each a whole
  server as above (own cores, threads or loops, commit log), behind the
  cluster's balancer; crashes are the topology's (the pattern's crash keys
  are refused); a crash resets every request sent to the instance and not
  yet answered and the client retries through the balancer on a survivor
  (assumptions in ``cluster``'s docstring and docs/sync_async.md).

* Records (``--records``, only when asked for): one row per request, first
  send to answer; outcome ok, retried (sent again), acked_lost (its
  acknowledged write lost at a later crash) or unfinished; the model never
  fails a request (docs/sync_async.md).

Package layout: ``config`` (the ``sync_async`` section), ``instance`` (one
server process), ``model`` (the plain pattern), ``cluster`` (behind a
topology; the model factory).
"""

from __future__ import annotations

from commsim.clients.population import check_cycle_takes_time
from commsim.errors import ConfigError
from commsim.network.connection import check_idle_timeout
from commsim.patterns.base import CLIENT_QUEUE, CLIENT_QUEUE_WHY, IDLE_CLOSE, WIRE_COUNTED, Pattern, ignoring
from commsim.patterns.sync_async.cluster import model
from commsim.patterns.sync_async.config import SECTION  # noqa: F401  (registers the section)


def figures(result, out_dir):
    from commsim.figures.sync_async import figures as draw

    return draw(result, out_dir)


def _check(cfg: dict) -> None:
    from commsim.nodes import cluster

    sa = cfg["sync_async"]
    if cluster.active(cfg):
        cluster.check_sidecar(cfg)  # topology.sidecar: not built for sync_async (refused)
        for key, use in (("crash_at", "topology.crash_at and topology.crash_server"),
                         ("crash_mtbf", "topology.mtbf"), ("restart_time", "topology.mttr")):
            if sa[key] is not None and (key != "restart_time" or sa[key] != 1.0):
                raise ConfigError(f"sync_async.{key}", f"set with an active topology, whose "
                                  f"instances crash and restart by the topology's keys only (one "
                                  f"crash mechanism for the cluster): use {use} instead")
        cluster.refuse_unused(cfg, ("timeseries_bin", "storm_window"),
                              "it records no storm series or storm latencies")
    check_cycle_takes_time(cfg, ("sync_async.cpu_before", sa["cpu_before"]),
                           ("sync_async.io_time", sa["io_time"]),
                           ("sync_async.cpu_after", sa["cpu_after"]))
    check_idle_timeout(cfg)  # network.idle_timeout needs a handshake and keep-alive


PATTERN = Pattern(
    name="sync_async",
    summary="server I/O models (thread pool, event loop, io_uring, thread per call) with backend "
            "calls; synchronous vs asynchronous commit with crash injection",
    model=model,
    sections=("sync_async", "topology"),
    figures=figures,
    ignores={**ignoring(CLIENT_QUEUE, CLIENT_QUEUE_WHY),
             "server.service_time": "a request's CPU is sync_async.cpu_before and cpu_after"},
    check=_check, network={
        "latency": "every client-server hop, each direction",
        "bandwidth": "the server's access link, each direction",
        "loss": "a lost transmission is resent after rto; a message given up after max_retries "
                "closes the client's connection and the request is retried on a new one",
        "connections": "one connection per client through the handshake module, tls_server_cpu "
                       "on the server CPU; keepalive: false: a handshake per request",
        "idle_close": IDLE_CLOSE,
        "wire": WIRE_COUNTED})
