"""Side tables are recorded during the run; figures and `commsim plot` read
them and never simulate (issue 10 item 5, issue 12)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from commsim.cli import main

ROOT = Path(__file__).resolve().parents[1]

PUBSUB = ("name: ps\npattern: pubsub\nduration: 3s\nwarmup: 0.5s\nreplications: 2\n"
          "pubsub: {subscribers: 2}\n"
          "sweep:\n  pubsub.delivery: [push, direct]\n  pubsub.slow_consumers: [0, 1]\n")

# (config, overrides, side tables, the figure drawn from them, runs)
CASES = {
    "pubsub": (PUBSUB, [], ["queue_depth.csv"], "queue_depth_slow_consumer.png", 8),
    "stateful": ("experiments/stateful_vs_stateless.yaml",
                 ["replications=1", "duration=6s", "warmup=1s"],
                 ["timeseries.csv", "servers.csv"], "timeline.png", 4),
    "reconnect_storm": ("experiments/reconnect_storm.yaml",
                        ["replications=2", "duration=3s", "warmup=1s", "clients.count=300",
                         "sweep.topology.reconnect_jitter=[0s, 1s]"],
                        ["storm_timeseries.csv"], "storm_timeseries.png", 8),
}


def _config(case: str, tmp_path: Path) -> tuple[str, list[str]]:
    cfg, overrides, *_ = CASES[case]
    if cfg.startswith("name:"):
        path = tmp_path / f"{case}.yaml"
        path.write_text(cfg)
        cfg = str(path)
    else:
        cfg = str(ROOT / cfg)
    return cfg, [x for o in overrides for x in ("--set", o)]


def _refuse_simulation(monkeypatch) -> None:
    from commsim.engine import Simulation
    from commsim.experiment import runner

    def refuse(*a, **k):
        raise AssertionError("a figure simulated")

    monkeypatch.setattr(Simulation, "run", refuse)
    monkeypatch.setattr(runner, "simulate", refuse)


def _count_simulations(monkeypatch) -> list:
    from commsim.engine import Simulation

    calls, real = [], Simulation.run

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Simulation, "run", counted)
    return calls


@pytest.mark.parametrize("case", sorted(CASES))
def test_side_tables_are_recorded_by_the_runs_and_plot_reads_them(case, tmp_path, monkeypatch, capsys):
    cfg, sets = _config(case, tmp_path)
    _cfg, _o, tables, figure, runs = CASES[case]
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        calls = _count_simulations(m)
        assert main(["run", cfg, *sets, "--out", str(out), "--quiet"]) == 0
    assert len(calls) == runs  # the runs themselves, and nothing for the figures
    written = {t: (out / t).read_text() for t in tables}
    assert all(len(text.splitlines()) > 3 for text in written.values())
    assert (out / figure).is_file()
    (out / figure).unlink()
    capsys.readouterr()
    _refuse_simulation(monkeypatch)
    assert main(["plot", str(out)]) == 0
    assert "no simulation" in capsys.readouterr().err
    assert (out / figure).is_file()
    assert {t: (out / t).read_text() for t in tables} == written


def test_side_tables_are_the_same_serially_and_with_two_processes(tmp_path):
    cfg, sets = _config("reconnect_storm", tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", cfg, *sets, "--out", str(a), "--quiet"]) == 0
    assert main(["run", cfg, *sets, "--out", str(b), "--quiet", "--jobs", "2"]) == 0
    assert (a / "storm_timeseries.csv").read_text() == (b / "storm_timeseries.csv").read_text()


def test_a_stored_run_keeps_its_side_series(tmp_path, monkeypatch):
    """Runs reused from .runs/ carry the series: the figures need no run."""
    cfg, sets = _config("pubsub", tmp_path)
    out = tmp_path / "out"
    assert main(["run", cfg, *sets, "--out", str(out), "--quiet"]) == 0
    before = (out / "queue_depth.csv").read_text()
    (out / "queue_depth.csv").unlink()
    _refuse_simulation(monkeypatch)
    assert main(["run", cfg, *sets, "--out", str(out), "--quiet"]) == 0  # every run reused
    assert (out / "queue_depth.csv").read_text() == before


def test_python_api_result_plot_draws_from_the_recorded_series(tmp_path, monkeypatch):
    import commsim

    cfg, _ = _config("pubsub", tmp_path)
    result = commsim.run(cfg)
    assert sorted(result.side) == [1, 3]  # replication 0 of the slow-consumer points
    _refuse_simulation(monkeypatch)
    figs = result.plot(tmp_path / "figs")
    assert "queue_depth_slow_consumer.png" in {p.name for p in figs}
    assert (tmp_path / "figs" / "queue_depth.csv").is_file()


@pytest.mark.parametrize("damage", ["missing", "stale"])
def test_a_missing_or_stale_side_table_is_said_and_never_simulated(damage, tmp_path, monkeypatch, capsys):
    from commsim.experiment.report import draw_figures, load_result

    folder = tmp_path / "pubsub"
    shutil.copytree(ROOT / "results" / "pubsub", folder)
    table = folder / "queue_depth.csv"
    if damage == "missing":
        table.unlink()
    else:
        head, rest = table.read_text().split("\n", 1)
        table.write_text(head.rsplit(" ", 1)[0] + " 0000000000000000\n" + rest)
    kept = table.read_text() if table.exists() else None
    (folder / "queue_depth_slow_consumer.png").unlink()
    _refuse_simulation(monkeypatch)
    warnings: list[str] = []
    records = draw_figures(load_result(folder), folder, ("png",), warn=warnings.append)
    drawn = {r["file"] for r in records}
    assert "queue_depth_slow_consumer.png" not in drawn
    assert {"fanout_cost.png", "slow_consumer_impact.png"} <= drawn  # the others are drawn
    assert len(warnings) == 1 and "queue_depth.csv" in warnings[0] and "commsim run" in warnings[0]
    assert ("missing" if damage == "missing" else "another configuration") in warnings[0]
    assert (table.read_text() if table.exists() else None) == kept  # never rewritten from nothing
    capsys.readouterr()
    assert main(["plot", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "never re-simulate" in err and f"commsim run CONFIG --out {folder}" in err
    assert not (folder / "queue_depth_slow_consumer.png").exists()


def test_no_figure_module_calls_the_simulator():
    """Figures read results: no figure module imports or calls a simulation."""
    for path in sorted((ROOT / "commsim" / "figures").glob("*.py")):
        text = path.read_text()
        for word in ("simulate(", "Simulation(", ".run()", "pattern.model("):
            assert word not in text, f"{path.name} contains {word!r}"


def test_a_stored_run_without_side_series_is_computed_again_with_them(tmp_path, monkeypatch):
    """A run stored before side series were kept: only those runs are computed again."""
    import json

    from commsim.experiment.store import RunStore

    cfg, sets = _config("pubsub", tmp_path)
    out = tmp_path / "out"
    assert main(["run", cfg, *sets, "--out", str(out), "--quiet"]) == 0
    before = (out / "queue_depth.csv").read_text()
    store = RunStore(out)
    stripped = 0
    for key in store.keys():
        rec = json.loads(store.path(key).read_text())
        if "side" in rec:
            rec.pop("side")
            rec.pop("checksum")
            rec.pop("key")
            store.put(key, rec)
            stripped += 1
    assert stripped == 2  # replication 0 of the two slow-consumer points
    (out / "queue_depth.csv").unlink()
    calls = _count_simulations(monkeypatch)
    assert main(["run", cfg, *sets, "--out", str(out), "--quiet"]) == 0
    assert len(calls) == 2
    assert (out / "queue_depth.csv").read_text() == before
