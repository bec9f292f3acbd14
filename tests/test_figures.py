"""Figures (issue 12 item 7): human axis labels with units, closed forms
beside simulated curves, grids whose rows and columns mean one key each,
README-width stacked bars, no bars on log axes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import commsim
from commsim import theory
from commsim.errors import ConfigError
from commsim.experiment import plots
from commsim.experiment.plotspec import resolve_plots
from commsim.figures.theory import closed_form
from commsim.patterns import registry

registry()


def _queue(**over):
    raw = {"pattern": "request_response", "duration": "1s",
           "clients": {"count": 10, "mode": "async", "rate": "50/s"},
           "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}}}
    for k, v in over.items():
        raw.setdefault(k, {}).update(v) if isinstance(v, dict) else raw.__setitem__(k, v)
    return commsim.load(raw).points[0].config


def test_closed_form_is_the_queue_when_the_model_is_one():
    lam, mu = 500.0, 1000.0
    th = theory.mm1(lam, mu)
    cfg = _queue()
    assert closed_form(cfg, "latency_mean") == (pytest.approx(th["response"]), "M/M/1")
    assert closed_form(cfg, "wait_mean")[0] == pytest.approx(th["wait"])
    assert closed_form(cfg, "server_utilization")[0] == pytest.approx(0.5)
    # M/M/1 sojourn time is exponential with rate mu - lam
    assert closed_form(cfg, "latency_p99")[0] == pytest.approx(math.log(100) / (mu - lam))
    two = _queue(server={"cores": 2})
    assert closed_form(two, "latency_mean") == (pytest.approx(theory.mmc(lam, mu, 2)["response"]), "M/M/2")
    assert closed_form(two, "latency_p99") is None  # no percentile formula used for c > 1
    const = _queue(server={"service_time": "1ms"})
    assert closed_form(const, "latency_mean") == (pytest.approx(theory.md1(lam, 1e-3)["response"]), "M/G/1")


@pytest.mark.parametrize("over", [{"network": {"latency": "1ms"}}, {"network": {"handshake": "tcp"}},
                                  {"clients": {"mode": "sync"}},
                                  {"request_response": {"encoding": "json"}},
                                  {"clients": {"rate": "100/s"}},       # rho = 1: no steady state
                                  {"server": {"cores": 2, "service_time": "1ms"}},
                                  {"pattern": "sync_async"}])
def test_no_closed_form_where_the_model_is_no_queue(over):
    cfg = _queue(**over) if "pattern" not in over else commsim.load(
        {"pattern": "sync_async", "duration": "1s"}).points[0].config
    assert closed_form(cfg, "latency_mean") is None


def test_axis_labels_have_human_units():
    assert plots.key_axis("clients.rate", [2, 8]) == ("request rate per client (per second)", 1.0)
    assert plots.key_axis("network.latency", [0.01, 0.04]) == ("one-way latency (ms)", 1e3)
    assert plots.key_axis("network.bandwidth", [1e8]) == ("bandwidth (Mbit/s)", 1e-6)
    assert plots.metric_axis("broker_utilization", [0.3]) == ("broker utilisation (%)", 100.0)
    assert plots.metric_axis("latency_mean", [0.002]) == ("mean latency (ms)", 1e3)
    assert plots.metric_axis("latency_p99", [2.5]) == ("p99 latency (s)", 1.0)
    # the B/s metric is drawn as a bit rate, as every table shows it (commsim.humanize)
    assert plots.metric_axis("bandwidth", [3e6]) == ("bandwidth (Mbit/s)", 8e-6)
    assert plots.metric_axis("bytes_payload", [2048]) == ("bytes payload (KiB)", 1 / 1024)


def test_bars_on_a_log_axis_are_refused():
    with pytest.raises(ConfigError) as e:
        resolve_plots([{"x": "clients.rate", "y": "latency_mean", "kind": "bar", "logy": True}],
                      ["clients.rate"])
    assert e.value.key == "plots[0].logy"


def _grid_summary():
    rows = []
    for proxy in ("none", "mux", "demux"):
        for lat in (0.01, 0.04):
            for loss in (0.0, 0.01):
                rows.append({"multiplexing.proxy": proxy, "network.latency": lat, "network.loss": loss,
                             "replications": 3, "page_load_time": 0.2 + lat + loss,
                             "page_load_time_ci95": 0.01})
    return pd.DataFrame(rows)


def test_two_facet_keys_make_a_grid_of_rows_and_columns():
    fig = plots.line_plot(_grid_summary(), "network.loss", "page_load_time", facet=[
        "multiplexing.proxy", "network.latency"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6
    grid = {}
    for ax in axes:
        spec = ax.get_subplotspec()
        grid[(spec.rowspan.start, spec.colspan.start)] = ax.get_title()
    # three rows (one per proxy), two columns (one per latency): every row one
    # proxy, every column one latency
    assert sorted(grid) == [(r, c) for r in range(3) for c in range(2)]
    for r, proxy in enumerate(("none", "mux", "demux")):
        assert all(f"proxy: {proxy}," in grid[(r, c)] for c in range(2))
    for c, lat in enumerate(("10 ms", "40 ms")):
        assert all(grid[(r, c)].endswith(f"latency: {lat}") for r in range(3))
    assert fig.get_figwidth() <= 7.5
    assert "95% CI over 3 replications" in fig._suptitle.get_text()


def test_stacked_bars_fit_readme_width_with_24_points():
    s = pd.DataFrame({"k": [f"point {i}" for i in range(24)], "a": np.arange(24.0), "b": 1.0})
    fig = plots.stacked_bar_plot(s, [("a", "a"), ("b", "b")], ["k"])
    assert fig.get_figwidth() * 110 <= 800
    ax = fig.axes[0]
    assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())


def test_bars_become_points_on_a_log_axis():
    s = pd.DataFrame({"x": ["a", "b"], "replications": 2, "latency_mean": [0.1, 1.0],
                      "latency_mean_ci95": [0.01, 0.1]})
    fig = plots.bar_plot(s, "x", "latency_mean", logy=True)
    ax = fig.axes[0]
    assert not ax.patches and ax.get_yscale() == "log"


# ------------------------------------------- figures read results, never re-simulate --

from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["pubsub", "stateful_vs_stateless", "notifications", "precision_demo",
                                  "multiplexing", "request_response", "sidecar", "sync_vs_async",
                                  "reconnect_storm"])
def test_committed_results_redraw_without_simulating(name, tmp_path, monkeypatch):
    import shutil

    from commsim.engine import Simulation
    from commsim.experiment.report import draw_figures, load_result

    folder = tmp_path / name
    shutil.copytree(ROOT / "results" / name, folder)

    def refuse(*a, **k):
        raise AssertionError("a figure re-simulated")

    from commsim.experiment import runner

    monkeypatch.setattr(Simulation, "run", refuse)
    monkeypatch.setattr(runner, "simulate", refuse)
    warnings: list[str] = []
    records = draw_figures(load_result(folder), folder, ("png",), warn=warnings.append)
    assert records and not warnings
    committed = {p.name for p in (ROOT / "results" / name).glob("*.png")}
    assert committed <= {r["file"] for r in records}


def test_points_not_in_steady_state_are_ringed_and_the_flag_is_no_sweep_key():
    s = pd.DataFrame({"clients.rate": [10.0, 20.0, 30.0], "replications": 2,
                      "latency_mean": [0.01, 0.02, 0.9], "latency_mean_ci95": 0.001,
                      "unstable": [False, False, True],
                      "unstable_reason": ["", "", "offered load above capacity"]})
    assert plots.param_columns(s) == ["clients.rate"]
    fig = plots.line_plot(s, "clients.rate", "latency_mean")
    ax = fig.axes[0]
    rings = [c for c in ax.collections if c.get_label() == plots.UNSTABLE_LABEL]
    assert len(rings) == 1 and rings[0].get_offsets().tolist() == [[30.0, 900.0]]  # ms
    assert plots.UNSTABLE_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]
    # results written before the stability check: nothing flagged
    assert not plots.unstable_flags(s.drop(columns=["unstable"])).any()


def test_cheapest_csv_counts_only_patterns_delivering_99_percent(tmp_path):
    """Issue 12 item 9: a pattern that loses updates is not crowned; a regime
    where none delivers 99% says so."""
    import pandas as pd

    from commsim.figures import notifications as nf

    rows = []
    for n, lost in ((100, {"long_polling": 0.2}), (1000, {p: 0.5 for p in nf.PATTERN_ORDER})):
        for p in nf.PATTERN_ORDER:
            rows.append({"pattern": p, "clients.count": n, "workload.event_rate": 0.1,
                         "replications": 1, "updates_created": 1000.0,
                         "missed": 1000.0 * lost.get(p, 0.0),
                         # short polling: 5% still waiting for the next poll, not lost
                         "updates_pending": 50.0 if p == "short_polling" else 0.0,
                         "updates_delivered": 1000.0 * (1 - lost.get(p, 0.0))
                         - (50.0 if p == "short_polling" else 0.0),
                         "delivery_ratio": 1 - lost.get(p, 0.0) * 1000.0
                         / (1000.0 - (50.0 if p == "short_polling" else 0.0)),
                         "bandwidth": {"long_polling": 1.0}.get(p, 5.0), "server_cpu_s": 1.0,
                         "server_memory_max": 1.0,
                         "latency_mean": {"long_polling": 0.01}.get(p, 0.1)})
    lines = nf.cheapest_rows(pd.DataFrame(rows))
    assert len(lines) == 3
    # 100 clients: long polling is cheapest and fastest but loses 20%: not crowned.
    first = lines[1].split(",")
    assert first[:2] == ["100", "0.1"]
    assert "long_polling" not in lines[1]
    assert first[2] == "short_polling=sse=push" and first[5] == "short_polling=sse=push"
    # 1000 clients: every pattern loses half; the row says so and has no values.
    second = lines[2].split(",")
    assert second[2:6] == ["none delivers 99%"] * 4 and second[6:] == [""] * 4
