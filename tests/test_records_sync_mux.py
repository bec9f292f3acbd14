"""Per-operation records (``--records``) of sync_async (plain and behind a
topology) and multiplexing: the rows give back the run's own metrics, the
run is the same with and without them, and they are the same serially and
with ``--jobs 2``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from commsim.config import load
from commsim.experiment import records
from commsim.experiment.runner import simulate
from commsim.metrics.collect import percentiles
from helpers import records_serial_and_parallel, same

SEED = 5


def _config(raw: dict) -> dict:
    return load(raw).points[0].config



def _run(raw: dict):
    """Metrics without records, metrics with records, the records, the sim."""
    cfg = _config(raw)
    plain = simulate(cfg, SEED).metrics
    metrics, sim = simulate(cfg, SEED, records=True)
    same(plain, metrics)  # recording changes nothing in the run
    df = records.table(sim, {}, 0, SEED).to_pandas()
    assert list(df.columns) == [c for c, _u, _m in records.COLUMNS]
    return metrics, df, sim


def _check_latency_and_counts(df, metrics, sim, op: str) -> None:
    """The rows of kind ``op`` give the run's throughput and latency metrics:
    answered inside the window = completed operations; created inside it and
    answered = the latency samples (the same values, in completion order)."""
    rows = df[df.op == op]
    answered = rows[rows.completed.notna()]
    in_window = ((answered.completed >= sim.start) & (answered.completed < sim.end)).sum()
    assert in_window == round(metrics["throughput"] * sim.duration)
    samples = answered[answered.measured].sort_values("completed", kind="stable")
    mine = percentiles(samples.latency.to_numpy(), "latency", mean=True)
    assert mine["latency_mean"] == metrics["latency_mean"]
    assert mine["latency_p99"] == metrics["latency_p99"]
    assert (rows.completed.isna() == (rows.outcome == "unfinished")).all()


# ------------------------------------------------------------- sync_async --
SYNC = {"pattern": "sync_async", "duration": 12.0, "warmup": 1.0,
        "network": {"latency": "20ms"}, "server": {"cores": 2},
        "clients": {"mode": "async", "count": 20, "rate": 25.0},  # 500/s, rho about 0.25
        "sync_async": {"commit": "async", "flush_interval": "100ms",
                       "crash_at": ["4s", "8.5s"], "restart_time": "0.5s"}}


def test_sync_async_records_give_the_metrics_and_mark_retries_and_lost_acks():
    metrics, df, sim = _run(SYNC)
    assert (df.op == "request").all() and df.client.between(0, 19).all()
    assert (df.bytes == 200 + 150).all()  # request and response headers (defaults)
    assert set(df.outcome.astype(str)) <= {"ok", "retried", "acked_lost", "unfinished"}
    _check_latency_and_counts(df, metrics, sim, "request")
    # Both crashes are inside the window, so every acknowledged write they
    # lost is one row (and no reset was given up: no loss).
    lost = df[df.outcome == "acked_lost"]
    assert metrics["crashes"] == 2 and len(lost) == metrics["acked_writes_lost"] > 20
    # ... each acknowledged (at its append: async commit) after the last
    # flush before a crash began (at most a flush interval, 100 ms, plus a
    # 1 ms flush, before it), and answered 20 ms later: some answers were
    # still on their way at the crash.
    crash = np.array([4.0, 8.5])
    at = crash[np.searchsorted(crash, lost.completed.to_numpy() - 0.02 - 1e-9)]
    acked = lost.completed - 0.02
    assert ((acked <= at + 1e-9) & (acked > at - 0.1 - 0.001 - 1e-9)).all()
    assert (lost.completed > at).any() and (lost.completed < at).any()
    # A retried request was reset and waited retry_backoff (100 ms) at least;
    # there are no more of them than resets.
    retried = df[df.outcome == "retried"]
    assert 0 < len(retried) <= metrics["requests_reset"]
    assert (retried.latency >= 0.1).all()


def test_sync_async_sync_commit_loses_no_acknowledged_write():
    sec = {k: v for k, v in SYNC["sync_async"].items() if k != "flush_interval"}  # async only
    raw = dict(SYNC, sync_async=dict(sec, commit="sync"))
    metrics, df, sim = _run(raw)
    assert metrics["acked_writes_lost"] == 0 and metrics["crashes"] == 2
    assert not (df.outcome == "acked_lost").any() and (df.outcome == "retried").any()
    _check_latency_and_counts(df, metrics, sim, "request")


def test_sync_async_a_request_the_link_gave_up_on_is_retried():
    raw = {"pattern": "sync_async", "duration": 6.0, "warmup": 1.0,
           "network": {"latency": "1ms", "loss": 0.05, "max_retries": 0},
           "clients": {"mode": "sync", "count": 10, "think_time": "10ms"},
           "sync_async": {"io_model": "event_loop"}}
    metrics, df, sim = _run(raw)
    assert metrics["requests_reset"] == 0 and metrics["dropped"] > 0
    retried = df[df.outcome == "retried"]
    assert len(retried) > 20 and (retried.latency >= 0.1).all()
    _check_latency_and_counts(df, metrics, sim, "request")


def test_sync_async_records_behind_a_topology():
    raw = {"pattern": "sync_async", "duration": 10.0, "warmup": 1.0,
           "network": {"latency": "1ms"}, "server": {"cores": 1},
           "clients": {"mode": "async", "count": 20, "rate": 40.0},  # 800/s
           "topology": {"servers": 3, "crash_at": ["4s", "7s"], "crash_server": 1, "mttr": "1s"},
           "sync_async": {"commit": "async", "flush_interval": "100ms"}}
    metrics, df, sim = _run(raw)
    _check_latency_and_counts(df, metrics, sim, "request")
    assert metrics["crashes"] == 2
    assert (df.outcome == "acked_lost").sum() == metrics["acked_writes_lost"] > 0
    retried = df[df.outcome == "retried"]
    assert 0 < len(retried) <= metrics["crash_resets"] and (retried.latency >= 0.1).all()


def test_sync_async_records_off_records_nothing():
    run = simulate(_config(SYNC), SEED)
    assert run.model.ops is None
    assert not run.sim.recorder.operations
    assert type(run.model.server).__name__ == "Instance"


# ----------------------------------------------------------- multiplexing --
def _mux(protocol: str, workload: str = "page", **mx) -> dict:
    return {"pattern": "multiplexing", "duration": 15.0, "warmup": 2.0,
            "clients": {"count": 4, "mode": "sync",
                        "think_time": {"dist": "exponential", "mean": "0.5s"}},
            "network": {"latency": "10ms", "loss": 0.01},
            "multiplexing": {"protocol": protocol, "workload": workload, "objects": 8,
                             "object_size": "3000B", **mx}}


@pytest.mark.parametrize("protocol,proxy", [("http1", "none"), ("http2", "mux"),
                                            ("http3", "none")])
def test_multiplexing_page_records_give_page_load_time_and_object_latency(protocol, proxy):
    metrics, df, sim = _run(_mux(protocol, dependency=0.5, proxy=proxy))
    assert set(df.op.astype(str)) == {"page", "request"}
    assert set(df.outcome.astype(str)) <= {"ok", "unfinished"}
    _check_latency_and_counts(df, metrics, sim, "page")
    assert metrics["page_load_time"] == metrics["latency_mean"]
    objs = df[(df.op == "request") & df.measured & df.completed.notna()]
    assert np.isclose(objs.latency.mean(), metrics["object_latency_mean"], rtol=1e-12, atol=0)
    # Every page answered had all its objects answered, each its own row.
    pages = df[df.op == "page"]
    done = pages.completed.notna()
    objects = df[df.op == "request"]
    assert 8 * done.sum() <= objects.completed.notna().sum() <= len(objects) <= 8 * len(pages)
    # (docs/multiplexing.md) A sync client's page owns the object rows of its
    # client created while it loaded, all answered by its end.
    for _, page in pages[done].iterrows():
        mine = objects[(objects.client == page.client) & (objects.created >= page.created)
                       & (objects.created < page.completed)]
        assert len(mine) == 8 and (mine.completed <= page.completed).all()
    # Bytes: a cold page is one connection for http2/http3: the first request
    # and response carry full headers (500 + 300 B), the 7 others 15 % (75 + 45 B);
    # http1 sends them uncompressed.
    headers = 8 * 800 if protocol == "http1" else 800 + 7 * 120
    assert (pages[done].bytes == headers + 8 * 3000).all()
    assert pages[~done].bytes.isna().all()


def test_multiplexing_api_records_one_row_per_request():
    raw = _mux("http2", "api")
    del raw["multiplexing"]["objects"]  # a page's (refused with the api workload)
    raw["clients"] = {"count": 2, "mode": "async", "rate": 40.0}
    metrics, df, sim = _run(raw)
    assert (df.op == "request").all()
    _check_latency_and_counts(df, metrics, sim, "request")
    assert math.isnan(metrics["page_load_time"])
    answered = df[df.completed.notna()]
    # headers in full on each client's first request, at 15 % afterwards
    assert set(answered.bytes) == {3800, 3120}
    assert (answered.bytes == 3800).sum() == 2


def test_multiplexing_records_off_records_nothing():
    run = simulate(_config(_mux("http2")), SEED)
    assert run.model.ops is None and not run.sim.recorder.operations


# -------------------------------------------------------------------- CLI --
@pytest.fixture
def tiny_sweep(tmp_path):
    """One experiment per pattern, 2 points x 2 replications each."""
    sync = tmp_path / "sa.yaml"
    sync.write_text("name: sa\npattern: sync_async\nduration: 2s\nwarmup: 0.5s\nreplications: 2\n"
                    "clients: {mode: async, count: 10, rate: 20/s}\n"
                    "sync_async: {commit: async, crash_at: [1.2s], restart_time: 0.2s}\n"
                    "sweep:\n  sync_async.io_model: [thread_pool, event_loop]\n")
    mux = tmp_path / "mx.yaml"
    mux.write_text("name: mx\npattern: multiplexing\nduration: 3s\nwarmup: 0.5s\nreplications: 2\n"
                   "clients: {count: 2, think_time: 0.2s}\nnetwork: {latency: 5ms, loss: 0.01}\n"
                   "multiplexing: {objects: 5}\n"
                   "sweep:\n  multiplexing.protocol: [http1, http2]\n")
    cluster = tmp_path / "sac.yaml"
    cluster.write_text("name: sac\npattern: sync_async\nduration: 2s\nwarmup: 0.5s\n"
                       "replications: 2\nclients: {mode: async, count: 10, rate: 30/s}\n"
                       "topology: {servers: 2, crash_at: [1.2s], mttr: 0.3s}\n"
                       "sync_async: {commit: async}\n"
                       "sweep:\n  sync_async.io_model: [thread_pool, event_loop]\n")
    return sync, mux, cluster


def test_records_are_the_same_serially_and_with_two_processes(tiny_sweep, tmp_path):
    for path in tiny_sweep:
        df, a = records_serial_and_parallel(path, tmp_path, files=2 * 2 + 1)  # 4 runs, units
        assert len(df) > 100
        runs = pd.read_csv(a / "runs.csv")
        key = "multiplexing.protocol" if path.stem == "mx" else "sync_async.io_model"
        op = "page" if path.stem == "mx" else "request"
        for _, row in runs.iterrows():  # each run's rows give its own latency_mean
            mine = df[(df[key] == row[key]) & (df.replication == row["replication"])
                      & df.measured & df.completed.notna() & (df.op == op)]
            assert np.isclose(mine.latency.mean(), row["latency_mean"], rtol=1e-12, atol=0)


def test_python_api_records_for_sync_async_and_multiplexing():
    import commsim

    for cfg in ({"name": "sa", "pattern": "sync_async", "duration": 2.0, "warmup": 0.5,
                 "clients": {"mode": "async", "count": 5, "rate": 20.0}},
                {"name": "mx", "pattern": "multiplexing", "duration": 2.0, "warmup": 0.5,
                 "clients": {"count": 2, "think_time": 0.2},
                 "multiplexing": {"objects": 4}}):
        res = commsim.run(cfg, records=True)
        df = res.read_records()
        op = "page" if cfg["pattern"] == "multiplexing" else "request"
        mine = df[df.measured & df.completed.notna() & (df.op == op)]
        assert np.isclose(mine.latency.mean(), res.runs.latency_mean[0], rtol=1e-12, atol=0)
