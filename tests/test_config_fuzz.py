"""Property-based test (issue 11): mutate valid configs (keys, types, units,
values, YAML structure) and check that every outcome is a success or a
ConfigError, never another exception, a hang or a half-loaded experiment.

The default run tries a bounded number of examples (a few seconds: loading
only, plus a tiny run of the few mutants that load and are estimated to take
milliseconds); ``-m slow`` tries many more and runs every cheap mutant that
loads through the command line (exit status 0 or 2, never a traceback).
"""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commsim.config import load
from commsim.config.load import _all_dotted_keys
from commsim.errors import ConfigError

#: Small valid configs, one per family of patterns.
SEEDS = [
    {"pattern": "request_response", "duration": "1s", "clients": {"count": 3},
     "network": {"latency": "1ms"}, "request_response": {"encoding": "json"}},
    {"pattern": "short_polling", "duration": "1s", "clients": {"count": 3},
     "workload": {"event_rate": "1/s"}, "short_polling": {"interval": "200ms"}},
    {"pattern": "sse", "duration": "1s", "clients": {"count": 3}, "sse": {"resume": False}},
    {"pattern": "pubsub", "duration": "1s", "pubsub": {"delivery": "pull", "subscribers": 2}},
    {"pattern": "sidecar", "duration": "1s", "clients": {"count": 2, "mode": "async", "rate": "5/s"},
     "sidecar": {"depth": 1}},
    {"sweep": {"pattern": ["long_polling", "push"], "clients.count": [2, 3]}, "duration": "1s",
     "long_polling": {"timeout": "500ms"},
     "plots": [{"x": "clients.count", "y": "latency_mean", "hue": "pattern"}]},
    {"pattern": "sync_async", "duration": "1s", "clients": {"count": 2}, "precision": {"target": "10%"}},
    {"pattern": "websocket", "duration": "2s", "clients": {"count": 3},
     "websocket": {"ping_interval": "500ms"}, "workload": {"event_rate": "1/s"}},
]

KEYS = _all_dotted_keys() + ["sweep", "plots", "precision", "pattern", "nonsense", "clients.cuont"]

PLAUSIBLE = [0, 1, 2, 3, 0.5, "1e1", "5ms", "1s", "200ms", "10/s", "1KiB", "1Mbps", True, False, None,
             "push", "pull", "sync", "async", "tls1.3", "json", {"dist": "exponential", "mean": "1ms"},
             {"dist": "uniform", "low": "1ms", "high": "2ms"}]

weird_text = st.sampled_from([
    "", " ", "1e3", "1e30", "-1", "0", "nan", "inf", "-inf", "1.5", "10ms", "1ns", "1e308s", "5/s",
    "3KiB", "100Mbps", "2min", "abc", "\x00", "..", "/", "a/b", "auto", "null", "true", "[1, 2]",
    "{a: 1}", "x" * 300, "1 parsecs", "%", "2%", "exponential", "µs", "\u202e", "é",
])
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), weird_text, st.text(max_size=12),
)
value = st.recursive(leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(weird_text, st.sampled_from(KEYS)), inner,
                                                 max_size=3)), max_leaves=6)


def _set(cfg: dict, dotted: str, v) -> None:
    head, _, tail = dotted.partition(".")
    if not tail:
        cfg[head] = v
    elif isinstance(cfg.get(head), dict):
        cfg[head][tail] = v
    else:
        cfg[head] = {tail: v}


@st.composite
def mutated_config(draw):
    cfg = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "plausible", "plausible", "delete", "unit", "sweep", "rename"]))
        key = draw(st.sampled_from(KEYS))
        if op == "set":
            _set(cfg, key, draw(value))
        elif op == "plausible":   # a value of about the right kind, so that many mutants load
            _set(cfg, key, draw(st.sampled_from(PLAUSIBLE)))
        elif op == "delete":
            head, _, tail = key.partition(".")
            if tail and isinstance(cfg.get(head), dict):
                cfg[head].pop(tail, None)
            else:
                cfg.pop(head, None)
        elif op == "unit":
            _set(cfg, key, draw(st.sampled_from(["1", "0.5"])) + draw(st.sampled_from(
                ["ms", "s", "us", "B", "KB", "/s", "Mbps", "%", "", " min", "parsec"])))
        elif op == "sweep":
            sweep = cfg.setdefault("sweep", {}) if isinstance(cfg.get("sweep", {}), dict) else {}
            sweep[key] = draw(st.one_of(st.lists(value, max_size=3), value))
        else:  # rename a top-level key
            if cfg:
                old = draw(st.sampled_from(sorted(map(str, cfg))))
                cfg[draw(weird_text)] = cfg.pop(old, None)
    return cfg


@st.composite
def mutated_yaml(draw):
    """A valid config as YAML text, then damaged as text."""
    text = yaml.safe_dump(draw(st.sampled_from(SEEDS)), sort_keys=False)
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["insert", "drop", "dup", "indent", "truncate", "anchor", "bytes"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "insert":
            lines.insert(i, draw(st.sampled_from(
                ["? [1, 2]\n: 3", "<<: {seed: 2}", "x: &a [1]", "y: *a", "!!python/object:os.system {}",
                 "- a", "{", "key: [", "'unclosed", "\t\tbad: 1", "seed: 1", "%YAML 1.2", "---", "...",
                 "seed: " + "[" * 2000 + "]" * 2000])))
        elif op == "drop" and lines:
            lines.pop(i)
        elif op == "dup" and lines:
            lines.insert(i, lines[i])
        elif op == "indent" and lines:
            lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
        elif op == "truncate" and lines:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "anchor" and lines:
            lines[i] = lines[i] + " &x"
    raw = ("\n".join(lines) + "\n").encode()
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + draw(st.binary(min_size=1, max_size=4)) + raw[pos:]
    return raw


def _load_or_config_error(source):
    """Load; a ConfigError is a fine outcome, anything else fails the test."""
    try:
        exp = load(source)
    except ConfigError as exc:
        text = str(exc)
        assert text and "\n" not in text.strip() and "Traceback" not in text
        return None
    assert exp.points and exp.name
    assert math.isfinite(exp.estimate.cpu_s) or exp.estimate.over_limits() == []
    return exp


def _tiny_run(exp) -> None:
    from commsim.experiment.runner import run_experiment

    if exp.estimate.cpu_s < 0.05 and exp.estimate.runs <= 4 and not exp.warmup_auto:
        result = run_experiment(exp)
        assert not result.failures, result.failures[0]["error"]


def check_dict(cfg):
    exp = _load_or_config_error(cfg)
    if exp is not None:
        _tiny_run(exp)


def check_yaml(tmp_path_factory, raw: bytes):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_bytes(raw)
    _load_or_config_error(path)


FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=2000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FAST
@given(mutated_config())
def test_mutated_configs_load_or_config_error(cfg):
    check_dict(cfg)


@FAST
@given(mutated_yaml())
def test_damaged_yaml_loads_or_config_error(tmp_path_factory, raw):
    check_yaml(tmp_path_factory, raw)


@pytest.mark.slow
@SLOW
@given(mutated_config())
def test_mutated_configs_many(cfg):
    check_dict(cfg)


@pytest.mark.slow
@SLOW
@given(mutated_yaml())
def test_damaged_yaml_many(tmp_path_factory, raw):
    check_yaml(tmp_path_factory, raw)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_config())
def test_mutated_configs_through_the_command_line(cfg):
    """Exit status 0 or 2 and never a traceback, through ``commsim run``."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            text = yaml.safe_dump(cfg, allow_unicode=True)
        except yaml.YAMLError:
            return
        (Path(tmp) / "c.yaml").write_text(text)
        try:
            exp = load(Path(tmp) / "c.yaml")
        except ConfigError:
            exp = None
        if exp is not None and exp.estimate.cpu_s > 0.05:
            return   # only cheap runs
        proc = subprocess.run([sys.executable, "-m", "commsim", "run", "c.yaml", "--quiet"], cwd=tmp,
                              capture_output=True, text=True, timeout=120,
                              env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 2), proc.stderr
        if proc.returncode == 2:
            assert not (Path(tmp) / "results").exists()
