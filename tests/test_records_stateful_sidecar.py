"""Per-operation records of ``stateful`` and ``sidecar`` (``--records``,
issue 12 item 10): rows match the run's metrics exactly, recording changes
no metric, and the files are the same serially and with ``--jobs 2``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from commsim.config import load
from commsim.experiment import records
from commsim.experiment.runner import simulate
from commsim.metrics.collect import percentiles
from helpers import records_serial_and_parallel

SEED = 3
FAILED = ["reset", "503", "401", "lost"]

# Stateful sessions behind round robin (misrouted: 401 and relogins), a crash
# (resets) and a lossy link that gives up after one retransmission (lost).
MISROUTED = {"pattern": "stateful", "duration": 30.0, "warmup": 3.0,
             "clients": {"count": 40, "mode": "sync", "think_time": {"dist": "exponential", "mean": "0.2s"}},
             "network": {"latency": "2ms", "loss": 0.05, "max_retries": 1},
             "stateful": {"servers": 3, "balancer": "round_robin", "requests_per_session": 5,
                          "crash_at": "10s", "crash_server": 0, "mttr": "5s", "detect_time": "1s"}}
# One stateless server (store) behind TLS connections that crashes: resets,
# then 503 while the balancer knows it is down.
ALONE = {"pattern": "stateful", "duration": 30.0, "warmup": 3.0,
         "clients": {"count": 40, "mode": "sync", "think_time": {"dist": "exponential", "mean": "0.2s"}},
         "network": {"latency": "2ms", "handshake": "tls1.3"},
         "stateful": {"servers": 1, "mode": "stateless", "crash_at": "10s", "crash_server": 0,
                      "mttr": "5s", "detect_time": "1s"}}
# A chain of two services, one faulty instance, retries and a per-try timeout.
MESH = {"pattern": "sidecar", "duration": 10.0, "warmup": 1.0,
        "clients": {"count": 10, "mode": "async", "rate": 20.0},
        "network": {"latency": "0.2ms"},
        "sidecar": {"depth": 2, "fan_out": 2, "fault_instances": 1, "fault_error_rate": 0.2,
                    "retries": 1, "timeout": "5ms", "breaker_errors": None}}


def _run(raw: dict):
    cfg = load(raw).points[0].config
    plain = simulate(cfg, SEED).metrics
    metrics, sim = simulate(cfg, SEED, records=True)
    assert plain.keys() == metrics.keys()
    for k in plain:  # recording changes nothing in the run
        x, y = plain[k], metrics[k]
        assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), k
    df = records.table(sim, {}, 0, SEED).to_pandas()
    assert list(df.columns) == [c for c, _u, _m in records.COLUMNS]
    return metrics, sim, df


def _latency_matches(rows: pd.DataFrame, metrics: dict) -> None:
    ok = rows.sort_values("completed", kind="stable")
    mine = percentiles(ok.latency.to_numpy(), "latency", mean=True)
    assert mine["latency_mean"] == pytest.approx(metrics["latency_mean"], rel=1e-12)
    assert mine["latency_p99"] == pytest.approx(metrics["latency_p99"], rel=1e-12)


@pytest.mark.parametrize("raw", [MISROUTED, ALONE], ids=["misrouted", "alone"])
def test_stateful_rows_are_the_runs_operations(raw):
    metrics, sim, df = _run(raw)
    assert set(df.op.astype(str)) <= {"request", "login", "relogin"}
    assert set(df.outcome.astype(str)) <= {"ok", "unfinished", *FAILED}
    w = df[df.measured]
    ok = w[w.outcome == "ok"]
    assert len(ok) == round(metrics["throughput"] * sim.duration) > 1000
    assert w.outcome.isin(FAILED).sum() == metrics["failed_requests"] > 100
    assert (w.op == "relogin").sum() == metrics["relogins"]
    _latency_matches(ok, metrics)
    # Ended rows have an end, unfinished ones none; every row has its client.
    assert df.completed.isna().sum() == (df.outcome == "unfinished").sum()
    assert (df.completed.dropna() <= sim.end).all() and df.client.between(0, 39).all()
    # Bytes of a successful request without a login: request 400 + 200 B,
    # response 300 B + 1 KiB (defaults; no token: a store or server memory).
    assert (df[(df.op == "request") & (df.outcome == "ok")].bytes == 1924).all()
    # With a login first: the login (400 + 200 B) and its answer (300 B) too.
    assert (df[(df.op == "login") & (df.outcome == "ok")].bytes == 1924 + 900).all()


def test_stateful_outcome_vocabulary_is_exercised():
    seen = set()
    for raw in (MISROUTED, ALONE):
        seen |= set(_run(raw)[2].outcome.astype(str))
    assert seen >= {"ok", *FAILED}


def test_sidecar_rows_are_the_clients_calls_and_every_try():
    metrics, sim, df = _run(MESH)
    assert set(df.op.astype(str)) == {"call", "try"}
    assert set(df.outcome.astype(str)) <= {"ok", "error", "unfinished"}
    w = df[df.measured]
    calls = w[w.op == "call"]
    ok = calls[calls.outcome == "ok"]
    assert len(ok) == round(metrics["throughput"] * sim.duration) > 100
    err = (calls.outcome == "error").sum()
    assert err > 10 and len(ok) / (len(ok) + err) == metrics["success_rate"]
    _latency_matches(ok, metrics)
    # Every try of every call in the mesh, the client's and the services'.
    assert (w.op == "try").sum() == metrics["attempts"] > metrics["calls"] - len(calls)
    tries = df[df.op == "try"]
    assert set(tries.outcome.astype(str)) == {"ok", "error", "unfinished"}
    assert (tries.outcome == "error").sum() >= metrics["timeouts"] > 100  # timeouts end tries
    # A try of a client's call carries the client; a try between services none.
    mine = tries[tries.client.notna()]
    assert tries.client.isna().any() and mine.client.between(0, 9).all()
    every = df[df.op == "call"]
    done = every.outcome != "unfinished"
    # At least one try per finished call, at most 1 + retries.
    assert done.sum() <= len(mine) <= 2 * len(every)
    assert (mine.outcome == "error").sum() > 0 and len(mine) > len(every)  # retries happened
    assert every.completed.isna().sum() == (~done).sum()
    assert (df.bytes == 2048).all()


@pytest.fixture
def tiny_sweep(tmp_path):
    paths = []
    for name, body in (("st", "pattern: stateful\nclients: {count: 20}\n"
                              "stateful: {servers: 2, crash_at: 2s, mttr: 1s}\n"
                              "sweep:\n  stateful.mode: [stateful, stateless]\n"),
                       ("sc", "pattern: sidecar\nclients: {count: 5, mode: async, rate: 20/s}\n"
                              "sidecar: {fault_instances: 1, fault_error_rate: 0.3}\n"
                              "sweep:\n  sidecar.mode: [none, sidecar]\n")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\nduration: 4s\nwarmup: 1s\nreplications: 2\n" + body)
        paths.append(path)
    return paths


def test_records_are_the_same_serially_and_with_two_processes(tiny_sweep, tmp_path):
    for path in tiny_sweep:
        df, a = records_serial_and_parallel(path, tmp_path, files=5)
        assert len(df) > 100 and np.isfinite(df.created).all()
