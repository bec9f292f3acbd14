"""Per-operation records (commsim run --records) and Parquet tables (--parquet)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from commsim.cli import main
from commsim.config import load
from commsim.experiment import records
from commsim.experiment.runner import simulate
from commsim.metrics.collect import percentiles

SEED = 7


def _config(raw: dict) -> dict:
    return load(raw).points[0].config


def _same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), k


def _frame(cfg: dict, seed: int = SEED):
    metrics, sim = records.simulate_recorded(cfg, seed)
    return metrics, records.table(sim, {}, 0, seed).to_pandas()


MM1 = {"pattern": "request_response", "duration": 200.0, "warmup": 20.0,
       "network": {"latency": 0},
       "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "10ms"}},
       "clients": {"mode": "async", "count": 10, "rate": 6.0},  # rho = 0.6
       "request_response": {"response_body": "0B"}}


def test_request_response_records_reproduce_latency_mean_and_p99_exactly():
    cfg = _config(MM1)
    plain = simulate(cfg, SEED).metrics
    metrics, df = _frame(cfg)
    _same_metrics(plain, metrics)  # recording changes nothing in the run
    assert list(df.columns) == [c for c, _u, _m in records.COLUMNS]
    assert (df.op == "request").all()
    ok = df[df.measured & (df.outcome == "ok")].sort_values("completed", kind="stable")
    assert len(ok) > 10_000
    # The same samples (the run's metric is over operations created in the window).
    mine = percentiles(ok.latency.to_numpy(), "latency", mean=True)
    assert mine["latency_mean"] == metrics["latency_mean"]
    assert mine["latency_p99"] == metrics["latency_p99"]
    assert (ok.latency == ok.completed - ok.created).all()
    # Every operation started is a row: finished or not by the end.
    assert set(df.outcome.astype(str)) <= {"ok", "unfinished"}
    assert df.completed.isna().sum() == (df.outcome == "unfinished").sum()
    assert df.client.between(0, 9).all()
    # Bytes: headers both ways (400 + 300 B by default) and the bodies (0 B here).
    assert (df.bytes == 700).all()


@pytest.mark.parametrize("pattern", ["short_polling", "long_polling", "sse", "push", "websocket"])
def test_notification_records_reproduce_latency_mean_and_counts(pattern):
    raw = {"pattern": pattern, "duration": 40.0, "warmup": 5.0, "clients": {"count": 40},
           "network": {"latency": "10ms"},
           "workload": {"event_rate": 0.5, "event_size": "300B",
                        "online_time": {"dist": "exponential", "mean": "8s"},
                        "offline_time": {"dist": "exponential", "mean": "2s"}}}
    if pattern == "sse":
        raw["sse"] = {"resume": False}
    cfg = _config(raw)
    plain = simulate(cfg, SEED).metrics
    metrics, df = _frame(cfg)
    _same_metrics(plain, metrics)
    assert (df.op == "update").all()
    got = df[df.measured & (df.outcome == "delivered")]
    assert len(got) == metrics["updates_delivered"] > 200
    assert percentiles(got.latency.to_numpy(), "latency", mean=True)["latency_mean"] \
        == metrics["latency_mean"]
    assert (df.measured & (df.outcome == "missed")).sum() == metrics["missed"]
    if pattern != "long_polling":  # offline clients lose updates in these models
        assert metrics["missed"] > 0
    assert df[df.outcome == "delivered"].client.notna().all()
    # every row carries the update's size and its client, delivered or missed
    assert (df.bytes == 300).all()
    assert df.client.notna().all()


def test_records_off_records_nothing():
    cfg = _config(MM1)
    run = simulate(cfg, SEED)
    assert all(len(o) == 0 for o in run.sim.recorder.operations.values())
    assert run.model.ops is None


@pytest.fixture
def tiny_rr(tmp_path):
    path = tmp_path / "rr.yaml"
    path.write_text("name: rr\npattern: request_response\nduration: 3s\nwarmup: 1s\n"
                    "replications: 2\nclients: {count: 5}\n"
                    "sweep:\n  request_response.chunk_size: [null, 1KiB]\n"
                    "  request_response.request_body: [0B, 4KiB]\n")
    return path


def test_cli_writes_documented_columns_and_parquet_tables(tiny_rr, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet", "--records", "--parquet"]) == 0
    files = sorted(p.name for p in out.glob("records-p*-r*.parquet"))
    assert files == [f"records-p{i}-r{r}.parquet" for i in range(4) for r in range(2)]
    runs = pd.read_csv(out / "runs.csv")
    params = ["request_response.chunk_size", "request_response.request_body"]
    documented = params + [c for c, _u, _m in records.COLUMNS]
    units = pd.read_csv(out / "records-units.csv")
    assert list(units.column) == documented and units.unit.notna().all()
    for i in range(4):
        for r in range(2):
            df = pd.read_parquet(out / f"records-p{i}-r{r}.parquet")
            assert list(df.columns) == documented
            row = runs.iloc[2 * i + r]
            assert (df.replication == r).all() and (df.seed == row["seed"]).all()
            ok = df[df.measured & (df.outcome == "ok")].sort_values("completed", kind="stable")
            assert np.isclose(ok.latency.mean(), row["latency_mean"], rtol=1e-12, atol=0)
    # Chunked uploads: 4 KiB in 1 KiB chunks is 4 exchanges of headers.
    df = pd.read_parquet(out / "records-p3-r0.parquet")
    assert (df.bytes == 4 * 700 + 4096 + 1024).all()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), runs,
                                  check_dtype=False)
    summary = pd.read_csv(out / "summary.csv")
    summary["unstable_reason"] = summary["unstable_reason"].astype(object).fillna("")  # CSV: "" reads as NaN
    pd.testing.assert_frame_equal(pd.read_parquet(out / "summary.parquet"), summary,
                                  check_dtype=False)  # (an empty text cell is '' in both)
    # A later run without --records/--parquet leaves no stale records behind.
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet"]) == 0
    assert not list(out.glob("records-*")) and not list(out.glob("*.parquet"))


def test_cli_refuses_records_for_a_pattern_that_does_not_record(tmp_path, capsys):
    path = tmp_path / "ps.yaml"
    path.write_text("name: ps\npattern: pubsub\nduration: 2s\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--records"]) == 2
    err = capsys.readouterr().err
    assert "--records" in err and "pubsub" in err
    assert not out.exists()


def test_records_that_do_not_reproduce_the_run_publish_nothing(tiny_rr, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real = records.simulate_recorded

    def drifted(cfg, seed):
        metrics, sim = real(cfg, seed)
        return {**metrics, "latency_mean": metrics["latency_mean"] * 1.5}, sim

    monkeypatch.setattr(records, "simulate_recorded", drifted)
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet", "--records"]) == 1
    assert "not reproducible" in capsys.readouterr().err
    assert not (out / "runs.csv").exists() and not list(out.glob("records-*"))
