"""Experiments at scale (issue 7): executors, resuming, failures, refusing to
overwrite another configuration's results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from commsim.cli import main
from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment.runner import run_experiment
from commsim.experiment.store import RunStore, run_key
from commsim.patterns import Pattern, registry
from commsim.patterns.request_response import RequestResponse
from helpers import duration_for

ROOT = Path(__file__).resolve().parents[1]


def base_config(**over) -> dict:
    """An M/M/1-like request-response sweep; each run takes ~0.05-0.1 s."""
    cfg = {
        "name": "scale",
        "pattern": "request_response",
        "seed": 11,
        "duration": "1s",
        "replications": 2,
        "clients": {"count": 20, "mode": "async", "rate": "20/s"},
        "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
        "sweep": {"clients.rate": [10, 20, 30]},
    }
    cfg.update(over)
    return cfg


def write_config(tmp_path: Path, cfg: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_serial_parallel_and_stored_runs_give_identical_runs_csv(tmp_path):
    cfg = write_config(tmp_path, base_config())
    outs = {}
    for label, extra in {"serial": [], "jobs2": ["--jobs", "2"],
                         "processes1": ["--executor", "processes", "--jobs", "1"]}.items():
        out = tmp_path / label
        assert main(["run", str(cfg), "--out", str(out), "--quiet", *extra]) == 0
        outs[label] = (out / "runs.csv").read_bytes()
    assert outs["serial"] == outs["jobs2"] == outs["processes1"]
    # Re-running reuses every stored run and still writes the same bytes.
    assert main(["run", str(cfg), "--out", str(tmp_path / "serial"), "--quiet", "--jobs", "2"]) == 0
    assert (tmp_path / "serial" / "runs.csv").read_bytes() == outs["serial"]
    header = outs["serial"].decode().splitlines()[0].split(",")
    assert header[:3] == ["clients.rate", "replication", "seed"]
    assert "wall_s" not in header  # wall-clock time is never reproducible
    # 3 points x 2 replications, in task order (point, then replication)
    assert len(outs["serial"].decode().splitlines()) == 1 + 6


def test_dask_cluster_gives_identical_runs_csv(tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="the optional 'distributed' package (extra 'dask') is not installed")
    cfg = write_config(tmp_path, base_config())
    assert main(["run", str(cfg), "--out", str(tmp_path / "serial"), "--quiet"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        rc = main(["run", str(cfg), "--out", str(tmp_path / "dask"), "--quiet",
                   "--executor", "dask", "--scheduler", cluster.scheduler_address])
    assert rc == 0
    assert (tmp_path / "dask" / "runs.csv").read_bytes() == (tmp_path / "serial" / "runs.csv").read_bytes()


def test_dask_without_scheduler_is_a_config_error(tmp_path, capsys):
    cfg = write_config(tmp_path, base_config())
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--executor", "dask"]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    # 8 runs of ~0.25 s each; the process is killed (SIGKILL, no clean-up at
    # all) once at least two runs are stored, six runs (~1.5 s) before the
    # sweep could have finished (the store is polled every 20 ms).
    cfg = base_config(replications=1, sweep={"clients.rate": [10, 12, 14, 16, 18, 20, 22, 24]})
    cfg["duration"] = duration_for(dict(cfg, clients={**cfg["clients"], "rate": "24/s"}), 0.25)
    path = write_config(tmp_path, cfg)
    out = tmp_path / "out"
    store = RunStore(out)
    proc = subprocess.Popen([sys.executable, "-m", "commsim", "run", str(path), "--out", str(out), "--quiet"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(store) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = store.keys()
    assert 2 <= len(stored) < 8, f"kill did not land mid-sweep ({len(stored)} runs stored)"
    assert not (out / "runs.csv").exists()  # tables are written only at the end
    before = {k: os.stat(store.path(k)).st_mtime_ns for k in stored}

    exp = load(path)
    result = run_experiment(exp, store=store)
    assert result.reused == len(stored)
    assert result.computed == 8 - len(stored)
    assert {k: os.stat(store.path(k)).st_mtime_ns for k in stored} == before  # not rewritten
    assert len(store) == 8
    # Same rows as a run that was never interrupted.
    fresh = run_experiment(load(path))
    assert result.runs.equals(fresh.runs)
    # No temporary files are left behind in the results folder (a kill during a
    # store write can leave a hidden .tmp in .runs/, which is ignored).
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_changing_a_parameter_recomputes_only_affected_runs(tmp_path):
    out = tmp_path / "out"
    store = RunStore(out)
    first = run_experiment(load(base_config()), store=store)
    assert (first.computed, first.reused) == (6, 0)
    # One new sweep value and one more replication: 3 new points x ... only the new runs.
    second = run_experiment(load(base_config(replications=3, sweep={"clients.rate": [10, 20, 40]})), store=store)
    # rate 10, 20: replications 0,1 reused, 2 new; rate 40: 3 new.
    assert (second.computed, second.reused) == (2 + 3, 4)
    # A parameter outside the sweep changes every run's config: nothing reused.
    third = run_experiment(load(base_config(server={"cores": 2})), store=store)
    assert (third.computed, third.reused) == (6, 0)
    # Experiment-level keys (name, replications) do not change a run's key.
    exp = load(base_config(name="other"))
    cfg0 = exp.points[0].config
    assert run_key(cfg0, 5) == run_key({**cfg0, "name": "x", "replications": 9}, 5)
    assert run_key(cfg0, 5) != run_key(cfg0, 6)


def test_results_of_another_config_are_not_overwritten(tmp_path, capsys):
    path = write_config(tmp_path, base_config())
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    rc = main(["run", str(path), "--out", str(out), "--quiet", "--set", "server.cores=2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "different configuration" in err and "server.cores" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # --force replaces them, and says so.
    assert main(["run", str(path), "--out", str(out), "--set", "server.cores=2", "--force"]) == 0
    assert "replacing results" in capsys.readouterr().err
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["server"]["cores"] == 2


@pytest.fixture
def flaky_pattern(monkeypatch):
    """A request-response pattern whose model raises for server.cores == 2."""

    class Flaky(RequestResponse):
        def __init__(self, sim):
            if sim.config["server"]["cores"] == 2:
                raise ZeroDivisionError("cores=2 is broken on purpose")
            super().__init__(sim)

    pattern = Pattern("flaky_test", "fails for two cores", Flaky, ("request_response",))
    monkeypatch.setitem(registry(), "flaky_test", pattern)
    return pattern


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failing_run_is_reported_and_does_not_stop_the_others(tmp_path, capsys, flaky_pattern, jobs):
    cfg = base_config(pattern="flaky_test", sweep={"server.cores": [1, 2, 3]})
    path = write_config(tmp_path, cfg)
    out = tmp_path / "out"
    rc = main(["run", str(path), "--out", str(out), "--jobs", jobs])
    err = capsys.readouterr().err
    assert rc == 1
    assert "server.cores=2, replication=0" in err and "ZeroDivisionError" in err
    runs = (out / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 4  # cores 1 and 3, two replications each
    failures = (out / "failures.csv").read_text()
    assert "cores=2 is broken on purpose" in failures and "server.cores" in failures
    # Failed runs are not stored: the next run tries them again.
    assert len(RunStore(out)) == 4


def test_dask_executor_without_distributed_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    cfg = write_config(tmp_path, base_config())
    rc = main(["run", str(cfg), "--out", str(tmp_path / "o"), "--executor", "dask",
               "--scheduler", "tcp://127.0.0.1:1"])
    assert rc == 2
    assert "pip install 'commsim[dask]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_python_api_runs_in_parallel_and_keeps_the_old_progress_callback():
    calls = []
    exp = load(base_config())
    a = run_experiment(exp, lambda done, total: calls.append((done, total)))
    b = run_experiment(load(base_config()), jobs=2)
    assert calls[-1] == (6, 6) and len(calls) == 6
    assert a.runs.equals(b.runs) and a.summary.equals(b.summary)
    assert a.computed == 6 and a.reused == 0 and not a.failures
    assert list(a.timings.columns) == ["clients.rate", "replication", "wall_s", "reused"]


def test_a_key_added_to_the_schema_is_not_another_configuration(tmp_path):
    from commsim.experiment import output

    path = write_config(tmp_path, base_config())
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    old = yaml.safe_load((out / "config.resolved.yaml").read_text())
    del old["clients"]["count"]  # as written by a commsim without that key
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    exp = load(path)
    assert output.check_target(out, exp.resolved) == []
    # ... but a changed value, or a top-level key, still is.
    old["clients"]["mode"] = "sync"
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.raises(ConfigError, match="clients.mode"):
        output.check_target(out, exp.resolved)
