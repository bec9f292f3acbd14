"""commsim plot / report / patterns and progress output (issue 7)."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from commsim.cli import main
from commsim.config import load
from commsim.config.schema import SECTIONS, TOP_LEVEL
from commsim.errors import ConfigError
from commsim.experiment import executors, reference
from commsim.experiment.progress import Progress
from commsim.patterns import registry

ROOT = Path(__file__).resolve().parents[1]


def config(**over) -> dict:
    cfg = {
        "name": "rep",
        "pattern": "request_response",
        "seed": 4,
        "duration": "0.5s",
        "replications": 2,
        "clients": {"count": 20, "mode": "async", "rate": "20/s"},
        "sweep": {"clients.rate": [10, 20], "server.cores": [1, 2]},
        "plots": [{"name": "lat", "x": "clients.rate", "y": "latency_mean", "hue": "server.cores",
                   "logy": True}],
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def _finished_once(tmp_path_factory):
    base = tmp_path_factory.mktemp("finished")
    path = base / "rep.yaml"
    path.write_text(yaml.safe_dump(config()))
    assert main(["run", str(path), "--out", str(base / "results" / "rep"), "--quiet"]) == 0
    return base


@pytest.fixture
def finished(_finished_once, tmp_path):
    """A finished experiment (computed once per module, copied per test)."""
    shutil.copy(_finished_once / "rep.yaml", tmp_path / "rep.yaml")
    shutil.copytree(_finished_once / "results", tmp_path / "results")
    return tmp_path / "rep.yaml", tmp_path / "results" / "rep"


def test_run_draws_the_plots_section(finished):
    _path, out = finished
    assert (out / "lat.png").stat().st_size > 1000
    records = json.loads((out / "figures.json").read_text())
    lat = next(r for r in records if r["file"] == "lat.png")
    assert lat["x"] == "clients.rate" and lat["hue"] == "server.cores" and lat["logy"] is True
    assert lat["seed"] == 4 and lat["replications"] == 2


def test_plot_redraws_without_simulating(finished, monkeypatch, capsys):
    path, out = finished

    def boom(*_a, **_k):
        raise AssertionError("commsim plot must not simulate")

    monkeypatch.setattr("commsim.experiment.runner.simulate", boom)
    monkeypatch.setattr("commsim.experiment.executors.execute", boom)
    # Tune the figure in the YAML: another metric, bars, a PDF for a paper.
    cfg = config()
    cfg["plots"] = [{"name": "tput", "x": "server.cores", "y": ["throughput", "latency_p99"],
                     "hue": "clients.rate", "kind": "bar", "errorbars": True}]
    path.write_text(yaml.safe_dump(cfg))
    runs_before = (out / "runs.csv").read_bytes()
    assert main(["plot", str(path), "--out", str(out), "--formats", "png,pdf"]) == 0
    assert (out / "tput.png").exists() and (out / "tput.pdf").read_bytes()[:4] == b"%PDF"
    assert (out / "runs.csv").read_bytes() == runs_before
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["plots"][0]["name"] == "tput"  # the folder describes its figures
    # From the results folder alone, too.
    assert main(["plot", str(out)]) == 0


def test_plot_refuses_results_of_another_config(finished, capsys):
    path, out = finished
    assert main(["plot", str(path), "--out", str(out), "--set", "server.service_time=2ms"]) == 2
    assert "different configuration" in capsys.readouterr().err
    assert main(["plot", str(path), "--out", str(out / "nowhere")]) == 2


@pytest.mark.parametrize("plots,key,words", [
    ({"x": "clients.rate"}, "plots", "expected a list"),
    ([{"x": "clients.rate"}], "plots[0].y", "missing"),
    ([{"x": "clients.rat", "y": "latency_mean"}], "plots[0].x", "did you mean 'clients.rate'"),
    ([{"x": "clients.rate", "y": "latency"}], "plots[0].y", "expected a metric name"),
    ([{"x": "clients.rate", "y": "throughput", "hue": "clients.rate"}], "plots[0].hue", "other than x"),
    ([{"x": "clients.rate", "y": "throughput", "kind": "pie"}], "plots[0].kind", "'line' or 'bar'"),
    ([{"x": "clients.rate", "y": "throughput", "logx": "yes"}], "plots[0].logx", "true or false"),
    ([{"x": "clients.rate", "y": "throughput", "colour": "red"}], "plots[0].colour", "unknown key"),
    ([{"x": "clients.rate", "y": "throughput"}, {"x": "server.cores", "y": "throughput",
                                                 "name": "throughput_vs_clients_rate"}],
     "plots[1].name", "distinct"),
])
def test_plots_section_errors(tmp_path, capsys, plots, key, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config(plots=plots)))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == key and words in err.value.message
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert f"{key}:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_lists_every_experiment_with_table_figures_and_seed(finished, tmp_path):
    path, out = finished
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(config(name="other", seed=9, sweep={"clients.rate": [10, 20]},
                                           plots=[{"x": "clients.rate", "y": "throughput"}])))
    assert main(["run", str(other), "--out", str(out.parent / "other"), "--quiet"]) == 0
    assert main(["report", "--results", str(out.parent)]) == 0
    text = (out.parent / "REPORT.md").read_text()
    assert "## rep" in text and "## other" in text
    # key metrics in human units, swept values as written, steady-state column
    assert "| clients.rate | server.cores | replications | throughput (/s) | latency mean (ms) |" in text
    assert "| 10/s | 1 | 2 |" in text and "| steady state |" in text
    assert (out.parent / "report.html").exists()
    assert "![lat](rep/lat.png)" in text and "[PDF](rep/lat.pdf)" in text
    assert (out / "lat.pdf").exists() and (out.parent / "other" / "throughput_vs_clients_rate.pdf").exists()
    assert "seed 4" in text and "seed 9" in text
    assert " ± " in text  # confidence half-widths


def test_report_without_results_is_an_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path)]) == 2
    assert "no experiment results" in capsys.readouterr().err


def test_patterns_lists_every_pattern_parameter_default_and_unit(capsys):
    assert main(["patterns"]) == 0
    text = capsys.readouterr().out
    for name, pattern in registry().items():
        assert f"{name}: {pattern.summary}" in text
        for s in pattern.sections:
            for key in SECTIONS[s].fields:
                assert f"{s}.{key}" in text
    for key in TOP_LEVEL:
        assert key in text
    assert re.search(r"network\.latency +0s +\[s \(distribution\)\]", text)
    assert "server.cores" in text and "[integer]" in text


def test_docs_reference_is_up_to_date():
    doc = ROOT / "docs" / "patterns.md"
    assert doc.exists(), "run: python -m commsim patterns --markdown --write docs/patterns.md"
    assert doc.read_text() == reference.markdown(), (
        "docs/patterns.md is stale; regenerate it with "
        "`python -m commsim patterns --markdown --write docs/patterns.md`")


def test_progress_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    t = [0.0]
    p = Progress(stream=buf, tty=False, min_interval=2.0, clock=lambda: t[0])
    p.start(10, reused=4)
    for i in range(6):
        t[0] += 1.0
        p.run_done(i, True, f"run {i}")
    p.close()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "4/10 runs already stored, computing 6"
    assert "\r" not in buf.getvalue()
    assert lines[-1].startswith("10/10 runs 100%")
    # thinned to about one line per 2 s, plus the last
    assert 3 <= len(lines) <= 5
    assert "ETA" in lines[1]


def test_progress_bar_on_a_terminal_has_an_eta():
    buf = io.StringIO()
    t = [0.0]
    p = Progress(stream=buf, tty=True, clock=lambda: t[0])
    p.start(4)
    t[0] = 10.0
    p.run_done(0)
    out = buf.getvalue()
    assert "\r" in out and "[######" in out and "1/4 runs" in out
    assert "ETA 0:30" in out  # 1 run per 10 s, 3 left
    p.close()
    assert buf.getvalue().endswith("\n")


def test_long_run_reports_simulated_time(monkeypatch):
    # A watcher thread reads the simulation clock; it never adds events, so
    # the run's metrics (including the event count) are unchanged.
    seen = []
    monkeypatch.setattr(executors, "SIM_PROGRESS_INTERVAL", 0.002)
    # Long enough (~0.1-0.3 s of wall time) for the watcher to wake several times.
    exp = load(config(duration="100s", sweep={}, plots=None, replications=1))
    job = executors.Job(0, exp.points[0].config, {}, 0, 123)
    ex = executors.SerialExecutor(lambda i, now, end: seen.append((i, now, end)))
    watched = next(iter(ex.run([job])))
    plain = executors.execute(job)
    assert watched["ok"] and watched["metrics"] == plain["metrics"]
    assert seen, "no simulated-time progress was reported"
    assert all(i == 0 and 0 <= now <= end == 100.0 for i, now, end in seen)
    assert seen == sorted(seen)


def test_sim_time_progress_line():
    buf = io.StringIO()
    t = [100.0]
    p = Progress(stream=buf, tty=False, clock=lambda: t[0])
    p.start(1)
    p.sim_time(0, 30.0, 60.0)
    assert "run 1: simulated 30 s of 60 s (50%)" in buf.getvalue()


def test_report_no_redraw_lists_existing_figures(finished):
    _path, out = finished
    (out / "figures.json").unlink()
    (out / "extra.png").write_bytes((out / "lat.png").read_bytes())
    before = sorted(p.name for p in out.iterdir())
    assert main(["report", "--results", str(out.parent), "--no-redraw"]) == 0
    text = (out.parent / "REPORT.md").read_text()
    assert "![extra](rep/extra.png)" in text and "![lat](rep/lat.png)" in text
    assert sorted(p.name for p in out.iterdir()) == before  # nothing drawn or written there


def test_a_new_run_refreshes_the_pdfs_a_report_made(finished):
    """After `commsim report` drew PDFs, a later `commsim run` redraws them
    too (and keeps listing them), instead of leaving PDFs of old results."""
    path, out = finished
    assert main(["report", "--results", str(out.parent)]) == 0
    pdf = out / "lat.pdf"
    assert pdf.exists()
    before = pdf.stat().st_mtime_ns
    assert main(["run", str(path), "--out", str(out), "--quiet", "--fresh"]) == 0
    assert pdf.stat().st_mtime_ns > before
    lat = next(r for r in json.loads((out / "figures.json").read_text()) if r["file"] == "lat.png")
    assert "pdf" in lat["formats"]


def test_every_pattern_says_what_every_network_key_does():
    """Issue 10: each network.* key takes effect in every pattern or is
    refused; each pattern states which, per group of keys, for
    docs/patterns.md.  A new network key must join a group (and so be
    described by every pattern)."""
    from commsim.config.schema import SECTIONS
    from commsim.patterns import registry
    from commsim.patterns.base import NETWORK_GROUPS

    grouped = {k for keys in NETWORK_GROUPS.values() for k in keys}
    assert grouped == set(SECTIONS["network"].fields), "a network key belongs to no group"
    for name, pattern in registry().items():
        missing = [g for g in NETWORK_GROUPS if not pattern.network.get(g)]
        assert not missing, f"pattern {name} does not say what network {missing} do there"
