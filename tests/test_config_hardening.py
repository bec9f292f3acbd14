"""Issue 11, configuration side: every hostile input is one clear ConfigError
(exit status 2 from the command line, nothing written), absurd work is
refused with its estimate, and keys that would do nothing are errors."""

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest

import commsim
from commsim.config import estimate as work
from commsim.config import load
from commsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = "pattern: request_response\nduration: 1s\nclients: {count: 5}\n"


def cli(args, cwd):
    """Run ``commsim`` in ``cwd``; returns (exit status, stderr, files created)."""
    before = set(Path(cwd).rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "commsim", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    created = sorted(str(p.relative_to(cwd)) for p in set(Path(cwd).rglob("*")) - before)
    return proc.returncode, proc.stderr, created


def assert_clean_exit_2(tmp_path, content: bytes | str, *extra, words=()):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "mine.txt").write_text("the user's own file")
    rc, err, created = cli(["run", "c.yaml", "--quiet", *extra], tmp_path)
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("commsim: error: ") and err.count("\n") == 1, err
    assert created == [], created
    assert (tmp_path / "mine.txt").read_text() == "the user's own file"
    for w in words:
        assert w in err, err
    return err


# ------------------------------------------------------------------ names --

@pytest.mark.parametrize("name,why", [
    ('".."', "relative folder"), ('"."', "relative folder"), ('"a\\0b"', "NUL"),
    ("x" * 300, "300 characters"), ('"a/b"', "path separator"), ('"a\\\\b"', "path separator"),
    ('"  "', "empty"), ('" a"', "space"), ('"a\\tb"', "control character"), ("[1, 2]", "plain folder name"),
])
def test_name_is_one_plain_path_component(tmp_path, name, why):
    err = assert_clean_exit_2(tmp_path, f"name: {name}\n{BASE}", words=["name: got", why])
    assert "results folder" in err


def test_name_override_and_file_stem_are_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="^name: got '..'"):
        load({"pattern": "request_response"}, name="..")
    with pytest.raises(ConfigError, match="^name: got '..'"):
        load({"pattern": "request_response"}, ["name=.."])
    odd = tmp_path / "..yaml"                  # its stem is '.'
    odd.write_text(BASE)
    with pytest.raises(ConfigError, match=r"^name \(from the file name '..yaml'\)"):
        load(odd)
    assert load({"pattern": "request_response", "name": "ok-name_1.2"}).name == "ok-name_1.2"


# ------------------------------------------------------- unreadable files --

DEEP = "pattern: request_response\nseed: " + "[" * 10000 + "]" * 10000 + "\n"


@pytest.mark.parametrize("content,words", [
    (bytes(range(256)) * 4, ["not a UTF-8 text file"]),
    ("name: café\n".encode("latin-1") + BASE.encode(), ["not a UTF-8 text file", "0xe9"]),
    ("? [1, 2]\n: 3\n" + BASE, ["invalid key at line 1", "not a list"]),
    ("? {a: 1}\n: 3\n" + BASE, ["invalid key", "not a mapping"]),
    (DEEP, ["nested too deeply"]),
    ("pattern: request_response\nclients: {count: 1e30}\n", ["clients.count", "1e30"]),
    ("pattern: request_response\nclients: {count: 1.0e+30}\n", ["clients.count", "too large"]),
    ("pattern: request_response\nduration: null\n", ["duration: got null"]),
    ("pattern: request_response\nduration: 1ms\nwarmup: auto\n", ["warmup: 'auto' needs at least 20"]),
])
def test_unreadable_or_impossible_configs_are_one_line_exit_2(tmp_path, content, words):
    assert_clean_exit_2(tmp_path, content, words=words)


def test_a_directory_or_device_as_config(tmp_path):
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        load(tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load("/dev/null")


@pytest.mark.parametrize("source", [None, [1, 2], "", 3, b"x.yaml", object()])
def test_api_refuses_a_source_that_is_not_a_path_or_dict(source):
    with pytest.raises(ConfigError, match="expected the path of a YAML file or a dict"):
        commsim.run(source)


def test_api_refuses_overrides_that_are_not_strings():
    with pytest.raises(ConfigError, match="^--set: "):
        load({"pattern": "request_response"}, "duration=1s")   # a string, not a list of them
    with pytest.raises(ConfigError, match="^--set: "):
        load({"pattern": "request_response"}, [("duration", 1)])


# ---------------------------------------------------------------- smaller --

def test_yaml_merge_keys_work_and_own_keys_win(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "pattern: request_response\nduration: 1s\n"
        "network: &net {latency: 2ms, loss: 0.01}\n"
        "sweep:\n  clients.count: [1, 2]\n"
        "plots:\n  - &fig {x: clients.count, y: latency_mean}\n  - {<<: *fig, name: second, logy: true}\n")
    exp = load(tmp_path / "m.yaml")
    assert exp.resolved["network"]["loss"] == 0.01
    assert [p["name"] for p in exp.resolved["plots"]] == ["latency_mean_vs_clients_count", "second"]
    assert exp.resolved["plots"][1]["logy"] is True
    # A key written twice is still an error; a merged key overridden is not.
    (tmp_path / "d.yaml").write_text("pattern: request_response\nclients: {count: 1, count: 2}\n")
    with pytest.raises(ConfigError, match="written twice"):
        load(tmp_path / "d.yaml")


@pytest.mark.parametrize("text,key,value", [
    ("clients: {count: 1e3}", "clients.count", 1000),
    ("server: {cores: 2E0}", "server.cores", 2),
    ("seed: 1e2", "seed", 100),
    ("network: {loss: 1e-3}", "network.loss", 0.001),
    ("duration: 1e1", "duration", 10.0),
])
def test_exponent_notation_reads_as_a_number(tmp_path, text, key, value):
    (tmp_path / "e.yaml").write_text(f"pattern: request_response\n{text}\n")
    resolved = load(tmp_path / "e.yaml").resolved
    head, _, tail = key.partition(".")
    got = resolved[head][tail] if tail else resolved[head]
    assert got == value and type(got) is type(value)


def test_exponent_that_is_not_an_integer_is_refused():
    with pytest.raises(ConfigError, match="clients.count: got '1.5e0'"):
        load({"pattern": "request_response", "clients": {"count": "1.5e0"}})


@pytest.mark.parametrize("key", ["seed", "warmup", "replications", "pattern"])
def test_null_is_an_error_not_the_default(key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        load({"pattern": "request_response", key: None})


def test_empirical_file_must_be_regular_and_is_never_echoed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-HEADER\nhunter2-password\n")
    (tmp_path / "folder.csv").mkdir()
    base = {"pattern": "request_response",
            "server": {"service_time": {"dist": "empirical", "file": str(secret), "column": "latency"}}}
    with pytest.raises(ConfigError) as info:
        load(base)
    assert "TOP-SECRET" not in str(info.value) and "has no column" in str(info.value)
    base["server"]["service_time"]["column"] = "TOP-SECRET-HEADER"
    with pytest.raises(ConfigError) as info:
        load(base)
    assert "hunter2" not in str(info.value) and "not a finite plain number" in str(info.value)
    base["server"]["service_time"]["file"] = str(tmp_path / "folder.csv")
    with pytest.raises(ConfigError, match="not a regular file"):
        load(base)


def test_config_imports_nothing_from_experiment():
    for path in (ROOT / "commsim" / "config").glob("*.py"):
        text = path.read_text()
        assert "from commsim.experiment" not in text and "import commsim.experiment" not in text, path
    # Loading (with plots: and precision:) imports no experiment module beyond
    # what `import commsim` itself does (the package exposes commsim.run).
    code = ("import sys, commsim.config as c; before = set(sys.modules); "
            "c.load({'pattern': 'request_response', "
            "'precision': {'target': '5%'}, 'sweep': {'clients.count': [1, 2]}, "
            "'plots': [{'x': 'clients.count', 'y': 'latency_mean'}]}); "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('commsim.experiment')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# -------------------------------------------------------- silent no-ops --

def test_a_section_no_pattern_reads_is_an_error():
    with pytest.raises(ConfigError, match="^sidecar: section 'sidecar' is read only by pattern"):
        load(ROOT / "experiments" / "pubsub.yaml", ["sidecar.depth=2"])
    with pytest.raises(ConfigError, match="^short_polling: .*runs long_polling"):
        load({"pattern": "long_polling", "short_polling": {"interval": "1s"}})
    with pytest.raises(ConfigError, match="^sweep.sse.resume: .*runs request_response"):
        load({"pattern": "request_response", "sweep": {"sse.resume": [True, False]}})
    # Used by one pattern of a pattern sweep: fine.
    exp = load({"sweep": {"pattern": ["long_polling", "short_polling"]}, "short_polling": {"interval": "2s"}})
    assert [p.config["pattern"] for p in exp.points] == ["long_polling", "short_polling"]


def test_every_committed_experiment_still_loads():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        exp = load(path)
        assert exp.points and not exp.estimate.over_limits(), path


def test_pattern_sweep_with_a_patterns_own_key(tmp_path):
    exp = load(ROOT / "experiments" / "notifications.yaml",
               ["sweep.sse.resume=[true,false]", "sweep.clients.count=[10]",
                "sweep.workload.event_rate=[1/s]", "duration=1s", "warmup=0s"])
    got = [(p.params["pattern"], p.params["sse.resume"]) for p in exp.points]
    assert got == [("short_polling", None), ("long_polling", None), ("sse", True), ("sse", False),
                   ("push", None)]
    assert [p.config["sse"]["resume"] for p in exp.points if p.params["pattern"] == "sse"] == [True, False]
    assert exp.resolved["sweep"]["sse.resume"] == [True, False]
    result = commsim.run(ROOT / "experiments" / "notifications.yaml",
                         ["sweep.sse.resume=[true,false]", "sweep.clients.count=[10]",
                          "sweep.workload.event_rate=[1/s]", "duration=1s", "warmup=0s"])
    assert len(result.runs) == 5 and not result.failures
    from commsim.experiment.output import write_tables

    write_tables(result, tmp_path)
    lines = (tmp_path / "runs.csv").read_text().splitlines()
    col = lines[0].split(",").index("sse.resume")
    assert [line.split(",")[col] for line in lines[1:]] == ["", "", "True", "False", ""]


# ------------------------------------------------------------ absurd work --

@pytest.mark.parametrize("overrides,words", [
    (["replications=1000000"], ["1,000,000 runs", "limit of 100,000"]),
    (["duration=1e308"], ["too large", "forever"]),
    (["clients.count=100000000"], ["GB of memory in one run", "limit 8 GB"]),
])
def test_absurd_work_is_refused_with_the_estimate(overrides, words):
    with pytest.raises(ConfigError) as info:
        load({"pattern": "request_response"}, overrides)
    for w in [*words, "--allow-large", "allow_large=True"]:
        assert w in str(info.value)


def test_a_poll_every_nanosecond_is_refused():
    with pytest.raises(ConfigError, match="years of CPU"):
        load({"pattern": "short_polling", "clients": {"count": 1000}, "short_polling": {"interval": "1ns"}})


def test_a_huge_sweep_is_refused_before_it_is_expanded():
    nine = list(range(1, 10))
    sweep = {"clients.count": nine, "server.cores": nine, "network.max_retries": nine,
             "seed": nine, "network.rto": nine, "network.latency": nine}   # 531,441 points
    import time

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="^sweep: 531,441 sweep point"):
        load({"pattern": "request_response", "sweep": sweep})
    assert time.perf_counter() - t0 < 10.0   # the old loader took 213 s to expand it


def test_allow_large_loads_and_the_estimate_is_reported(tmp_path, monkeypatch, capsys):
    exp = load({"pattern": "request_response"}, ["clients.count=100000000"], allow_large=True)
    assert exp.estimate.big and exp.estimate.over_limits()
    assert "GB of memory" in exp.estimate.text()
    assert not load({"pattern": "request_response"}).estimate.big
    # The command line prints the estimate of a big allowed run on stderr
    # before it starts (here "big" is lowered so that a tiny run counts).
    from commsim import cli

    monkeypatch.setattr(work, "REPORT_CPU_S", 0.0)
    (tmp_path / "c.yaml").write_text(BASE)
    assert cli.main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 0
    assert "commsim: estimated work: 1 run(s)" in capsys.readouterr().err


def test_estimate_tracks_real_runs():
    """The estimate is within a factor of 3 of the SimPy events a run really
    schedules (the constants were calibrated on the committed experiments)."""
    from commsim.engine import Simulation
    from commsim.patterns import registry

    cases = [("request_response.yaml", 0), ("notifications.yaml", 1), ("notifications.yaml", 25),
             ("pubsub.yaml", 5), ("sidecar.yaml", 5)]
    for name, index in cases:
        exp = load(ROOT / "experiments" / name, ["duration=2s", "warmup=0s"])
        cfg = exp.points[index].config
        sim = Simulation(cfg, 1)
        registry()[cfg["pattern"]].model(sim)
        sim.run()
        events = next(sim.env._eid)
        estimated, _cpu, _memory = work.run_cost(cfg)
        assert events / 3 <= estimated <= events * 3, (name, index, events, estimated)


def test_deep_or_broken_set_values_are_one_line_errors():
    deep = "[" * 10000 + "]" * 10000
    with pytest.raises(ConfigError, match="^seed: --set value is nested too deeply"):
        load({"pattern": "request_response"}, [f"seed={deep}"])
    with pytest.raises(ConfigError, match=r"^seed: --set value '\[' is not valid YAML \(expected"):
        load({"pattern": "request_response"}, ["seed=["])
    from commsim.errors import describe

    nested: list = []
    for _ in range(5000):
        nested = [nested]
    assert "nested too deeply" in describe(nested)


def test_estimate_survives_keys_it_does_not_know():
    """A pattern the formulas do not know, or whose section lost a key (e.g.
    renamed by a refactor), still gets a (generic) estimate: loading never
    breaks because of the estimator."""
    exp = load({"pattern": "stateful", "duration": "1s"})
    cfg = copy.deepcopy(exp.points[0].config)
    del cfg["stateful"]["servers"]
    events, cpu, memory = work.run_cost(cfg)
    assert 0 < events < math.inf and cpu > 0 and memory > work.BASE_BYTES
    cfg["pattern"] = "some_new_pattern"
    assert 0 < work.run_cost(cfg)[0] < math.inf
    assert work.observations(cfg) > 0


def test_a_null_sweep_value_of_a_patterns_own_key_is_kept():
    """``websocket.ping_interval: [.., null]``: null is a real value (no
    heartbeats), not "key absent for this pattern"."""
    exp = load(ROOT / "experiments" / "websocket.yaml")
    assert exp.resolved["sweep"]["websocket.ping_interval"][-1] is None
    assert len(exp.points) == len(exp.resolved["sweep"]["websocket.ping_interval"])


def test_sections_an_included_preset_sets_are_not_refused_but_the_files_own_are(tmp_path):
    """A preset (a calibration) serves experiments of any pattern: its
    sections that the run's patterns do not read are not used, and not
    refused; a stray section the experiment file itself sets still is."""
    (tmp_path / "preset.yaml").write_text("sse:\n  frame_overhead: 14B\n"
                                          "short_polling:\n  request_header: 141B\n")
    conf = tmp_path / "exp.yaml"
    conf.write_text("include: preset.yaml\npattern: short_polling\nduration: 1s\n")
    cfg = load(conf).points[0].config
    assert cfg["short_polling"]["request_header"] == 141
    conf.write_text("include: preset.yaml\npattern: short_polling\nduration: 1s\n"
                    "long_polling:\n  timeout: 5s\n")
    with pytest.raises(ConfigError) as exc:
        load(conf)
    assert exc.value.key == "long_polling"
