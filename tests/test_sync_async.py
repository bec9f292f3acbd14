"""Validation of the sync_async pattern (docs/sync_async.md).

* Saturation throughput of a thread pool against the utilisation-law bound
  min(N / (c + w), cores / c), in both regimes, and of an event loop / io_uring
  against cores / (c + k x per-I/O CPU).
* Durability: with asynchronous commit, acknowledged writes lost in crashes
  equal an independent count from the acknowledgement, flush and crash times,
  and match the closed form rate x (flush_interval / 2 + fsync_time) per
  crash; synchronous commit loses no acknowledged write.
* Ledger balance, determinism, config validation, the experiment file and
  the figures.

Tolerances are derived from the sample size in each test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import commsim
from commsim.config import resolve_run
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate
from commsim.patterns.sync_async import figures
from commsim.theory import thread_pool_saturation

ROOT = Path(__file__).resolve().parents[1]


def config(io_model="thread_pool", *, duration=4.0, warmup=0.5, cores=1, rate=None, clients=100,
           think=None, seed=1, network=None, **sa):
    """A resolved run config; ``rate`` (total requests/s) gives open-loop
    clients, ``think`` closed-loop ones."""
    if rate is not None:
        cl = {"mode": "async", "count": clients, "rate": rate / clients}
    else:
        cl = {"mode": "sync", "count": clients, "think_time": think if think is not None else 0}
    raw = {"pattern": "sync_async", "duration": duration, "warmup": warmup, "seed": seed,
           "server": {"cores": cores}, "clients": cl,
           "sync_async": {"io_model": io_model, **sa}}
    if network:
        raw["network"] = network
    return resolve_run(raw)


def run_model(cfg, seed=11):
    run = simulate(cfg, seed)
    return run.model, run.metrics


def exp(mean):
    return {"dist": "exponential", "mean": mean}


# --------------------------------------------------------------------------
# saturation: thread pool


def test_thread_pool_saturation_thread_bound():
    """8 threads, 4 cores, c = 1.01 ms (incl. 2 context switches), w = 10 ms:
    X = min(8 / 11.01 ms, 4 / 1.01 ms) = min(726.6, 3960) = 726.6/s, driven
    at 1500/s open loop (twice the capacity)."""
    N, cores, cb, ca, w, cs = 8, 4, 0.5e-3, 0.5e-3, 10e-3, 5e-6
    cfg = config("thread_pool", cores=cores, rate=1500, threads=N, cpu_before=cb, cpu_after=ca,
                 io_time=w, context_switch=cs)
    model, m = run_model(cfg)
    c = cb + ca + 2 * cs
    x_max = thread_pool_saturation(N, c, w, cores)
    assert x_max == pytest.approx(N / (c + w))            # the thread-bound regime
    assert x_max < 0.2 * cores / c
    n = x_max * cfg["duration"]
    # Constant times: the count is deterministic up to the <= N requests in
    # progress at each window edge (N / n = 0.28 %) and the CPU queueing that
    # stretches each thread's holding time (two CPU visits per request at
    # ~18 % utilisation: below 0.5 %).  Tolerance 1.5 %.
    assert m["throughput"] == pytest.approx(x_max, rel=0.015)
    # Sharper: Little's law on the pool with the measured CPU waits.
    hold = c + w + 2 * m["wait_mean"]
    assert m["throughput"] == pytest.approx(N / hold, rel=N / n + 0.002)
    # The pool is saturated, threads are held while blocked (blocked threads
    # = X x w by Little's law) and the CPU is mostly idle.
    assert m["threads_max"] == N
    assert m["threads_mean"] == pytest.approx(N, rel=0.002)
    assert m["io_blocked_s"] / cfg["duration"] == pytest.approx(m["throughput"] * w, rel=0.01)
    assert m["server_utilization"] == pytest.approx(m["throughput"] * c / cores, rel=0.01)
    assert m["thread_wait_mean"] > 0.5  # requests pile up in front of the pool
    # Wasted CPU is exactly the context switches (2 per blocking call).
    assert m["context_switches"] == pytest.approx(2 * m["io_calls"], abs=2 * N)
    assert m["server_cpu_wasted_s"] == pytest.approx(m["context_switches"] * cs, rel=0.01)
    assert m["io_overhead_cpu_s"] == 0


def test_thread_pool_saturation_cpu_bound():
    """64 threads, 2 cores, c = 0.5 + 0.5 ms + 2 x 50 us = 1.1 ms, w = 5 ms
    (exponential): X = min(64 / 6.1 ms, 2 / 1.1 ms) = min(10492, 1818) =
    1818/s, driven at 3000/s.  Without the context-switch CPU it would be
    2000/s, 10 % higher, so the test sees the switches."""
    N, cores, cb, ca, w, cs = 64, 2, 0.5e-3, 0.5e-3, 5e-3, 50e-6
    cfg = config("thread_pool", cores=cores, rate=3000, threads=N, cpu_before=cb, cpu_after=ca,
                 io_time=exp(w), context_switch=cs)
    _, m = run_model(cfg)
    c = cb + ca + 2 * cs
    x_max = thread_pool_saturation(N, c, w, cores)
    assert x_max == pytest.approx(cores / c)              # the CPU-bound regime
    assert N / (c + w) > 5 * x_max
    n = x_max * cfg["duration"]
    # Constant CPU per request and a never-idle CPU: completions = cores x D / c
    # up to the <= N requests in progress at each window edge (N / n = 0.9 %).
    assert m["server_utilization"] > 0.999
    assert m["throughput"] == pytest.approx(x_max, rel=N / n + 0.005)
    assert m["server_cpu_wasted_s"] == pytest.approx(2 * cs * m["throughput"] * cfg["duration"],
                                                     rel=N / n + 0.005)


# --------------------------------------------------------------------------
# saturation: event loop and io_uring


@pytest.mark.parametrize("io_model,key,per_io", [("event_loop", "readiness_cpu", 20e-6),
                                                 ("io_uring", "completion_cpu", 5e-6)])
def test_event_loop_saturation(io_model, key, per_io):
    """2 cores, c = 1 ms, k = 2 calls of 5 ms: X = cores / (c + k x per-I/O CPU),
    driven closed loop by 100 clients with no think time (an open-loop
    overload of an event loop settles below capacity, see the docs)."""
    cores, cb, ca, w, k = 2, 0.5e-3, 0.5e-3, 5e-3, 2
    cfg = config(io_model, cores=cores, clients=100, think=0, cpu_before=cb, cpu_after=ca,
                 io_time=exp(w), ios_per_request=k, **{key: per_io})
    _, m = run_model(cfg)
    x_max = cores / (cb + ca + k * per_io)
    n = x_max * cfg["duration"]
    # Constant CPU and a never-idle CPU: exact up to the <= 100 operations in
    # progress at each window edge (100 / n = 1.3 %).
    assert m["server_utilization"] > 0.999
    assert m["throughput"] == pytest.approx(x_max, rel=100 / n + 0.005)
    # Threads never block and nothing is wasted; the per-I/O CPU is overhead.
    assert m["io_blocked_s"] == 0
    assert m["context_switches"] == 0
    assert m["server_cpu_wasted_s"] == 0
    assert m["threads_max"] == cores
    assert m["io_overhead_cpu_s"] == pytest.approx(m["io_calls"] * per_io, rel=0.01)
    # Sync clients are blocked for their whole operation (think time 0).
    assert m["client_blocked_fraction"] == pytest.approx(1.0, rel=1e-6)


def test_event_loop_open_loop_overload_fluid():
    """Open-loop overload of an event loop (no admission control, FIFO run
    queue): new requests keep entering, so completions settle *below* the
    capacity.  Fluid model (docs): a request visits the run queue in stages
    with CPU c_j; with the queue served at r units of submission time per
    unit of time, sum_j lam r^j c_j = cores and X = lam r^m.  An
    approximation (it ignores the start-up transient): tolerance 4 %."""
    lam, cores = 3000.0, 2
    stages = [0.5e-3, 20e-6, 20e-6 + 0.5e-3]   # cpu_before | readiness | readiness + cpu_after
    cfg = config("event_loop", cores=cores, rate=lam, duration=4.0, warmup=1.0,
                 cpu_before=exp(0.5e-3), cpu_after=exp(0.5e-3), io_time=exp(5e-3),
                 ios_per_request=2, readiness_cpu=20e-6)
    _, m = run_model(cfg)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        r = (lo + hi) / 2
        work = sum(lam * r ** (j + 1) * c for j, c in enumerate(stages))
        lo, hi = (r, hi) if work < cores else (lo, r)
    fluid = lam * r ** len(stages)
    capacity = cores / sum(stages)
    assert m["server_utilization"] > 0.999
    assert fluid < 0.8 * capacity
    assert m["throughput"] == pytest.approx(fluid, rel=0.04)


def test_thread_per_call_costs():
    """Each blocking call spawns a thread (wasted CPU) and costs two context
    switches; helper threads in use grow with load (Little: X k w)."""
    w, k, spawn, cs = 10e-3, 2, 15e-6, 5e-6
    cfg = config("thread_per_call", cores=2, rate=400, duration=3.0, io_time=exp(w),
                 ios_per_request=k, thread_spawn_cpu=spawn, context_switch=cs,
                 cpu_before=exp(0.2e-3), cpu_after=exp(0.2e-3))
    _, m = run_model(cfg)
    calls = m["threads_spawned"]
    assert calls == pytest.approx(k * m["throughput"] * cfg["duration"], rel=0.02)
    assert m["context_switches"] == pytest.approx(2 * calls, abs=20)
    assert m["server_cpu_wasted_s"] == pytest.approx(calls * (spawn + 2 * cs), rel=0.02)
    blocked = m["io_blocked_s"] / cfg["duration"]
    assert blocked == pytest.approx(m["throughput"] * k * w, rel=0.05)
    assert m["threads_mean"] > 2 + 0.95 * blocked
    assert m["thread_memory_max"] == m["threads_max"] * cfg["sync_async"]["thread_memory"]


# --------------------------------------------------------------------------
# durability

F, FSYNC, LAM, NCRASH, PERIOD = 0.02, 1e-3, 1000.0, 160, 0.1


def crash_times():
    """Crashes every PERIOD, at phases that sweep the flush cycle evenly
    (stratified), so the mean lost window is exactly F/2 + fsync_time."""
    return [0.5 + j * PERIOD + F * ((j + 0.5) / NCRASH) for j in range(NCRASH)]


def durability_config(commit, io_model="event_loop"):
    times = crash_times()
    return config(io_model, cores=2, rate=LAM, warmup=0.0, duration=times[-1] + 0.2,
                  cpu_before=1e-4, cpu_after=1e-4, io_time=exp(5e-4), threads=64,
                  commit=commit, fsync_time=FSYNC, flush_interval=F, restart_time=1e-3,
                  retry_backoff=1e-3, crash_at=[f"{t:.6f}s" for t in times])


def independent_acked_lost(wal) -> int:
    """Acknowledgements after the start of the last flush completed before each
    crash (and after the previous crash), counted from the logged times only."""
    acks = np.asarray(wal.ack_times)
    total, prev = 0, -math.inf
    for t in wal.crash_log:
        starts = [s for s, e in wal.flush_log if e <= t]
        lo = max(starts[-1] if starts else -math.inf, prev)
        total += int(np.count_nonzero((acks >= lo) & (acks < t)))
        prev = t
    return total


def test_async_commit_loses_acknowledged_writes():
    model, m = run_model(durability_config("async"))
    assert m["crashes"] == NCRASH
    lost = m["acked_writes_lost"]
    assert lost > 0
    assert lost == independent_acked_lost(model.wal)
    assert m["writes_lost"] >= lost
    # Closed form: E[lost per crash] = rate x (F/2 + fsync_time); with
    # stratified crash phases the total is Poisson-like with variance ~ its
    # mean, sd = sqrt(1760) = 42 (2.4 %): tolerance 4 sd.
    expected = NCRASH * LAM * (F / 2 + FSYNC)
    assert lost == pytest.approx(expected, abs=4 * math.sqrt(expected))
    assert m["server_down_s"] == pytest.approx(NCRASH * 1e-3, rel=1e-6)
    assert m["requests_reset"] > 0


def test_sync_commit_loses_no_acknowledged_write():
    model, m = run_model(durability_config("sync", io_model="thread_pool"))
    assert m["crashes"] == NCRASH
    assert m["writes_acked"] > 0.9 * LAM * m["crashes"] * PERIOD
    assert m["writes_lost"] > 0           # writes waiting for their flush died
    assert m["acked_writes_lost"] == 0
    # Group commit: a flush per batch of waiting writes, never more flushes than writes.
    assert 0 < m["flushes"] <= m["writes_acked"] + m["writes_lost"]
    # Commit waits block the pool threads; latency includes the fsync.
    assert m["latency_mean"] > FSYNC
    assert m["io_blocked_s"] > 0


# --------------------------------------------------------------------------
# ledger, determinism, config, experiment file, figures


def test_ledger_balances_with_crashes_and_loss():
    cfg = config("thread_pool", cores=2, rate=500, duration=3.0, threads=16,
                 network={"latency": "1ms", "loss": 0.02, "max_retries": 1, "rto": "5ms"},
                 commit="async", crash_mtbf=0.7, restart_time=0.05)
    metrics, sim = simulate(cfg, 5)
    assert metrics["dropped"] > 0 and metrics["crashes"] > 0
    assert metrics["sent"] == metrics["delivered"] + metrics["dropped"] + metrics["in_flight"]


def test_same_seed_same_metrics():
    cfg = config("io_uring", cores=2, rate=800, duration=2.0, commit="async", crash_mtbf=0.5,
                 restart_time=0.05)
    a, _ = simulate(cfg, 3)
    b, _ = simulate(cfg, 3)
    c, _ = simulate(cfg, 4)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), key
    assert a["crashes"] > 0
    assert a["latency_mean"] != c["latency_mean"]


def test_crash_at_is_a_list_of_durations():
    assert config(crash_at=["2s", "500ms", 1.5])["sync_async"]["crash_at"] == [2.0, 0.5, 1.5]
    with pytest.raises(ConfigError, match=r"sync_async.crash_at\[1\]"):
        config(crash_at=["2s", "soon"])
    with pytest.raises(ConfigError, match="list"):
        config(crash_at="2s")


def test_experiment_file_loads():
    exp = commsim.load(ROOT / "experiments" / "sync_vs_async.yaml")
    models = {p.params["sync_async.io_model"] for p in exp.points}
    assert models == {"thread_pool", "event_loop", "io_uring", "thread_per_call"}


def test_figures(tmp_path):
    raw = {"pattern": "sync_async", "duration": 0.3, "replications": 2,
           "server": {"cores": 2}, "clients": {"mode": "async", "count": 10, "rate": 20},
           "sync_async": {"commit": "async", "crash_at": ["0.1s"], "restart_time": 0.01},
           "sweep": {"sync_async.io_model": ["thread_pool", "event_loop"],
                     "clients.rate": [20, 40]}}
    result = commsim.run(raw)
    paths = figures(result, tmp_path)
    assert len(paths) >= 4
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)


@pytest.mark.parametrize("mode,rtts,hs_bytes", [("none", 0, 0), ("tcp", 1, 60 + 60 + 52),
                                                ("tls1.3", 2, 60 + 60 + 517 + 4000 + 52 + 74)])
def test_handshake_without_keepalive_costs_its_rtts_and_bytes_per_request(mode, rtts, hs_bytes):
    """One closed-loop client, constant 10 ms links, no CPU, one 5 ms backend
    call: a request takes 2 x 10 ms + 5 ms; without keep-alive every request
    first pays the handshake's round trips (tcp 1, tls1.3 2) and its exact
    bytes (the flights of commsim.network.connection, the client's last
    flight riding with the request)."""
    cfg = config(duration=2.0, warmup=0.2, clients=1, think=0, cpu_before=0, cpu_after=0,
                 io_time="5ms", context_switch=0,
                 network={"latency": "10ms", "handshake": mode, "keepalive": False,
                          "tls_server_cpu": 0})
    _model, m = run_model(cfg)
    assert m["latency_mean"] == pytest.approx(0.025 + rtts * 0.020, rel=1e-9)
    assert m["latency_p99"] == pytest.approx(0.025 + rtts * 0.020, rel=1e-9)
    if mode == "none":
        assert m["bytes_handshake"] == 0 and m["handshakes"] == 0
    else:
        assert m["handshakes"] == pytest.approx(m["requests"], abs=1)
        assert m["bytes_handshake"] == pytest.approx(hs_bytes * m["handshakes"], abs=hs_bytes)


def test_keepalive_opens_one_connection_per_client():
    cfg = config(duration=2.0, warmup=0.0, clients=5, think=0, cpu_before=0, cpu_after=0,
                 io_time="5ms", context_switch=0,
                 network={"latency": "10ms", "handshake": "tls1.3", "keepalive": True,
                          "tls_server_cpu": 0})
    _model, m = run_model(cfg)
    assert m["handshakes"] == 5 and m["connections_opened"] == 5
    assert m["bytes_handshake"] == 5 * (60 + 60 + 517 + 4000 + 52 + 74)


def test_ledger_balances_with_loss_handshakes_and_a_crash():
    cfg = config(duration=4.0, warmup=0.5, clients=20, think=0.01, crash_at=["2s"],
                 restart_time="0.3s", commit="sync",
                 network={"latency": "5ms", "loss": 0.05, "max_retries": 1, "rto": "20ms",
                          "handshake": "tls1.3", "keepalive": False})
    _model, m = run_model(cfg)
    assert m["crashes"] == 1 and m["handshakes"] > 0 and m["dropped"] > 0
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]
