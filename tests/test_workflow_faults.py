"""Faults in the experiment workflow (issue 11): nothing lost, nothing hung,
never a traceback.

Each test reproduces one case of the issue on the command line (or the
Python API) and checks the promised outcome: a clear one-line error with the
documented exit status, the user's files untouched, results identical to an
uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

import commsim
from commsim.cli import main
from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment import lock, output
from commsim.experiment.runner import ExperimentFailed, run_experiment
from commsim.experiment.store import RunStore
from commsim.patterns import Pattern, registry
from commsim.patterns.request_response import RequestResponse
from helpers import duration_for

ROOT = Path(__file__).resolve().parents[1]


def tiny(**over) -> dict:
    """Four runs of a small request-response sweep (~0.02 s each)."""
    cfg = {"name": "tiny", "pattern": "request_response", "seed": 3, "duration": "0.2s",
           "replications": 2, "clients": {"count": 5, "mode": "async", "rate": "50/s"},
           "sweep": {"clients.rate": [10, 20]}}
    cfg.update(over)
    return cfg


def write(tmp_path: Path, cfg: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def files(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` (relative name: bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def results(folder: Path) -> dict[str, bytes]:
    """The result files (not the lock or the store)."""
    return {k: v for k, v in files(folder).items() if not k.startswith(".")}


def cli(*args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", "commsim", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs mounted at tmp_path/fs (root only; skipped otherwise)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> None:
    """Fill a filesystem to the last byte."""
    with open(mnt / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    for size in (4096, 512, 64, 1):  # the partial last blocks too
        try:
            with open(mnt / "filler", "ab") as fh:
                while True:
                    fh.write(b"\0" * size)
                    fh.flush()
        except OSError:
            pass


class Holder:
    """Another process holding a results folder's lock until :meth:`release`."""

    def __init__(self, folder: Path, digest: str):
        code = ("import sys; from commsim.experiment.lock import FolderLock; "
                f"FolderLock({str(folder)!r}, {digest!r}).acquire(); print('locked', flush=True); "
                "sys.stdin.read()")
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


# ------------------------------------------------------------ lost data --

def test_out_dotdot_is_the_working_directory_and_is_not_written_into(tmp_path):
    (tmp_path / "runs.csv").write_text("my own data\n")
    (tmp_path / "summary.csv").write_text("mine too\n")
    cfg = write(tmp_path, tiny())
    before = files(tmp_path)
    proc = cli("run", cfg, "--out", "newdir/..", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2
    assert "not commsim results" in proc.stderr and "Traceback" not in proc.stderr
    assert files(tmp_path) == before  # nothing replaced, no .runs/, no newdir/
    assert not (tmp_path / "newdir").exists()


def test_trace_out_dotdot_does_not_write_into_the_working_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    cfg = write(tmp_path, tiny())
    before = files(tmp_path)
    proc = cli("trace", cfg, "--out", "newdir/..", "--limit", "2", cwd=tmp_path)
    assert proc.returncode == 2 and "not commsim results" in proc.stderr
    assert files(tmp_path) == before and not (tmp_path / "newdir").exists()


def test_a_folder_of_other_files_is_refused_even_with_force(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main(["run", str(write(tmp_path, tiny())), "--out", str(out), "--force", "--quiet"]) == 2
    assert "not commsim results" in capsys.readouterr().err
    assert files(out) == {"notes.txt": b"mine\n"}


def test_a_run_into_a_folder_locked_by_another_configuration_is_refused(tmp_path, capsys):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    before = results(out)
    other = Holder(out, "another-config")
    try:
        rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "duration=0.3s", "--force"])
        err = capsys.readouterr().err
        assert rc == 2 and "in use by another commsim run" in err and "--wait" in err
        assert results(out) == before
        # --wait waits for the holder, then runs (and --force replaces).
        threading.Timer(0.5, other.release).start()
        t0 = time.monotonic()
        rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "duration=0.3s",
                   "--force", "--wait"])
        assert rc == 0 and time.monotonic() - t0 >= 0.4
        assert "waiting for the commsim run" in capsys.readouterr().err
        assert yaml.safe_load((out / "config.resolved.yaml").read_text())["duration"] == 0.3
    finally:
        other.release()


def test_concurrent_runs_of_different_configs_never_replace_each_other(tmp_path):
    slow = tiny(duration="3s", sweep={"clients.rate": [10, 20, 30, 40]})
    a, b = write(tmp_path, slow, "a.yaml"), write(tmp_path, dict(slow, seed=4), "b.yaml")
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "commsim", "run", str(a), "--out", str(out),
                              "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (out / lock.LOCK_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = cli("run", b, "--out", out, "--quiet")
    assert first.wait(timeout=120) == 0
    assert second.returncode == 2
    assert "in use by another commsim run" in second.stderr or "different configuration" in second.stderr
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["seed"] == 3


def test_concurrent_runs_of_one_config_compute_each_run_once(tmp_path):
    cfg = write(tmp_path, tiny(duration="2s", sweep={"clients.rate": [10, 20, 30]}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "commsim", "run", str(cfg), "--out", str(out)]
    first = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (out / lock.LOCK_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    _, err1 = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0
    computed = [int(e.split(" computed")[0].rsplit(" ", 1)[1]) for e in (err1, second.stderr)]
    assert sum(computed) == 6, (err1, second.stderr)  # 3 points x 2 replications, once each


# ------------------------------------------------------ memory and hangs --

@pytest.mark.parametrize("runs", [600, pytest.param(2000, marks=pytest.mark.slow)])
def test_memory_stays_flat_over_many_runs_in_one_process(runs):
    script = textwrap.dedent(f"""
        import commsim
        def rss():
            return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
        cfg = {{"name": "m", "pattern": "request_response", "seed": 1, "duration": "0.05s",
               "replications": 100, "clients": {{"count": 5, "mode": "async", "rate": "100/s"}}}}
        commsim.run(cfg)
        r0 = rss()
        for _ in range({runs} // 100):
            commsim.run(cfg)
        r1 = rss()
        config = commsim.load(cfg).points[0].config
        for seed in range({runs} // 2):  # the lowest-level API too
            commsim.simulate(config, seed)
        print(r1 - r0, rss() - r1)
    """)
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    growth, direct = map(float, proc.stdout.split()[-2:])
    # Before the fix: +300 MB for 600 runs, +1,000 MB for 2,000 (about 0.5 MB
    # per run).  The collector holds at most 64 runs or 32 MB of garbage.
    assert growth < 80, f"RSS grew {growth:.0f} MB over {runs} runs"
    assert direct < 80, f"RSS grew {direct:.0f} MB over {runs // 2} calls of commsim.simulate"


@pytest.fixture
def hungry_pattern(monkeypatch):
    """A request-response pattern whose model raises MemoryError for two cores."""

    class Hungry(RequestResponse):
        def __init__(self, sim):
            if sim.config["server"]["cores"] == 2:
                raise MemoryError
            super().__init__(sim)

    monkeypatch.setitem(registry(), "hungry_test", Pattern("hungry_test", "out of memory", Hungry,
                                                           ("request_response",)))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_worker_out_of_memory_ends_the_command_with_a_clear_error(tmp_path, capsys, hungry_pattern, jobs):
    cfg = write(tmp_path, tiny(pattern="hungry_test", sweep={"server.cores": [1, 2, 3]}))
    out = tmp_path / "out"
    t0 = time.monotonic()
    rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--jobs", jobs])
    err = capsys.readouterr().err
    assert rc == 1 and time.monotonic() - t0 < 60
    assert "MemoryError" in err and "server.cores=2" in err and "run the same command again" in err
    assert "Traceback" not in err
    assert not (out / "runs.csv").exists()  # nothing half-done published


def test_a_dead_worker_process_is_a_clear_error(tmp_path, capsys, monkeypatch):
    class Dies(RequestResponse):
        def __init__(self, sim):
            if sim.config["server"]["cores"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            super().__init__(sim)

    monkeypatch.setitem(registry(), "dies_test", Pattern("dies_test", "killed", Dies, ("request_response",)))
    cfg = write(tmp_path, tiny(pattern="dies_test", sweep={"server.cores": [1, 2, 3]}))
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--jobs", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "a worker process died" in err and "Traceback" not in err


# --------------------------------------------------------- tracebacks --

def test_a_garbage_scheduler_address_is_one_line_and_creates_nothing(tmp_path):
    proc = cli("run", write(tmp_path, tiny()), "--out", tmp_path / "o", "--executor", "dask",
               "--scheduler", "garbage://x")
    assert proc.returncode == 2 and "--scheduler" in proc.stderr and "garbage" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_patterns_write_to_an_impossible_path_is_one_line():
    proc = cli("patterns", "--write", "/proc/nope/x")
    assert proc.returncode == 2 and "--write" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unwritable_results_folder_is_refused_before_simulating(tmpfs, tmp_path):
    cfg = write(tmp_path, tiny())
    out = tmpfs / "res"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    before = files(out)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    t0 = time.monotonic()
    proc = cli("run", cfg, "--out", out, "--quiet", "--fresh")
    assert proc.returncode == 2 and "cannot write into" in proc.stderr and "Read-only" in proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - t0 < 20
    assert files(out) == before
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write into a read-only folder (the tmpfs variant covers root)")
def test_an_unwritable_results_folder_is_refused_before_simulating_chmod(tmp_path):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "res"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    before = files(out)
    for d in (out, out / ".runs"):
        d.chmod(0o555)
    try:
        proc = cli("run", cfg, "--out", out, "--quiet", "--fresh")
        assert proc.returncode == 2 and "cannot write into" in proc.stderr
        assert "Traceback" not in proc.stderr
        drop = lock.LOCK_NAME  # the lock file (ours) may name its last holder
        assert {k: v for k, v in files(out).items() if k != drop} == \
            {k: v for k, v in before.items() if k != drop}
    finally:
        for d in (out, out / ".runs"):
            d.chmod(0o755)


def test_api_bad_jobs_is_a_config_error():
    for jobs in (-3, 1.5, "2", True):
        with pytest.raises(ConfigError, match="jobs"):
            commsim.run(tiny(), jobs=jobs)


@pytest.fixture
def broken_pattern(monkeypatch):
    class Broken(RequestResponse):
        def __init__(self, sim):
            raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setitem(registry(), "broken_test", Pattern("broken_test", "always fails", Broken,
                                                           ("request_response",)))


def test_api_run_whose_every_run_failed_raises(broken_pattern, tmp_path, capsys):
    with pytest.raises(ExperimentFailed, match="every run failed .4 run.*OverflowError") as info:
        commsim.run(tiny(pattern="broken_test"))
    assert len(info.value.result.failures) == 4 and info.value.result.runs.empty
    # The command line writes the failures and exits 1.
    assert main(["run", str(write(tmp_path, tiny(pattern="broken_test"))), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 1
    assert "4 run(s) failed" in capsys.readouterr().err
    assert "OverflowError" in (tmp_path / "o" / "failures.csv").read_text()


@pytest.mark.slow  # ~16 s: a real scheduler and worker are started and the scheduler killed
def test_dask_scheduler_dying_mid_sweep_says_what_was_kept(tmp_path):
    pytest.importorskip("distributed")
    dask = Path(sys.executable).parent / "dask"
    if not dask.exists():
        pytest.skip("no dask command")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        worker = subprocess.Popen([str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1",
                                   "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # 30 runs of ~0.2 s each (duration measured here: see helpers.duration_for)
        spec = tiny(replications=1, clients={"count": 20, "mode": "async", "rate": "39/s"},
                    sweep={"clients.rate": list(range(10, 40))})
        cfg = write(tmp_path, dict(spec, duration=duration_for(spec, 0.2)))
        out = tmp_path / "out"
        run = subprocess.Popen([sys.executable, "-m", "commsim", "run", str(cfg), "--out", str(out),
                                "--quiet", "--executor", "dask", "--scheduler", address],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
        store = RunStore(out)
        deadline = time.monotonic() + 60
        while len(store) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        sched.kill()
        _, err = run.communicate(timeout=120)
        assert run.returncode == 1, err
        assert "lost the Dask scheduler" in err and "run the same command again" in err
        assert "Traceback" not in err
        kept = len(store)
        assert 2 <= kept < 30
        # Resuming (here serially) computes only the missing runs.
        proc = cli("run", cfg, "--out", out)
        assert proc.returncode == 0 and f"{30 - kept} computed, {kept} reused" in proc.stderr
    finally:
        for p in (worker, sched):
            if p is not None:
                p.kill()
                p.wait()


# ----------------------------------------------------- damaged stores --

def _damage(path: Path, kind: str) -> None:
    record = json.loads(path.read_text())
    if kind == "random bytes":
        path.write_bytes(random.Random(1).randbytes(200))
    elif kind == "null":
        path.write_text("null")
    elif kind == "list":
        path.write_text("[]")
    elif kind == "metrics a string":
        path.write_text(json.dumps({**record, "metrics": "x"}))
    elif kind == "metrics a list":
        path.write_text(json.dumps({**record, "metrics": [1, 2]}))
    elif kind == "a directory":
        path.unlink()
        path.mkdir()
        (path / "x").write_text("?")
    elif kind == "a tampered value":
        record["metrics"]["throughput"] *= 2
        path.write_text(json.dumps(record))
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["random bytes", "null", "list", "metrics a string", "metrics a list",
                                  "a directory", "a tampered value"])
def test_a_damaged_record_is_recomputed_with_a_warning_naming_it(tmp_path, capsys, kind):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    good = results(out)
    victim = sorted((out / ".runs").glob("*.json"))[0]
    _damage(victim, kind)
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"stored run {victim}" in err and "damaged" in err and "Traceback" not in err
    assert results(out) == good  # recomputed: the same results as before
    assert RunStore(out).get(victim.stem) is not None  # and stored again, valid


def test_warm_up_pilot_records_are_valid_records(tmp_path, capsys):
    cfg = write(tmp_path, tiny(warmup="auto", duration="2s"))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert any(p.stem.endswith("-mser5") for p in (out / ".runs").glob("*.json"))
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "damaged" not in capsys.readouterr().err


def test_a_regular_file_for_the_store_is_a_clear_error(tmp_path, capsys):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    for p in (out / ".runs").iterdir():
        p.unlink()
    (out / ".runs").rmdir()
    (out / ".runs").write_text("not a folder")
    before = files(out)
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert ".runs" in capsys.readouterr().err
    assert files(out) == before


@pytest.mark.parametrize("content", [b"[1, 2]\n", bytes(range(256))])
def test_a_damaged_config_resolved_yaml_is_a_clear_error(tmp_path, capsys, content):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    good = results(out)
    (out / "config.resolved.yaml").write_bytes(content)
    before = files(out)
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "config.resolved.yaml" in err and "damaged" in err and "--force" in err
    assert files(out) == before
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--force"]) == 0
    assert results(out) == good


# ------------------------------------------------------------ full disks --

def test_a_full_disk_is_a_non_zero_exit_and_keeps_the_old_results(tmpfs, tmp_path):
    cfg = write(tmp_path, tiny())
    out = tmpfs / "res"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    old = results(out)
    for p in (out / ".runs").glob("*.json"):
        p.unlink()  # so the runs are computed (and stored) again
    fill(tmpfs)
    proc = cli("run", cfg, "--out", out, "--quiet", "--set", "duration=0.3s", "--force")
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert results(out) == old  # nothing of the new configuration mixed in
    assert not (out / output.STAGING).exists()
    (tmpfs / "filler").unlink()
    proc = cli("run", cfg, "--out", out, "--quiet", "--set", "duration=0.3s", "--force")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["duration"] == 0.3


def _enospc_for(monkeypatch, predicate):
    real = output.atomic_write

    def failing(path, data):
        if predicate(Path(path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(output, "atomic_write", failing)


def test_a_figure_that_cannot_be_written_is_an_error_even_with_quiet(tmp_path, capsys, monkeypatch):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs
    _enospc_for(monkeypatch, lambda p: p.suffix == ".png")
    capsys.readouterr()
    rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "duration=0.3s", "--force"])
    err = capsys.readouterr().err
    assert rc == 1 and "No space left on device" in err and "figure" in err
    # The new tables are there, and no old figure beside them.
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["duration"] == 0.3
    assert not list(out.glob("*.png"))


def test_a_table_that_cannot_be_written_is_an_error_even_with_quiet(tmp_path, capsys, monkeypatch):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    old = results(out)
    _enospc_for(monkeypatch, lambda p: p.name == "summary.csv")
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "duration=0.3s", "--force"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "unchanged" in err
    assert results(out) == old


def test_store_write_failure_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from commsim.experiment import store as store_mod

    def failing(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(store_mod, "atomic_write", failing)
    assert main(["run", str(write(tmp_path, tiny())), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot store a finished run" in err and "Traceback" not in err


def test_an_interrupted_publish_is_finished_by_the_next_run(tmp_path, monkeypatch):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "duration=0.3s"]) == 0
    real_replace = os.replace
    calls = []

    def crash_after_two(src, dst):
        if Path(src).parent.name == output.STAGING and Path(dst).parent.name != output.STAGING:
            calls.append(dst)  # a file moved from the staging folder into place
            if len(calls) == 3:
                raise KeyboardInterrupt  # as if killed in the middle of moving files
        return real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", crash_after_two)
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--force"]) == 130
    monkeypatch.setattr(output.os, "replace", real_replace)
    assert (out / output.STAGING).is_dir()  # half moved
    fresh = tmp_path / "fresh"
    assert main(["run", str(cfg), "--out", str(fresh), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert results(out) == results(fresh)


# --------------------------------------------------- quiet, exit status --

def test_quiet_keeps_the_precision_warning(tmp_path, capsys):
    cfg = write(tmp_path, tiny(precision={"target": "0.01%", "max_replications": 3,
                                          "metrics": ["latency_mean"]}))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: precision 0.01%: not met" in err


def test_quiet_keeps_the_warm_up_warning(tmp_path, capsys, monkeypatch):
    from commsim.experiment import warmup

    real = warmup.detect_warmup

    def unsettled(exp, executor, store, progress):
        report = real(exp, executor, store, progress)
        progress.message("warning: MSER-5 found no steady state (injected)")
        return report

    monkeypatch.setattr(warmup, "detect_warmup", unsettled)
    cfg = write(tmp_path, tiny(warmup="auto", duration="2s"))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: MSER-5 found no steady state" in err and "detecting" not in err


def test_a_command_that_exits_2_creates_no_folder(tmp_path, capsys):
    cfg = write(tmp_path, tiny())
    out = tmp_path / "a" / "b"
    (tmp_path / "busy").mkdir()
    other = Holder(tmp_path / "busy", "x")
    try:
        for args in (["--jobs", "-1"], ["--executor", "dask"], ["--scheduler", "tcp://x:1"]):
            assert main(["run", str(cfg), "--out", str(out), "--quiet", *args]) == 2
            assert not (tmp_path / "a").exists()
        assert main(["run", str(cfg), "--out", str(tmp_path / "busy"), "--quiet"]) == 2
        assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == [lock.LOCK_NAME, ".runs"]
    finally:
        other.release()
    # A config error found after the folder was claimed leaves nothing either.
    proc = cli("run", cfg, "--out", out, "--set", "clients.count=0")
    assert proc.returncode == 2 and not (tmp_path / "a").exists()


# --------------------------------------------------------- kill -9 ------

def _kill_and_resume(tmp_path: Path, cfg: Path, delay: float, label: str) -> Path:
    out = tmp_path / label
    proc = subprocess.Popen([sys.executable, "-m", "commsim", "run", str(cfg), "--out", str(out),
                             "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = cli("run", cfg, "--out", out, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    return out


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_at_a_random_point_then_resume_gives_identical_results(tmp_path, trial):
    cfg = write(tmp_path, tiny(duration="1s", sweep={"clients.rate": [10, 20, 30]}))
    reference = tmp_path / "reference"
    assert main(["run", str(cfg), "--out", str(reference), "--quiet"]) == 0
    # Start-up (imports) takes ~1 s and the runs ~1 s more: kill anywhere in
    # there, including while files are written.
    delay = random.Random(trial).uniform(0.3, 3.0)
    out = _kill_and_resume(tmp_path, cfg, delay, f"killed{trial}")
    assert results(out) == results(reference), f"differs after a kill at {delay:.2f} s"
    assert not (out / output.STAGING).exists()


def test_a_report_that_cannot_be_written_is_one_line_and_exit_1(tmp_path, capsys):
    """`commsim report --out` into a folder that cannot exist: one line on
    stderr, exit 1, no traceback (every command's file errors end so)."""
    from commsim.cli import main

    results = Path(__file__).resolve().parent.parent / "results"
    assert main(["report", "--results", str(results), "--out", "/proc/nope/REPORT.md",
                 "--no-redraw"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("commsim: error: cannot access '/proc/nope")
    assert not any("Traceback" in line for line in err)


def test_a_section_added_by_a_newer_commsim_with_its_defaults_is_the_same_config(tmp_path):
    """Results written before a section existed (e.g. `topology`) are the same
    configuration as a rerun that leaves the new section at its defaults; a
    changed value in it still differs."""
    import yaml

    from commsim.config import dump_yaml, load
    from commsim.experiment import output

    raw = {"pattern": "sse", "duration": "1s", "clients": {"count": 3}}
    resolved = load(raw).resolved
    assert "topology" in resolved
    old = {k: v for k, v in yaml.safe_load(dump_yaml(resolved)).items() if k != "topology"}
    (tmp_path / "config.resolved.yaml").write_text(dump_yaml(old))
    assert output.config_differences(tmp_path, resolved) == []
    changed = load({**raw, "topology": {"servers": 2}}).resolved
    assert output.config_differences(tmp_path, changed) == ["topology"]
