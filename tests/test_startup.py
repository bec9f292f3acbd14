"""A lean start-up (issue 14): what `import commsim` and a one-run config
import, checked in a fresh interpreter (deterministic: module names, never
times).

pandas (with pyarrow) and matplotlib cost most of a short run's start-up;
they are imported where tables are built and figures drawn, so `import
commsim`, loading a config and simulating it need neither.  The CLI run,
which writes the tables and draws the figures, does import them (pinned by
two tests below, so the checks are not vacuous)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import commsim

HEAVY = ("pandas", "pyarrow", "matplotlib", "scipy",
         # only `--jobs N` needs a process pool; compare/capacity load on first use
         "multiprocessing", "concurrent.futures", "commsim.experiment.compare",
         "commsim.experiment.capacity")

MM1 = {"pattern": "request_response", "duration": "0.5s", "warmup": "0s", "seed": 1,
       "clients": {"count": 10, "mode": "async", "rate": "20/s"},
       "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
       "request_response": {"request_header": "0B", "response_header": "0B", "response_body": "0B"}}


def _loaded(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; the heavy modules it left in
    sys.modules, and what it printed last (JSON)."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules],
                           "out": globals().get("OUT")}}))
    """)
    # The same commsim as this test process, whatever the working directory.
    src = str(Path(commsim.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env=env, cwd=os.path.dirname(src))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_commsim_is_lean():
    got = _loaded("import commsim")
    assert got["heavy"] == []


def test_load_and_simulate_one_run_is_lean():
    got = _loaded(f"""
        import commsim
        exp = commsim.load({MM1!r})
        metrics, sim = commsim.simulate(exp.points[0].config, 1)
        OUT = metrics["requests"]
    """)
    assert got["heavy"] == []
    assert got["out"] > 0  # it really simulated


def test_cli_modules_and_parser_are_lean():
    got = _loaded("""
        from commsim import cli
        cli._parser()  # every sub-command registered (compare, capacity, testbed ...)
    """)
    # the parser registers compare's and capacity's sub-commands from their modules
    assert [m for m in got["heavy"] if not m.startswith("commsim.")] == []


def test_lazy_api_names_still_there():
    got = _loaded("""
        import commsim
        from commsim import capacity
        from commsim.experiment import capacity as cap_module, compare as cmp_module
        OUT = [capacity is cap_module.capacity, commsim.compare is cmp_module.compare,
               sorted(set(commsim.__all__) - set(dir(commsim))), hasattr(commsim, "nope")]
    """)
    assert got["out"] == [True, True, [], False]


def test_tables_still_import_pandas_when_built(tmp_path):
    # The run path of the API builds DataFrames (Result.runs, .summary), so
    # pandas comes in there, not before; matplotlib only when figures are drawn.
    got = _loaded(f"""
        import sys
        import commsim
        exp = commsim.load({MM1!r})
        before = "pandas" in sys.modules
        result = commsim.run_experiment(exp)
        OUT = [before, type(result.summary).__module__.split(".")[0], len(result.runs)]
    """)
    assert got["out"] == [False, "pandas", 1]
    assert "pandas" in got["heavy"] and "matplotlib" not in got["heavy"]


def test_cli_run_draws_without_pyplot(tmp_path):
    # The CLI writes the tables (pandas) and draws bare matplotlib Figures:
    # pyplot's state machine is never needed for them.
    cfg = tmp_path / "mm1.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({**MM1, "name": "mm1"}))
    got = _loaded(f"""
        import sys
        from commsim import cli
        status = cli.main(["run", {str(cfg)!r}, "--out", {str(tmp_path / "out")!r}, "--quiet"])
        OUT = [status, "matplotlib.pyplot" in sys.modules]
    """)
    assert got["out"] == [0, False]
    assert "pandas" in got["heavy"] and "matplotlib" in got["heavy"]
    assert (tmp_path / "out" / "bytes_by_category.png").stat().st_size > 0


def test_program_exit_freezes_the_collector_and_keeps_the_status(tmp_path):
    # `commsim` (console script and `python -m commsim`) is cli.entry: main(),
    # then gc.freeze() so the interpreter's final collections skip pandas'
    # and matplotlib's objects (~0.2 s CPU); the exit status is main()'s.
    cfg = tmp_path / "mm1.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({**MM1, "name": "mm1"}))
    src = str(Path(commsim.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
             "from commsim.cli import entry\n"
             "entry()\n")
    ok = subprocess.run([sys.executable, "-c", probe, "run", str(cfg), "--out", str(tmp_path / "out"),
                         "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split()[-2:] == ["frozen", "True"]
    assert (tmp_path / "out" / "summary.csv").is_file()
    bad = subprocess.run([sys.executable, "-m", "commsim", "run", str(cfg), "--set", "clients.count=-1",
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and "clients.count" in bad.stderr
    assert not (tmp_path / "bad").exists()
