"""Per-operation records (commsim run --records) and Parquet tables (--parquet)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from commsim.cli import main
from commsim.config import load
from commsim.experiment import records
from commsim.experiment.runner import simulate
from commsim.metrics.collect import percentiles
from helpers import records_serial_and_parallel, same, same_but_events

SEED = 7


def _config(raw: dict) -> dict:
    return load(raw).points[0].config



def _frame(cfg: dict, seed: int = SEED):
    metrics, sim = simulate(cfg, seed, records=True)
    return metrics, records.table(sim, {}, 0, seed).to_pandas()


MM1 = {"pattern": "request_response", "duration": 200.0, "warmup": 20.0,
       "network": {"latency": 0},
       "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "10ms"}},
       "clients": {"mode": "async", "count": 10, "rate": 6.0},  # rho = 0.6
       "request_response": {"response_body": "0B"}}


def test_request_response_records_reproduce_latency_mean_and_p99_exactly(monkeypatch):
    from commsim.patterns import request_response

    cfg = _config(MM1)
    run_ahead = simulate(cfg, SEED).metrics
    metrics, df = _frame(cfg)
    # Records keep the event-driven path; without them this M/M/1 runs
    # ahead (the same results but for the CPU's sums of times in the last bits).
    same_but_events(run_ahead, metrics, ("server_jobs_mean", "server_sojourn_mean", "wait_mean"))
    monkeypatch.setattr(request_response, "RUN_AHEAD", False)
    same(simulate(cfg, SEED).metrics, metrics)  # recording changes nothing in the run
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
    same(plain, metrics)
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


def _not_recording(monkeypatch, pattern="pubsub"):
    """Make ``pattern`` a pattern without records (whichever patterns record)."""
    monkeypatch.setattr(records, "RECORDING", tuple(p for p in records.RECORDING if p != pattern))


def test_cli_refuses_records_for_a_pattern_that_does_not_record(tmp_path, capsys, monkeypatch):
    _not_recording(monkeypatch)
    path = tmp_path / "ps.yaml"
    path.write_text("name: ps\npattern: pubsub\nduration: 2s\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--records"]) == 2
    err = capsys.readouterr().err
    assert "--records" in err and "pubsub" in err
    assert not out.exists()


def _count_simulations(monkeypatch) -> list:
    """Count Simulation.run calls in this process (serial executor)."""
    from commsim.engine import Simulation

    calls = []
    real = Simulation.run

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Simulation, "run", counted)
    return calls


def test_records_are_taken_during_the_run_without_a_second_simulation(tiny_rr, tmp_path, monkeypatch):
    calls = _count_simulations(monkeypatch)
    out = tmp_path / "out"
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet", "--records"]) == 0
    assert len(calls) == 8  # 4 points x 2 replications, each simulated once
    assert len(list(out.glob("records-p*-r*.parquet"))) == 8
    assert not (out / ".commsim-staging").exists()


def test_records_are_the_same_serially_and_with_two_processes(tiny_rr, tmp_path):
    records_serial_and_parallel(tiny_rr, tmp_path, files=9)


def test_records_with_runs_in_the_store_compute_each_run_once(tiny_rr, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet"]) == 0  # fills .runs/
    before = (out / "runs.csv").read_text()
    calls = _count_simulations(monkeypatch)
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet", "--records"]) == 0
    assert len(calls) == 8 and len(list(out.glob("records-p*-r*.parquet"))) == 8
    assert (out / "runs.csv").read_text() == before


def test_python_api_records_true_and_a_folder(tmp_path, monkeypatch):
    import commsim
    from commsim.errors import ConfigError

    cfg = {"name": "api", "pattern": "request_response", "duration": 3.0, "warmup": 1.0,
           "replications": 2, "clients": {"count": 5},
           "sweep": {"request_response.request_body": ["0B", "4KiB"]}}
    res = commsim.run(cfg, records=True)
    df = res.read_records()
    assert set(zip(df["request_response.request_body"], df.replication)) == \
        {(b, r) for b in (0, 4096) for r in (0, 1)}
    for _, row in res.runs.iterrows():  # each run's rows give its own latency_mean
        mine = df[(df["request_response.request_body"] == row["request_response.request_body"])
                  & (df.replication == row["replication"]) & df.measured & (df.outcome == "ok")]
        assert np.isclose(mine.latency.mean(), row["latency_mean"], rtol=1e-12, atol=0)
    folder = tmp_path / "recs"
    res2 = commsim.run(cfg, records=folder)
    assert res2.records == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"records-p{i}-r{r}.parquet" for i in range(2) for r in range(2)] + ["records-units.csv"])
    pd.testing.assert_frame_equal(records.read(folder), df)
    # Nothing existing is overwritten without force=True (and nothing is staged left behind).
    with pytest.raises(ConfigError, match="force=True"):
        commsim.run(cfg, records=folder)
    (folder / "mine.txt").write_text("keep")
    one = dict(cfg, sweep={"request_response.request_body": ["0B"]})
    commsim.run(one, records=folder, force=True)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt", "records-p0-r0.parquet",
                                                        "records-p0-r1.parquet", "records-units.csv"]
    _not_recording(monkeypatch)
    with pytest.raises(ConfigError, match="records"):
        commsim.run({"name": "ps", "pattern": "pubsub", "duration": 2.0}, records=True)


def test_an_interrupted_run_with_records_leaves_the_folder_as_it_was(tiny_rr, tmp_path, monkeypatch):
    from commsim.experiment import executors

    out = tmp_path / "out"
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet"]) == 0
    before = sorted(p.name for p in out.iterdir())
    real, n = executors.execute, []

    def interrupt(job):
        n.append(1)
        if len(n) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(executors, "execute", interrupt)
    assert main(["run", str(tiny_rr), "--out", str(out), "--quiet", "--records"]) == 130
    assert sorted(p.name for p in out.iterdir()) == before  # no records, no staging folder


def test_the_records_example_in_docs_experiments_md_runs(tmp_path, monkeypatch):
    import doctest
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "experiments.md").read_text()
    section = text[text.index("## Per-operation records"):]
    blocks = re.findall(r"```pycon\n(.*?)```", section, re.S)
    assert blocks, "docs/experiments.md lost its records example"
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(blocks[0], {}, "experiments.md", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 6


def test_records_behind_a_topology():
    """The notification patterns behind a load balancer record like the plain ones."""
    raw = {"pattern": "sse", "duration": 3.0, "warmup": 0.5, "clients": {"count": 20},
           "topology": {"servers": 2}, "workload": {"event_rate": 2.0}}
    cfg = _config(raw)
    plain = simulate(cfg, SEED).metrics
    metrics, df = _frame(cfg)
    same(plain, metrics)
    got = df[df.measured & (df.outcome == "delivered")]
    assert len(got) == metrics["updates_delivered"] > 50


@pytest.mark.slow  # ~20 s on a busy 2-core machine (a Dask cluster starts); -m slow
def test_records_and_side_tables_are_the_same_on_a_dask_cluster(tiny_rr, tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="the optional 'distributed' package (extra 'dask') is not installed")
    from pathlib import Path

    storm = str(Path(__file__).resolve().parents[1] / "experiments" / "reconnect_storm.yaml")
    sets = [x for o in ["replications=1", "duration=3s", "warmup=1s", "clients.count=200",
                        "sweep.topology.reconnect_jitter=[0s]"] for x in ("--set", o)]
    assert main(["run", str(tiny_rr), "--out", str(tmp_path / "serial"), "--quiet", "--records"]) == 0
    assert main(["run", storm, *sets, "--out", str(tmp_path / "storm"), "--quiet"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = ["--executor", "dask", "--scheduler", cluster.scheduler_address]
        assert main(["run", str(tiny_rr), "--out", str(tmp_path / "dask"), "--quiet", "--records",
                     *dask]) == 0
        assert main(["run", storm, *sets, "--out", str(tmp_path / "storm-dask"), "--quiet", *dask]) == 0
    pd.testing.assert_frame_equal(records.read(tmp_path / "serial"), records.read(tmp_path / "dask"))
    assert (tmp_path / "storm" / "storm_timeseries.csv").read_text() == \
        (tmp_path / "storm-dask" / "storm_timeseries.csv").read_text()


def test_python_api_refusals_leave_no_folder(tmp_path):
    import commsim
    from commsim.errors import ConfigError

    cfg = {"name": "api", "pattern": "request_response", "duration": 2.0, "clients": {"count": 2}}
    with pytest.raises(ConfigError, match="records"):
        commsim.run(cfg, records=3)
    with pytest.raises(ConfigError, match="executor"):
        commsim.run(cfg, records=tmp_path / "r", executor="nonsense")
    assert list((tmp_path / "r").iterdir()) == []  # nothing staged left behind
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        commsim.run(cfg, records=tmp_path / "f")
