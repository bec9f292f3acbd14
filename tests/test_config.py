"""Configuration errors: one clear message naming the key, exit status 2,
nothing written.  Plus resolution: defaults filled in, units canonical."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import commsim
from commsim.config import dump_yaml, load
from commsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    # (yaml text, key in the message, words that must appear)
    ("pattern: request_response\nclients:\n  cuont: 5\n", "clients.cuont", ["unknown key", "did you mean 'count'"]),
    ("pattern: request_response\nduratoin: 5s\n", "duratoin", ["unknown top-level key", "did you mean 'duration'"]),
    ("pattern: request_respons\n", "pattern", ["'request_respons'", "did you mean 'request_response'"]),
    ("duration: 5s\n", "pattern", ["missing"]),
    ("pattern: request_response\nclients: {count: ten}\n", "clients.count", ["'ten'", "integer"]),
    ("pattern: request_response\nclients: {count: 2.5}\n", "clients.count", ["2.5", "integer"]),
    ("pattern: request_response\nnetwork: {keepalive: maybe}\n", "network.keepalive", ["'maybe'", "true or false"]),
    ("pattern: request_response\nnetwork: {latency: 20 parsecs}\n", "network.latency", ["parsecs", "duration"]),
    ("pattern: request_response\nserver: {cores: 0}\n", "server.cores", ["got 0", ">= 1"]),
    ("pattern: request_response\nnetwork: {loss: 1.5}\n", "network.loss", ["1.5", "between 0 and 1"]),
    ("pattern: request_response\nduration: -5s\n", "duration", ["-5s", "> 0"]),
    ("pattern: request_response\nnetwork: {handshake: tls1.4}\n", "network.handshake", ["'tls1.4'", "tls1.3"]),
    ("pattern: request_response\nserver: {service_time: {dist: expo, mean: 1ms}}\n",
     "server.service_time.dist", ["'expo'", "exponential"]),
    ("pattern: request_response\nserver: {service_time: {dist: exponential, mean: -1ms}}\n",
     "server.service_time.mean", ["-1ms"]),
    ("pattern: request_response\nsweep: {clients.count: [1, -3]}\n", "sweep.clients.count", ["-3", ">= 1"]),
    ("pattern: request_response\nsweep: {clients.cuont: [1, 2]}\n", "sweep.clients.cuont", ["unknown key", "clients.count"]),
    ("pattern: request_response\nsweep: {clients.count: 5}\n", "sweep.clients.count", ["non-empty list"]),
    ("pattern: request_response\nclients: 5\n", "clients", ["mapping"]),
    ("- just\n- a list\n", "", ["mapping of keys at the top level"]),
]


@pytest.mark.parametrize("text,key,words", BAD)
def test_config_error_names_key(tmp_path, text, key, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("text,key,words", [BAD[0], BAD[2], BAD[4], BAD[8], BAD[14]])
def test_cli_config_error_exit_2_nothing_written(tmp_path, text, key, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "commsim", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"commsim: error: {key}")
    assert not out.exists()


def test_cli_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pattern: [request_response\n")
    for target in (bad, tmp_path / "missing.yaml"):
        proc = subprocess.run([sys.executable, "-m", "commsim", "run", str(target)],
                              capture_output=True, text=True, cwd=tmp_path,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "results").exists()


def test_set_override_and_bad_override():
    exp = load({"pattern": "request_response"}, ["clients.count=7", "network.latency=20ms"])
    cfg = exp.points[0].config
    assert cfg["clients"]["count"] == 7
    assert cfg["network"]["latency"] == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="clients.cuont"):
        load({"pattern": "request_response"}, ["clients.cuont=7"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load({"pattern": "request_response"}, ["clients.count"])


def test_resolved_config_is_complete_canonical_and_reloadable():
    exp = load({"pattern": "request_response", "network": {"latency": "20ms", "bandwidth": "100Mbps"},
                "server": {"service_time": {"dist": "exponential", "mean": "2ms"}},
                "sweep": {"clients.count": [10, 100]}})
    r = exp.resolved
    assert r["network"]["latency"] == pytest.approx(0.02)
    assert r["network"]["bandwidth"] == pytest.approx(1e8)
    assert r["server"]["service_time"] == {"dist": "exponential", "mean": pytest.approx(0.002)}
    assert r["request_response"]["request_header"] == 400  # a default, filled in
    assert r["sweep"] == {"clients.count": [10, 100]}
    assert [p.params for p in exp.points] == [{"clients.count": 10}, {"clients.count": 100}]
    again = load(yaml.safe_load(dump_yaml(r)))
    assert again.resolved == r


def test_refuses_to_overwrite_other_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pattern: request_response\nduration: 1s\nclients: {count: 2}\n")
    out = tmp_path / "out"
    run = [sys.executable, "-m", "commsim", "run", str(cfg), "--out", str(out), "--quiet"]
    assert subprocess.run(run, cwd=ROOT).returncode == 0
    before = (out / "runs.csv").read_text()
    proc = subprocess.run(run + ["--set", "clients.count=3"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (out / "runs.csv").read_text() == before
    assert subprocess.run(run + ["--set", "clients.count=3", "--force"], cwd=ROOT).returncode == 0
    assert (out / "runs.csv").read_text() != before


def test_same_config_and_seed_identical_runs_csv():
    cfg = {"pattern": "request_response", "duration": 5, "replications": 2,
           "network": {"latency": {"dist": "exponential", "mean": "5ms"}, "loss": 0.02},
           "clients": {"count": 20}}
    a = commsim.run(cfg).runs
    b = commsim.run(cfg).runs
    assert a.to_csv() == b.to_csv()
    assert a["seed"].nunique() == 2  # replications have independent seeds


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("pattern: request_response\nduration: 1s\nduration: 2s\n")
    with pytest.raises(ConfigError, match="written twice") as info:
        load(path)
    assert info.value.key == "duration"


def test_never_writes_into_a_folder_of_other_files(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pattern: request_response\nduration: 1s\nclients: {count: 2}\n")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "runs.csv").write_text("my own data\n")
    proc = subprocess.run([sys.executable, "-m", "commsim", "run", str(cfg), "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "not commsim results" in proc.stderr
    assert (out / "runs.csv").read_text() == "my own data\n"


@pytest.mark.parametrize("plots,key,words", [
    ([{"x": "clients.count", "y": {"a": 1}}], "plots[0].y", ["metric name"]),
    ([{"x": "clients.count", "y": "latency_mean", "hue": "server.cores",
       "where": {"network.latency": "30ms"}}], "plots[0].where.network.latency", ["'30ms'", "0.01"]),
])
def test_plots_section_errors(plots, key, words):
    raw = {"pattern": "request_response",
           "sweep": {"clients.count": [1, 2], "server.cores": [1, 2], "network.latency": ["10ms", "20ms"]},
           "plots": plots}
    with pytest.raises(ConfigError) as info:
        load(raw)
    assert info.value.key == key
    for w in words:
        assert w in str(info.value)


def test_plots_where_accepts_units():
    raw = {"pattern": "request_response",
           "sweep": {"clients.count": [1, 2], "network.latency": ["10ms", "20ms"]},
           "plots": [{"x": "clients.count", "y": "latency_mean", "where": {"network.latency": "20ms"}}]}
    assert load(raw).resolved["plots"][0]["where"] == {"network.latency": pytest.approx(0.02)}


@pytest.mark.parametrize("raw,key", [
    ({"pattern": "request_response", "server": {"service_time": 0}, "clients": {"think_time": 0}},
     "clients.think_time"),
    ({"pattern": "sync_async", "clients": {"think_time": 0},
      "sync_async": {"cpu_before": 0, "io_time": 0, "cpu_after": 0}}, "clients.think_time"),
    ({"pattern": "pubsub", "pubsub": {"interarrival": "0s"}}, "pubsub.interarrival"),
    ({"pattern": "long_polling", "long_polling": {"timeout": 0}}, "long_polling.timeout"),
])
def test_configs_that_would_never_advance_time_are_refused(raw, key):
    with pytest.raises(ConfigError) as info:
        load(raw)
    assert info.value.key == key


@pytest.mark.parametrize("value", ["", "  ", "a/b", 5])
def test_bad_experiment_name(value):
    with pytest.raises(ConfigError) as info:
        load({"pattern": "request_response", "name": value})
    assert info.value.key == "name"
