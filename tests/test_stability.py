"""Stability flags (issue 12): points not in steady state are marked in
summary.csv (``unstable``, ``unstable_reason``) and on screen."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from commsim.cli import main
from commsim.config import load
from commsim.experiment import stability
from commsim.experiment.keymetrics import screen
from commsim.experiment.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]


def _thread_pool(rates, overrides=()):
    exp = load(ROOT / "experiments" / "sync_vs_async.yaml",
               ["replications=2", "sweep.sync_async.io_model=[thread_pool]",
                f"sweep.clients.rate=[{', '.join(rates)}]", *overrides])
    return run_experiment(exp)


def test_thread_pool_overload_flagged_and_light_load_not():
    # experiments/sync_vs_async.yaml: 100 open-loop clients; 75/s each = 7,500
    # requests/s against a thread-bound capacity of 2,437/s; 10/s = 1,000/s.
    result = _thread_pool(["10/s", "75/s"])
    s = result.summary.set_index("clients.rate")
    assert not s.loc[10.0, "unstable"] and s.loc[10.0, "unstable_reason"] == ""
    assert s.loc[75.0, "unstable"]
    assert "queue growing" in s.loc[75.0, "unstable_reason"]
    text = screen(result)
    assert "NOT in steady state" in text and "clients.rate=75/s" in text
    assert "clients.rate=10/s:" not in text


def test_event_loop_at_94_percent_is_stable():
    # The same offered load is within the event loop's capacity (7,937/s).
    exp = load(ROOT / "experiments" / "sync_vs_async.yaml",
               ["replications=1", "sweep.sync_async.io_model=[event_loop]", "sweep.clients.rate=[75/s]",
                "sync_async.threads=200"])  # the file's pool size: refused without a thread pool
    s = run_experiment(exp).summary
    assert not s["unstable"].iloc[0], s["unstable_reason"].iloc[0]


def test_unstable_column_written_and_read_back(tmp_path):
    out = tmp_path / "r"
    cfg = ROOT / "experiments" / "sync_vs_async.yaml"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "replications=1",
                 "--set", "duration=0.5s", "--set", "sweep.sync_async.io_model=[thread_pool]",
                 "--set", "sweep.clients.rate=[10/s, 75/s]"]) == 0
    s = pd.read_csv(out / "summary.csv")
    assert list(s["unstable"]) == [False, True]
    assert main(["summary", str(out), "--all"]) == 0
    assert main(["summary", str(tmp_path / "nothing")]) == 2


def test_checks_on_synthetic_rows():
    ok = {"requests": 10_000, "responses": 9_990, "latency_trend": 1.02, "server_utilization": 0.9}
    assert stability.reasons(ok, {"clients": {"mode": "async"}}) == []
    # a 1% deficit is within noise; 5% is a growing queue
    assert stability.reasons({**ok, "responses": 9_500})[0].startswith("queue growing")
    # few requests: a gap below 3 sqrt(n) is not significant
    assert stability.reasons({"requests": 100, "responses": 80}) == []
    assert "latency rising" in stability.reasons({**ok, "latency_trend": 1.8})[0]
    # saturation matters only for open-loop clients
    hot = {**ok, "server_utilization": 0.995}
    assert stability.reasons(hot, {"clients": {"mode": "sync"}}) == []
    assert "saturated" in stability.reasons(hot, {"clients": {"mode": "async"}})[0]
    assert "backlog" in stability.reasons({"copies": 1000, "backlog": 300})[0]


def test_screen_summary_of_a_large_sweep_is_compact():
    from commsim.experiment.runner import make_result

    rates = [f"{r}/s" for r in range(1, 201)]
    exp = load({"name": "big", "pattern": "request_response", "clients": {"mode": "async"},
                "sweep": {"clients.rate": rates}})
    rows = [{"clients.rate": p.params["clients.rate"], "replication": 0, "seed": 1,
             "throughput": 10.0 * i, "latency_mean": 0.002, "latency_p99": 0.0123,
             "requests": 1000, "responses": 1000 if i < 190 else 500}
            for i, p in enumerate(exp.points)]
    text = screen(make_result(exp, rows), "results/big")
    lines = text.splitlines()
    assert len(lines) < 50
    assert "170 of 200 sweep points not shown" in text and "results/big/summary.csv" in text
    assert "`commsim summary results/big --all`" in text
    assert "latency p99 (ms)" in text and "12.3" in text
    assert "10 of 200 point(s) NOT in steady state" in text and "clients.rate=200/s" in text


def test_notification_checks_on_synthetic_rows():
    ok = {"updates_created": 10_000, "updates_resolved": 9_950, "server_utilization": 0.9}
    assert stability.reasons(ok, {"pattern": "sse"}) == []
    # 10% of the window's updates not resolved in it: a queue of frames grows
    assert stability.reasons({**ok, "updates_resolved": 9_000})[0].startswith("backlog growing")
    # saturation counts where the load is open loop: short polling, SSE, push,
    # WebSocket; not long polling (a busier server sends fewer, fuller responses)
    hot = {**ok, "server_utilization": 0.995}
    for p in ("short_polling", "sse", "push", "websocket"):
        assert "saturated" in stability.reasons(hot, {"pattern": p, "clients": {"mode": "sync"}})[0]
    assert stability.reasons(hot, {"pattern": "long_polling", "clients": {"mode": "sync"}}) == []


def test_overloaded_streaming_server_flagged_and_light_load_not():
    # experiments/capacity.yaml: one core, 2 ms of CPU per frame, 0.2 updates/s
    # per client: saturation at 2,500 clients.  1,000 clients use 40%; 3,000
    # offer 120%: the frame queue grows by 100 frames/s.
    import yaml

    cfg = yaml.safe_load((ROOT / "experiments" / "capacity.yaml").read_text())
    for section in ("short_polling", "long_polling"):
        del cfg[section]
    cfg.update(replications=1, duration="10s", warmup="5s", pattern="push",
               sweep={"clients.count": [1000, 3000]})
    exp = load(cfg)
    s = run_experiment(exp).summary.set_index("clients.count")
    assert not s.loc[1000, "unstable"], s.loc[1000, "unstable_reason"]
    why = s.loc[3000, "unstable_reason"]
    assert s.loc[3000, "unstable"] and "backlog growing" in why and "saturated" in why, why
