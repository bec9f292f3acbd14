"""sync_async behind a topology (issue 10, item 3): N full sync_async servers
behind the cluster's balancer (commsim/patterns/sync_async/cluster.py).

* A default topology is the plain pattern, bit for bit.
* Theory: an event-loop instance whose request is one exponential CPU job is
  an M/M/c queue; behind a balancer that splits a Poisson stream at random
  (per request) or pins Poisson clients evenly (round robin, keep-alive),
  each instance is an M/M/c fed with lambda / N: latency, CPU wait and
  utilisation against commsim.theory.mmc over independent replications.
* Exact outcomes: round robin's spread; a scheduled crash resets exactly the
  requests sent to the instance and not answered (a snapshot at the crash),
  each retried once, after the reset and retry_backoff, on a survivor; with
  nothing up the retries double reconnect_backoff until the restart (exact
  time); the crashed instance's log loses what an independent count says.
* The ledger balances under random crashes, restarts, loss, handshakes and a
  scale-out; same seed, same results; bad combinations are refused (exit 2).
"""

from __future__ import annotations


import pytest
import yaml
from helpers import balanced, same, within_t
from test_sync_async import independent_acked_lost

from commsim.cli import main
from commsim.config import resolve_run
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate
from commsim.patterns.sync_async.cluster import ClusteredSyncAsync
from commsim.theory import mmc

L = 1e-3  # one-way latency


def raw(io_model="event_loop", *, clients=60, rate=None, think=None, duration=10.0, warmup=1.0,
        cores=2, network=None, topology=None, **sa):
    if rate is not None:
        cl = {"mode": "async", "count": clients, "rate": rate / clients}
    else:
        cl = {"mode": "sync", "count": clients, "think_time": think if think is not None else 0}
    out = {"pattern": "sync_async", "duration": duration, "warmup": warmup, "seed": 1,
           "server": {"cores": cores}, "clients": cl,
           "network": {"latency": L, **(network or {})},
           "sync_async": {"io_model": io_model, **sa}}
    if topology is not None:
        out["topology"] = topology
    return out


def run(r, seed=1):
    return simulate(resolve_run(r), seed)




# --------------------------------------------------------------------------
# default topology, theory, spread


def test_default_topology_is_the_plain_pattern_bit_for_bit():
    base = raw("thread_pool", rate=800, duration=3.0, commit="async", crash_at=[2.0],
               network={"handshake": "tls1.3", "tls_server_cpu": 1e-4})
    plain = run(base)
    one = run({**base, "topology": {"servers": 1, "balancer": "least_connections"}})
    assert type(one.model).__name__ == "SyncAsync"
    assert plain.metrics["crashes"] == 1
    same(plain.metrics, one.metrics)


@pytest.mark.parametrize("balancer,keepalive", [("random", False), ("round_robin", True)])
def test_each_instance_is_an_mmc_fed_with_lambda_over_n(balancer, keepalive):
    """3 instances of 2 cores, one exponential CPU job of mean 1.75 ms per
    request (event_loop, no backend call, no commit), Poisson arrivals of
    2400/s in all: each instance is M/M/2 with lambda = 800/s, rho = 0.7.
    ``random`` without keep-alive picks per request (a Poisson stream split
    at random is Poisson); round robin with keep-alive pins 20 of the 60
    Poisson clients to each instance.  Latency = 2 L + W (W the M/M/c
    sojourn).  Eight independent replications of ~24,000 requests: the 99 %
    Student-t interval must contain the closed form and be narrower than a
    bound it meets at this size: utilisation's per-replication sd is about
    sqrt(2 / n) = 0.9 % (Poisson count and exponential work), so its
    half-width is ~4 x 0.9 % / sqrt(8) = 1.3 % (bound 2 %); latency and
    sojourn 5 %; the wait alone, a smaller and noisier number, 8 %."""
    n, c, s, lam = 3, 2, 1.75e-3, 2400.0
    r = raw("event_loop", rate=lam, cores=c, ios_per_request=0,
            cpu_before={"dist": "exponential", "mean": s}, cpu_after=0,
            network={"keepalive": keepalive}, topology={"servers": n, "balancer": balancer})
    th = mmc(lam / n, 1 / s, c)
    runs = [run(r, seed).metrics for seed in range(1, 9)]
    within_t([m["latency_mean"] for m in runs], 2 * L + th["response"], 0.05)
    within_t([m["server_sojourn_mean"] for m in runs], th["response"], 0.05)
    within_t([m["wait_mean"] for m in runs], th["wait"], 0.08)
    within_t([m["server_utilization"] for m in runs], th["rho"], 0.02)
    for m in runs:
        assert m["servers_end"] == n and m["requests_reset"] == 0
        balanced(m)


def test_round_robin_spreads_evenly():
    # keep-alive: clients pinned in turn, exactly 20 each
    r = run(raw(rate=600, duration=2.0, topology={"servers": 3}))
    pins = [p[0].index for p in r.model.pinned.values()]
    assert sorted(pins.count(i) for i in range(3)) == [20, 20, 20]
    # without keep-alive every request picks in turn: the jobs each instance
    # ran in the window differ by at most one at each window edge
    r = run(raw(rate=600, duration=2.0, cpu_before=1e-3, cpu_after=0, ios_per_request=0,
                network={"keepalive": False}, topology={"servers": 3}))
    done = [s.cpu.completed for s in r.model.cluster.servers]
    assert max(done) - min(done) <= 2 and sum(done) > 1000


# --------------------------------------------------------------------------
# crashes


def _spy(monkeypatch):
    """Record, at each crash, the operations outstanding on the instance,
    and, per operation, who answered it and when it completed."""
    snap, answered, finished = [], {}, {}
    crashed, respond = ClusteredSyncAsync._crashed, ClusteredSyncAsync.respond

    def spy_crashed(self, s):
        ops = list(self.outstanding[s])
        inside = sum(1 for _ in self.instances[s].active)
        pinned = {c for c, p in self.pinned.items() if p[0] is s}
        snap.append((self.env.now, s.index, ops, inside, pinned))
        for op in ops:
            done = op.done
            op.done = (lambda op=op, done=done, m=self: (finished.__setitem__(op, m.env.now),
                                                          done()))
        crashed(self, s)
        assert not self.instances[s].active and not s.cpu.queue and s.active == 0

    def spy_respond(self, inst, op):
        answered[op] = inst.node.index
        respond(self, inst, op)

    monkeypatch.setattr(ClusteredSyncAsync, "_crashed", spy_crashed)
    monkeypatch.setattr(ClusteredSyncAsync, "respond", spy_respond)
    return snap, answered, finished


def test_a_crash_resets_exactly_the_outstanding_requests_and_they_retry_on_a_survivor(
        monkeypatch):
    """Closed loop, no think time: every client always has one operation
    open; round robin pins 15 of the 30 to each instance.  At the crash the
    ones outstanding on instance 1 (in flight to it, waiting for a thread, on
    its CPU, in a backend call) are reset, and nobody else; each is retried
    once, retry_backoff after its reset arrives, on instance 0, and
    completes."""
    snap, answered, finished = _spy(monkeypatch)
    backoff = 0.05
    r = run(raw("thread_pool", clients=30, threads=8, duration=6.0, cpu_before=2e-4,
                cpu_after=2e-4, io_time=0.02, retry_backoff=backoff,
                topology={"servers": 2, "crash_at": [4.0], "crash_server": 1}))
    m = r.metrics
    assert m["crashes"] == 1 and len(snap) == 1
    t, index, ops, inside, pinned = snap[0]
    assert (t, index) == (4.0, 1)
    # 15 clients on instance 1, each with at most one operation there; with
    # 8 threads and 20 ms backend calls nearly all are inside (a few are on
    # the wire, answered or on their way).
    assert 8 <= len(ops) <= 15 and inside <= len(ops)
    assert len(pinned) == 15 and {op.client for op in ops} <= pinned
    assert len({op.client for op in ops}) == len(ops)
    assert m["requests_reset"] == m["crash_resets"] == len(ops)
    for op in ops:
        assert op.retries == 1 and op.attempt == 2
        assert answered[op] == 0          # the survivor answered the retry
        # reset (L) + retry_backoff + a new request to the survivor and back
        assert finished[op] >= t + L + backoff + 2 * L
    assert m["servers_end"] == 2 and m["server_down_s"] == pytest.approx(3.0)  # 4 s to 7 s: never restarts
    balanced(m)


def test_with_nothing_up_retries_double_the_backoff_until_the_restart(monkeypatch):
    """One instance crashes at 2.0 and restarts 2 s later.  An operation reset
    at the crash retries at a = 2 + L + retry_backoff, then after 0.25, 0.5,
    1, 2 s (doubling) until an attempt finds the instance up: exactly
    a + 3.75 here, then takes its constant request time."""
    snap, answered, finished = _spy(monkeypatch)
    rb, bo, mttr, io = 0.1, 0.25, 2.0, 0.5
    r = run(raw("thread_pool", clients=1, cores=1, duration=8.0, cpu_before=1e-3,
                cpu_after=1e-3, io_time=io, retry_backoff=rb,
                topology={"servers": 1, "crash_at": [2.0], "mttr": mttr,
                          "reconnect_backoff": bo}))
    (t, _i, ops, _inside, _pinned), = snap
    assert len(ops) == 1  # io 0.5 s of a 0.504 s cycle: the client is in a backend call
    tries, a = 0, t + L + rb
    while a < t + mttr:
        a += bo * 2 ** tries
        tries += 1
    assert tries == 4
    # one core, one client: the attempt is L + (1 ms + 5 us) + io + (5 us + 1 ms) + L
    service = 2 * L + 2e-3 + 2 * 5e-6 + io
    for op in ops:
        assert finished[op] == pytest.approx(a + service, abs=1e-9)
        assert answered[op] == 0
    m = r.metrics
    assert m["server_down_s"] == pytest.approx(mttr) and m["crashes"] == 1
    balanced(m)


def test_the_crashed_instance_loses_its_own_log_tail():
    """Async commit: acknowledged writes lost equal an independent count from
    the crashed instance's log (acks, flushes, crashes); the survivor's log
    loses nothing.  Sync commit loses no acknowledged write."""
    top = {"servers": 2, "crash_at": [1.5, 2.5, 3.5], "crash_server": 1, "mttr": 0.2}
    r = run(raw("event_loop", rate=1000, duration=4.0, commit="async", flush_interval=0.05,
                topology=top))
    m = r.model
    wals = [m.instances[s].wal for s in m.cluster.servers]
    assert len(wals[1].crash_log) == 3 and not wals[0].crash_log
    assert wals[0].acked_lost == 0 and wals[0].writes_lost == 0
    assert r.metrics["acked_writes_lost"] == independent_acked_lost(wals[1]) > 0
    r = run(raw("thread_pool", rate=1000, duration=4.0, commit="sync", fsync_time=0.01,
                topology=top))
    assert r.metrics["acked_writes_lost"] == 0 and r.metrics["writes_lost"] > 0
    assert r.metrics["writes_acked"] > 2000


@pytest.mark.parametrize("io_model", ["thread_pool", "event_loop", "io_uring",
                                      "thread_per_call"])
def test_ledger_balances_under_random_crashes_loss_handshakes_and_scale_out(io_model):
    r = raw(io_model, rate=600, duration=8.0, commit="sync", threads=16,
            network={"loss": 0.05, "max_retries": 1, "rto": 0.01, "handshake": "tls1.3",
                     "tls_server_cpu": 2e-4},
            topology={"servers": 3, "mtbf": 1.5, "mttr": 0.3, "balancer": "least_connections",
                      "scale_out_at": 4.0, "reconnect_jitter": 0.05})
    res = run(r)
    m = res.metrics
    assert m["crashes"] >= 5 and m["requests_reset"] > 0 and m["dropped"] > 0
    assert m["servers_end"] == 4 and m["acked_writes_lost"] == 0
    assert m["throughput"] > 0.9 * 600
    assert m["threads_mean"] >= 0 and m["server_down_s"] > 0
    # every instance's thread accounting returns to its idle level
    for s, inst in res.model.instances.items():
        assert inst.n_blocked >= 0 and inst.n_threads >= 0
    balanced(m)


def test_same_seed_same_results():
    r = raw("io_uring", rate=800, duration=3.0, commit="async",
            topology={"servers": 3, "mtbf": 0.7, "mttr": 0.1, "balancer": "random"})
    a, b, c = run(r, 3).metrics, run(r, 3).metrics, run(r, 4).metrics
    same(a, b)
    assert a["crashes"] > 0 and a["latency_mean"] != c["latency_mean"]


# --------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("key,value,names", [
    ("crash_at", [1.0], "topology.crash_at"), ("crash_mtbf", 1.0, "topology.mtbf"),
    ("restart_time", 0.5, "topology.mttr")])
def test_sync_async_crash_keys_are_refused_behind_a_topology(key, value, names):
    with pytest.raises(ConfigError, match=f"sync_async.{key}") as e:
        resolve_run(raw(topology={"servers": 2}, **{key: value}))
    assert names in str(e.value)
    resolve_run(raw(topology={"servers": 1}, **{key: value}))  # no cluster: the pattern's own


@pytest.mark.parametrize("key", ["timeseries_bin", "storm_window"])
def test_unused_topology_keys_are_refused(key):
    with pytest.raises(ConfigError, match=f"topology.{key}"):
        resolve_run(raw(topology={"servers": 2, key: 3.0}))


def test_bad_combination_exits_2_with_the_key(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(raw(topology={"servers": 2}, crash_at=[1.0])))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sync_async.crash_at" in err and "topology.crash_at" in err
    assert not out.exists()
