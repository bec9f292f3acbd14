"""Every ``clients`` and ``server`` key takes effect in every pattern, or is
refused at load naming the key (``Pattern.ignores``): the project's rule that
no key is accepted silently without effect.

An audit of all 11 patterns found 40 (pattern, key) pairs accepted with no
effect (e.g. ``clients.rate`` in short polling, ``server.cores`` in pub/sub
and the sidecar, ``server.service_time`` in sync_async); they are refused now.
The other direction is checked too: a key a pattern does not declare ignored
must change its results (same seed, the key's mechanism switched on).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from commsim.config import load
from commsim.config.schema import SECTIONS
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate
from commsim.patterns import registry

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = sorted(registry())

#: a non-default value of each key, and what its mechanism needs to matter
KEYS = {
    "clients.count": (40, {}),
    "clients.mode": ("async", {}),
    "clients.rate": ("40/s", {"clients": {"mode": "async"}}),
    "clients.think_time": ({"dist": "exponential", "mean": "0.25s"}, {}),
    "clients.service_time": ("20ms", {"clients": {"buffer": 1}}),
    "clients.buffer": (0, {"clients": {"service_time": "50ms"}}),
    "server.cores": (2, {"server": {"service_time": {"dist": "exponential", "mean": "10ms"}}}),
    "server.service_time": ({"dist": "exponential", "mean": "3ms"}, {}),
}
NOTIFICATION = {"short_polling", "long_polling", "sse", "push", "websocket"}


def test_the_table_covers_every_clients_and_server_key_but_the_work_costs():
    # server.cpu_per_* are refused per pattern by commsim/accounting/work.py.
    keys = {f"{s}.{k}" for s in ("clients", "server") for k in SECTIONS[s].fields}
    assert keys - set(KEYS) == {k for k in keys if k.startswith("server.cpu_per_")}


def base(pattern: str) -> dict:
    raw = {"pattern": pattern, "duration": "10s", "warmup": "1s", "seed": 3,
           "network": {"latency": "5ms"}}
    if pattern in NOTIFICATION:
        raw["clients"] = {"count": 20}
        raw["workload"] = {"event_rate": "5/s"}
    elif pattern != "pubsub":
        raw["clients"] = {"count": 20, "think_time": {"dist": "exponential", "mean": "100ms"}}
    return raw


def with_key(raw: dict, dotted: str, value, extra: dict = None) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for sname, values in (extra or {}).items():
        out.setdefault(sname, {}).update(values)
    if dotted is not None:
        sname, _, key = dotted.partition(".")
        out.setdefault(sname, {})[key] = value
    return out


def metrics(raw: dict) -> dict:
    m, _sim = simulate(load(raw).points[0].config, 1)
    return {k: v for k, v in m.items() if k != "events"}


def same(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
               for k in a)


@pytest.mark.parametrize("key", sorted(KEYS))
@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_key_takes_effect_or_is_refused(pattern, key):
    value, needs = KEYS[key]
    ignores = registry()[pattern].ignores
    if key in ignores:
        with pytest.raises(ConfigError) as err:
            load(with_key(base(pattern), key, value))
        assert err.value.key == key
        assert "does not read it" in err.value.message and ignores[key] in err.value.message
        # Its default, written out (as in config.resolved.yaml), is accepted.
        head, _, tail = key.partition(".")
        load(with_key(base(pattern), key, SECTIONS[head].fields[tail].default))
    else:
        # (a need the pattern itself ignores is left out: sync_async's CPU is its own)
        needs = {s: {k: v for k, v in vals.items() if f"{s}.{k}" not in ignores}
                 for s, vals in needs.items()}
        before = metrics(with_key(base(pattern), None, None, needs))
        after = metrics(with_key(base(pattern), key, value, needs))
        assert not same(before, after), f"{pattern}: {key} = {value!r} changed no metric"


#: the network keys that need another (commsim/config/needs.py): a value, and the need
NEEDS = {
    "network.rto": ("50ms", {"loss": 0.05}),
    "network.max_retries": (1, {"loss": 0.3}),
    "network.tls_server_cpu": ("5ms", {"handshake": "tls1.3"}),
    "network.keepalive": (False, {"handshake": "tcp"}),
    "network.mss": ("64B", {"segment_overhead": "40B"}),  # below every message's size
    "network.acks_per_message": (1, {"segment_overhead": "40B"}),
}


def test_the_needs_table_is_the_loaders():
    from commsim.config import needs

    assert {k for k in needs.NEEDS if k.startswith("network.")} == set(NEEDS)


@pytest.mark.parametrize("key", sorted(NEEDS))
@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_key_that_needs_another_is_refused_without_it_and_takes_effect_with_it(pattern, key):
    value, need = NEEDS[key]
    start = base(pattern)
    start["warmup"] = 0  # connections open at the start: their handshakes in the window
    with pytest.raises(ConfigError) as err:
        load(with_key(start, key, value))
    if err.value.key == key and "takes effect only with" in err.value.message:
        assert f"network.{next(iter(need))}" in err.value.message  # names the key to set
    try:
        load(with_key(start, key, value, {"network": need}))
    except ConfigError:
        return  # the pattern refuses the key or its need: it can never take effect there
    before = metrics(with_key(start, None, None, {"network": need}))
    after = metrics(with_key(start, key, value, {"network": need}))
    assert not same(before, after), f"{pattern}: {key} = {value!r} with {need} changed no metric"


def test_a_sweep_that_gives_a_key_its_need_in_some_run_is_accepted():
    exp = load({"pattern": "sse", "network": {"tls_server_cpu": "1ms"},
                "sweep": {"network.handshake": ["none", "tls1.3"]}})
    assert [p.config["network"]["tls_server_cpu"] for p in exp.points] == [0.001, 0.001]
    with pytest.raises(ConfigError, match="^sweep.network.rto: got .*network.loss > 0"):
        load({"pattern": "sse", "sweep": {"network.rto": ["50ms", "1s"]}})


def test_a_sweep_and_a_set_of_an_ignored_key_are_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        load({"pattern": "sync_async", "sweep": {"server.service_time": ["1ms", "2ms"]}})
    assert err.value.key == "sweep.server.service_time"
    assert "sync_async.cpu_before" in err.value.message
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"pattern": "pubsub"}))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "commsim", "run", str(path), "--out", str(out),
                           "--set", "server.cores=4"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "server.cores: got 4; pattern 'pubsub' does not read it" in proc.stderr
    assert "pubsub.broker_cores" in proc.stderr
    assert not out.exists()


def test_a_key_one_pattern_of_the_run_reads_is_accepted():
    # A sweep over patterns compares them on one config: clients.rate is read
    # by request_response, so it stays (and does nothing in sse's points).
    exp = load({"pattern": "request_response", "clients": {"mode": "async", "rate": "20/s"},
                "sweep": {"pattern": ["request_response", "sse"]}})
    assert [p.config["pattern"] for p in exp.points] == ["request_response", "sse"]
    with pytest.raises(ConfigError, match="none of the patterns short_polling, sse reads it"):
        load({"pattern": "sse", "clients": {"rate": "20/s"},
              "sweep": {"pattern": ["short_polling", "sse"]}})


def test_a_key_only_an_included_preset_sets_is_not_refused(tmp_path):
    # The loopback calibration preset sets server.cores and service_time for
    # any pattern; sync_async ignores service_time, as it ignores a preset's
    # sections it does not read.  The file's own setting is refused.
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump({"server": {"cores": 1, "service_time": "117.9us"}}))
    exp = load({"include": str(preset), "pattern": "sync_async"})
    assert exp.points[0].config["server"]["service_time"] == pytest.approx(117.9e-6)
    with pytest.raises(ConfigError, match="^server.service_time: got '2ms'"):
        load({"include": str(preset), "pattern": "sync_async", "server": {"service_time": "2ms"}})
    with pytest.raises(ConfigError, match="^server.service_time"):
        load({"include": str(preset), "pattern": "sync_async"}, ["server.service_time=2ms"])


def test_multiplexing_refuses_network_mss_for_its_own():
    with pytest.raises(ConfigError, match="^network.mss: got 365B; .* use multiplexing.mss"):
        load({"pattern": "multiplexing", "network": {"mss": "365B"}})
    load({"pattern": "multiplexing", "network": {"mss": "1460B"}})  # the default, written out
    load({"pattern": "multiplexing", "multiplexing": {"mss": "365B"}})


#: the pattern-section keys that need another key (commsim/config/needs.py):
#: a value; the section's keys without the need; with it
SECTION_NEEDS = {
    "pubsub.fetch_min_bytes": ("10KiB", {}, {"delivery": "pull"}),
    "pubsub.fetch_max_wait": ("20ms", {}, {"delivery": "pull", "fetch_min_bytes": "100KiB"}),
    "pubsub.max_poll_records": (2, {}, {"delivery": "pull"}),
    "pubsub.partitions": (1, {}, {"delivery": "pull", "group_size": 3}),  # (default: group_size)
    "pubsub.commit": ("periodic", {}, {"delivery": "pull"}),
    "pubsub.commit_interval": ("1s", {"delivery": "pull"}, {"delivery": "pull", "commit": "periodic"}),
    "pubsub.prefetch": (1, {"delivery": "pull"}, {}),
    "pubsub.direct_buffer": (1, {}, {"delivery": "direct", "processing_time": "20ms"}),
    "pubsub.slow_factor": (5, {}, {"slow_consumers": 1}),
    "pubsub.slow_from": ("3s", {}, {"slow_consumers": 1}),
    "pubsub.slow_for": ("2s", {}, {"slow_consumers": 1}),
    "pubsub.restart_after": ("1s", {}, {"crash_at": "3s"}),
    "pubsub.broker_downtime": ("1s", {}, {"broker_restart_at": "3s"}),
    "pubsub.fsync_time": ("10ms", {}, {"persistence": True}),
    "pubsub.broker_restart_at": ("3s", {"delivery": "direct"}, {}),
    "pubsub.persistence": (True, {"delivery": "direct"}, {}),
    "sync_async.threads": (2, {"io_model": "event_loop"}, {}),
    "sync_async.readiness_cpu": ("50us", {}, {"io_model": "event_loop"}),
    "sync_async.completion_cpu": ("50us", {}, {"io_model": "io_uring"}),
    "sync_async.thread_spawn_cpu": ("200us", {}, {"io_model": "thread_per_call"}),
    "sync_async.fsync_time": ("5ms", {}, {"commit": "sync"}),
    "sync_async.flush_interval": ("50ms", {}, {"commit": "async"}),
    "sync_async.restart_time": ("3s", {}, {"crash_at": ["4s"]}),
    "multiplexing.connections_per_host": (2, {}, {"protocol": "http1"}),
    "multiplexing.pipelining": (4, {}, {"protocol": "http1"}),
    "multiplexing.backend_protocol": ("http1", {}, {"proxy": "mux"}),
    "multiplexing.backend_connections": (2, {}, {"proxy": "demux"}),
    "multiplexing.backend_latency": ("5ms", {}, {"proxy": "mux"}),
    "multiplexing.proxy_cores": (2, {}, {"proxy": "mux", "proxy_cpu_per_message": "2ms"}),
    "multiplexing.proxy_cpu_per_message": ("1ms", {}, {"proxy": "mux"}),
    "multiplexing.objects": (5, {"workload": "api"}, {}),
    "multiplexing.dependency": (0.5, {"workload": "api"}, {}),
    "multiplexing.warm_connections": (True, {"workload": "api"}, {}),
    "sidecar.library_cpu": ("500us", {}, {"mode": "library"}),
    "sidecar.fan_out": (2, {}, {"depth": 2}),
    "stateful.stateless_state": ("token", {}, {"mode": "stateless"}),
    "stateful.store_latency": ("2ms", {}, {"mode": "stateless"}),
    "stateful.store_service_time": ("1ms", {}, {"mode": "stateless"}),
    "stateful.store_cores": (2, {}, {"mode": "stateless", "store_service_time": "5ms"}),
    "stateful.session_size": ("10KiB", {}, {"mode": "stateless"}),
    "stateful.token_size": ("4KiB", {}, {"mode": "stateless", "stateless_state": "token"}),
    "stateful.token_sign_cpu": ("1ms", {}, {"mode": "stateless", "stateless_state": "token"}),
    "stateful.token_verify_cpu": ("1ms", {}, {"mode": "stateless", "stateless_state": "token"}),
    "workload.offline_time": ("1s", {}, {"online_time": "3s"}),
    "workload.job_duration": ("5s", {}, {"job_rate": "1/s"}),
    "workload.job_request": ("10KiB", {}, {"job_rate": "1/s"}),
}


def test_the_section_needs_table_is_the_loaders():
    from commsim.config import needs

    assert {k for k in needs.NEEDS if not k.startswith("network.")} == set(SECTION_NEEDS)


@pytest.mark.parametrize("key", sorted(SECTION_NEEDS))
def test_a_section_key_is_refused_without_its_mode_and_takes_effect_with_it(key):
    value, off, on = SECTION_NEEDS[key]
    section = key.partition(".")[0]
    pattern = "short_polling" if section == "workload" else section
    start = base(pattern)
    start["warmup"] = 0
    with pytest.raises(ConfigError) as err:
        load(with_key(start, key, value, {section: off}))
    assert err.value.key == key and "takes effect only with" in err.value.message
    before = metrics(with_key(start, None, None, {section: on}))
    after = metrics(with_key(start, key, value, {section: on}))
    assert not same(before, after), f"{key} = {value!r} with {on} changed no metric"
