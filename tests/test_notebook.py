"""Using commsim from Python and notebooks (issue 12 item 8): no backend
switching at import or when drawing, figures from a Result, progress=True,
a live progress line in a notebook."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

import commsim
from commsim.experiment.progress import Progress

ROOT = Path(__file__).resolve().parents[1]


def _raw(**over):
    raw = {"name": "nb", "pattern": "request_response", "seed": 3, "duration": "0.5s",
           "replications": 2, "clients": {"count": 10, "mode": "async", "rate": "20/s"},
           "sweep": {"request_response.encoding": ["json", "protobuf"]}}
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def result():
    return commsim.run(_raw())


def test_import_and_drawing_leave_the_backend_alone(tmp_path):
    # A fresh interpreter, as a notebook kernel: pick a backend, import every
    # figure module, draw a Result's figures; the backend must be unchanged.
    code = f"""
import matplotlib
matplotlib.use("svg")
import commsim, commsim.figures, commsim.figures.topology, commsim.figures.notifications
import commsim.figures.pubsub, commsim.figures.sync_async, commsim.figures.multiplexing
import commsim.figures.request_response, commsim.experiment.plotspec, commsim.cli
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
r = commsim.run({_raw(replications=1)!r})
paths = r.plot({str(tmp_path)!r})
assert paths and all(p.exists() for p in paths), paths
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
print("ok", len(paths))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


def test_result_plot_draws_from_tables_without_simulating(result, tmp_path, monkeypatch):
    from commsim.engine import Simulation

    def refuse(self, *a, **k):  # figures read results, never re-simulate
        raise AssertionError("a figure re-simulated")

    monkeypatch.setattr(Simulation, "run", refuse)
    paths = result.plot(tmp_path)
    names = sorted(p.name for p in paths)
    assert "latency_by_encoding.png" in names and "bytes_by_category.png" in names
    for p in paths:
        assert p.parent == tmp_path and p.read_bytes().startswith(b"\x89PNG")
    html = paths._repr_html_()
    assert html.count("<img src=\"data:image/png;base64,") == len(paths)
    assert "latency_by_encoding.png" in html


def test_result_plot_default_folder_is_new(result):
    a, b = result.plot(), result.plot()
    assert a and b and a[0].parent != b[0].parent  # never overwrites an earlier call
    assert [p.name for p in a] == [p.name for p in b]


def test_run_with_progress_true(capsys):
    r = commsim.run(_raw(replications=1), progress=True)
    assert len(r.runs) == 2
    err = capsys.readouterr().err
    assert "2/2 runs 100%" in err  # not a terminal: plain lines


def test_run_with_progress_false_is_quiet(capsys):
    commsim.run(_raw(replications=1), progress=False)
    assert capsys.readouterr().err == ""


def test_notebook_progress_updates_one_line():
    shown: list[str] = []
    updates: list[str] = []

    def display(text):
        shown.append(text)
        return updates.append

    now = [0.0]
    stream = io.StringIO()
    p = Progress(stream=stream, display=display, clock=lambda: now[0])
    p.start(4)
    now[0] = 1.0
    p.sim_time(0, 5.0, 10.0)       # the simulated clock of a running run
    now[0] = 2.0
    p.run_done(0)
    p.message("a note")
    now[0] = 3.0
    p.close()
    assert len(shown) == 1 and shown[0].startswith("[") and "0/4 runs" in shown[0]
    assert any("run 1: 50% of sim time" in u for u in updates)
    assert "1/4 runs" in updates[-1]
    assert stream.getvalue() == "a note\n"  # no carriage returns or escape codes in a notebook


def test_not_a_notebook_under_pytest():
    from commsim.experiment import progress

    assert not progress._in_notebook()
    assert Progress(stream=io.StringIO())._display is None
