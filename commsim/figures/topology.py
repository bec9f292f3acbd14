"""Figures of the topology patterns (stateful, sidecar).

The stateful timeline needs time series, which runs do not report (a run's
row holds scalars): replication 0's series of every sweep point are
recorded during that run and kept in ``timeseries.csv`` beside the figure
(each server's utilisation over the time it existed in the window in
``servers.csv``); never re-simulated (:mod:`commsim.figures.sidetables`).
"""

from __future__ import annotations

import math
from pathlib import Path

from commsim.experiment.output import atomic_write, save_figure
from commsim.experiment.plots import subplots


def _label(params: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in params.items()) or "run"


# ----------------------------------------------------------------- stateful --
_TS_COLS = ("throughput", "latency_mean", "failed", "relogins", "imbalance")


def run_series(run) -> dict:
    """At the end of a run (replication 0; :mod:`commsim.figures.sidetables`):
    the model's per-bin series and each server's utilisation."""
    model = run.model
    ts = model.timeseries()
    servers = [[srv.index, srv.created, util, sum(srv.served)]
               for srv, util in zip(model.servers, model.server_utilizations())]
    return {"timeseries": {k: ts[k] for k in ("time", *_TS_COLS)}, "servers": servers}


def _stateful_series(result, out_dir: Path):
    """Per sweep point (label, config, series dict) and the paths of
    ``timeseries.csv`` / ``servers.csv``: written from the series the runs
    recorded, else read when they were written for these points and seed
    (see :mod:`commsim.figures.sidetables`; never simulated)."""
    import csv as _csv

    from commsim.figures import sidetables
    from commsim.rng import derive_run_seed

    exp = result.experiment
    points = [(_label(p.params), p.config) for p in exp.points]
    seed = derive_run_seed(exp.resolved["seed"], 0)
    fp = sidetables.fingerprint([cfg for _, cfg in points], seed)
    ts_csv, srv_csv = out_dir / "timeseries.csv", out_dir / "servers.csv"
    indices = range(len(points))

    def build_ts(side: dict) -> list[str]:
        out = ["point,time,throughput,latency_mean,failed,relogins,imbalance"]
        for i, (label, _cfg) in enumerate(points):
            ts = side[i]["timeseries"]
            for k, t in enumerate(ts["time"]):
                out.append(f"\"{label}\",{t:g},{ts['throughput'][k]:g},{ts['latency_mean'][k]:g},"
                           f"{ts['failed'][k]},{ts['relogins'][k]},{ts['imbalance'][k]:g}")
        return out

    def build_srv(side: dict) -> list[str]:
        out = ["point,server,created,utilization,served"]
        for i, (label, _cfg) in enumerate(points):
            for index, created, util, served in side[i]["servers"]:
                out.append(f"\"{label}\",{index},{created:g},{util:.6g},{served}")
        return out

    lines = sidetables.lines(result, ts_csv, fp, seed, indices, build_ts, "timeline.png")
    sidetables.lines(result, srv_csv, fp, seed, indices, build_srv, "timeline.png")
    series = {label: {"time": [], **{c: [] for c in _TS_COLS}} for label, _ in points}
    for row in _csv.DictReader(lines):
        ts = series.get(row["point"])
        if ts is None:
            continue
        ts["time"].append(float(row["time"]))
        for c in _TS_COLS:
            ts[c].append(float(row[c]))
    return [(label, cfg, series[label]) for label, cfg in points], [ts_csv, srv_csv]


def stateful_figures(result, out_dir: Path, model_cls=None) -> list:
    """``timeline.png`` (replication 0's series, from the side tables) and
    ``summary.png`` (the summary's key metrics per sweep point).
    ``model_cls`` is not used (figures never simulate); kept for the caller."""
    from commsim.figures import sidetables

    out_dir = Path(out_dir)
    try:
        series, paths = _stateful_series(result, out_dir)
    except sidetables.Missing:  # said by draw_figures; the summary is still drawn
        series, paths = None, []
    paths = list(paths)
    if series is not None:
        paths.append(_timeline(series, out_dir))
    return paths + _summary_figure(result, out_dir)


def _timeline(series, out_dir: Path) -> Path:
    fig, axes = subplots(3, 1, figsize=(7.4, 8), sharex=True)
    for label, cfg, ts in series:
        t = ts["time"]
        axes[0].plot(t, [x * 1000 for x in ts["latency_mean"]], label=label, lw=1.2)
        axes[1].plot(t, ts["imbalance"], label=label, lw=1.2)
        axes[2].plot(t, [f + r for f, r in zip(ts["failed"], ts["relogins"])], label=label, lw=1.2)
    cfg = series[0][1]
    st = cfg["stateful"]
    for ax in axes:
        if st["crash_at"] is not None:
            ax.axvline(st["crash_at"], color="red", ls="--", lw=0.8)
        if st["scale_out_at"] is not None:
            ax.axvline(st["scale_out_at"], color="green", ls="--", lw=0.8)
        if cfg["warmup"] > 0:
            ax.axvspan(0, cfg["warmup"], color="0.9")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean latency (ms)")
    axes[1].set_ylabel("imbalance\n(max/mean served per server)")
    axes[2].set_ylabel(f"failed + relogins per {ts_bin(cfg):g} s")
    axes[2].set_xlabel("simulated time (s)  [red: crash, green: scale-out, grey: warm-up]", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left")
    axes[0].set_title("Stateful vs stateless through a crash and a scale-out (replication 0)",
                      fontsize=10)
    return save_figure(fig, out_dir / "timeline.png")


def _summary_figure(result, out_dir: Path) -> list:
    paths = []
    s = result.summary
    labels = [_label({k: row[k] for k in result.params}) for _, row in s.iterrows()]
    metrics = [("latency_mean", 1000, "mean latency (ms)"), ("relogins", 1, "relogins"),
               ("bytes_per_request", 1, "bytes per request"), ("imbalance", 1, "imbalance (util max/mean)"),
               ("availability_crash", 100, "availability during crash (%)"),
               ("store_utilization", 100, "store utilisation (%)")]
    from commsim.experiment.plots import ci_note

    fig, axes = subplots(3, 2, figsize=(7.6, 1.2 + 0.5 * len(labels) * 3))
    for ax, (m, scale, title) in zip(axes.flat, metrics):
        vals = [v * scale if not math.isnan(v) else 0 for v in s[m]]
        ci = s.get(f"{m}_ci95")
        err = [0 if math.isnan(e) else e * scale for e in ci] if ci is not None else None
        ax.barh(range(len(vals)), vals, color="C0", xerr=err if err and any(err) else None, capsize=3)
        ax.set_yticks(range(len(vals)))
        ax.set_yticklabels(labels if ax in axes[:, 0] else [""] * len(vals), fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    note = ci_note(s)
    fig.suptitle("Stateful vs stateless: key metrics per configuration" + (f"\n({note})" if note else ""),
                 fontsize=10)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / "summary.png"))
    return paths


def ts_bin(cfg) -> float:
    return cfg["stateful"]["timeseries_bin"]


# ------------------------------------------------------------------ sidecar --
def _lines(ax, s, x, groups, metric, scale=1.0, style=None):
    """One line per combination of ``groups`` (human legend labels), with
    95 % CIs when the summary has them."""
    from commsim.experiment.plots import key_label, value_label

    keys = [g for g in groups]
    grouped = s.groupby(keys, sort=False) if keys else [((), s)]
    ci_col = f"{metric}_ci95"
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{key_label(k)}: {value_label(k, v)}" for k, v in zip(keys, key)) or None
        g = g.sort_values(x)
        err = None
        if ci_col in g.columns and g[ci_col].notna().any():
            err = g[ci_col].fillna(0.0).to_numpy(dtype=float) * scale
        ax.errorbar(g[x], g[metric] * scale, yerr=err, marker="o", ms=3, capsize=2, label=label,
                    ls=style or "-")


def _panels(n, rows=1):
    fig, axes = subplots(rows, -(-n // rows), figsize=(7.6, 3.2 * rows + 0.5), squeeze=False)
    return fig, list(axes.flat)


def _finish(fig, axes, xlabel, title, note):
    for ax in axes:
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=7,
                   frameon=False)
    fig.suptitle(title + (f"\n({note})" if note else ""), fontsize=10)
    rows = -(-len(labels) // 3) if labels else 0
    fig.tight_layout(rect=(0, (0.1 + 0.17 * rows) / fig.get_figheight(), 1, 1))


def sidecar_figures(result, out_dir: Path) -> list:
    from commsim.experiment.plots import ci_note

    s = result.summary.copy()
    params = result.params
    paths = []
    note = ci_note(s)
    if "clients.rate" in params:
        count = result.experiment.points[0].config["clients"]["count"]
        s["request rate (1/s)"] = s["clients.rate"] * count
        s["request rate (1/s)_ci95"] = float("nan")
        x = "request rate (1/s)"
        others = [p for p in params if p != "clients.rate"]
        fig, axes = _panels(4, rows=2)
        for ax, m in zip(axes[:3], ("latency_p50", "latency_p90", "latency_p99")):
            _lines(ax, s, x, others, m, 1000)
            ax.set_title(m.replace("latency_", "latency ") + " (ms)", fontsize=9)
        duration = result.experiment.points[0].config["duration"]
        s["mesh cores"] = s["mesh_cpu_s"] / duration
        s["mesh cores_ci95"] = s.get("mesh_cpu_s_ci95", float("nan")) / duration
        _lines(axes[3], s, x, others, "mesh cores")
        axes[3].set_title("CPU spent on the mesh (cores)", fontsize=9)
        _finish(fig, axes, "client requests per second", "Service-mesh overhead against load", note)
        paths.append(save_figure(fig, out_dir / "overhead_vs_rate.png"))
    if "sidecar.depth" in params:
        x = "sidecar.depth"
        others = [p for p in params if p not in (x, "clients.rate")]
        sub = s
        if "clients.rate" in params:
            low = s["clients.rate"].min()
            sub = s[s["clients.rate"] == low]
        fig, axes = _panels(3)
        _lines(axes[0], sub, x, others, "latency_p90", 1000)
        axes[0].set_title("end-to-end latency p90 (ms)", fontsize=9)
        _lines(axes[1], sub, x, others, "hop_added_p90", 1000)
        axes[1].set_title("latency added per hop, p90 (ms)", fontsize=9)
        _lines(axes[2], sub, x, others, "mesh_vcpu_per_krps")
        axes[2].set_title("mesh vCPU per 1000 req/s", fontsize=9)
        _finish(fig, axes, "chain depth (services)", "Service-mesh overhead against call-chain depth", note)
        paths.append(save_figure(fig, out_dir / "overhead_vs_depth.png"))
    if "sidecar.fault_error_rate" in params:
        x = "sidecar.fault_error_rate"
        others = [p for p in params if p != x]
        fig, axes = _panels(3)
        _lines(axes[0], s, x, others, "success_rate", 100)
        axes[0].set_title("success rate (%)", fontsize=9)
        _lines(axes[1], s, x, others, "retry_amplification")
        axes[1].set_title("tries per call", fontsize=9)
        _lines(axes[2], s, x, others, "latency_p99", 1000)
        axes[2].set_title("latency p99 (ms)", fontsize=9)
        _finish(fig, axes, "error rate of the faulty instance", "Retries and circuit breaking under faults",
                note)
        paths.append(save_figure(fig, out_dir / "faults.png"))
    return paths
