"""Figures of a streaming pattern behind a topology (``experiments/reconnect_storm.yaml``).

* ``storm_timeseries.png`` (+ ``storm_timeseries.csv``): per pattern (columns)
  and reconnect jitter (lines), over simulated time: reconnects per second,
  TLS handshake CPU on the instances (cores), and the mean latency of the
  updates arriving in each bin; the crash is marked.  The series are the
  recorder's ``topology`` Series (``commsim.nodes.cluster``,
  ``topology.timeseries_bin``) of replication 0 of each point, recorded
  during that run and kept in the side table ``storm_timeseries.csv`` (see
  :mod:`commsim.figures.sidetables`; never re-simulated).
* ``storm_summary.png``: from ``summary.csv`` (means over replications):
  peak reconnect rate, peak TLS CPU, p99 latency of the updates created in
  the storm window, and updates missed, against the jitter.
"""

from __future__ import annotations

from pathlib import Path

J = "topology.reconnect_jitter"
COLORS = {0.0: "tab:red", 1.0: "tab:orange", 5.0: "tab:blue"}


def _key(point) -> tuple[str, float]:
    c = point.config
    return c["pattern"], float(c["topology"]["reconnect_jitter"])


def run_series(run) -> dict:
    """At the end of a run (replication 0; :mod:`commsim.figures.sidetables`):
    the recorder's ``topology`` Series, ``[t, values]``."""
    t, v = run.series["topology"]
    return {"topology": [list(t), [list(x) for x in v]]}


def _series(result, out_dir: Path):
    """{(pattern, jitter): (t, reconnects/s, tls cores, latency, conns)} from
    the series the runs recorded (written to the side table), else read from
    the side table (never simulated: :mod:`commsim.figures.sidetables`)."""
    from commsim.figures import sidetables
    from commsim.rng import derive_run_seed

    points = {_key(p): p for p in result.experiment.points}
    index = {k: result.experiment.points.index(p) for k, p in points.items()}
    seed = derive_run_seed(result.experiment.resolved["seed"], 0)
    csv = out_dir / "storm_timeseries.csv"
    fp = sidetables.fingerprint({f"{k[0]}/{k[1]:g}": p.config for k, p in points.items()}, seed)

    def build(side: dict) -> list[str]:
        out = ["pattern,jitter,t,reconnects_per_s,tls_cores,latency_mean,connections"]
        for (pattern, jitter), p in sorted(points.items()):
            t, v = side[index[(pattern, jitter)]]["topology"]
            b = p.config["topology"]["timeseries_bin"]
            for i in range(1, len(t)):
                (a0, h0, s0, n0, _, _), (a1, h1, s1, n1, conns, _) = v[i - 1], v[i]
                lat = (s1 - s0) / (n1 - n0) if n1 > n0 else float("nan")
                out.append(f"{pattern},{jitter:g},{t[i]:g},{(a1 - a0) / b:g},"
                           f"{(h1 - h0) / b:.6g},{lat:.6g},{conns}")
        return out

    lines = sidetables.lines(result, csv, fp, seed, index.values(), build, "storm_timeseries.png")
    out: dict = {}
    for line in lines[1:]:
        pattern, jitter, t, rec, tls, lat, conns = line.split(",")
        cols = out.setdefault((pattern, float(jitter)), ([], [], [], [], []))
        for col, val in zip(cols, (t, rec, tls, lat, conns)):
            col.append(float(val))
    return out, csv


def figures(result, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    points = result.experiment.points
    if not points or any("topology" not in p.config for p in points):
        return []
    from commsim.figures import sidetables

    try:
        series, csv = _series(result, out_dir)
    except sidetables.Missing:  # said by draw_figures; the summary is still drawn
        series, csv = None, None
    keys = series if series is not None else {_key(p) for p in points}
    patterns = [p for p in ("short_polling", "long_polling", "sse", "push")
                if any(k[0] == p for k in keys)]
    if not patterns:
        return []
    paths = [] if series is None else _timeseries_figure(result, series, patterns, csv, out_dir)
    return paths + _summary_figure(result, patterns, out_dir)


def _timeseries_figure(result, series, patterns, csv, out_dir: Path) -> list[Path]:
    from commsim.experiment.output import save_figure
    from commsim.experiment.plots import subplots

    points = result.experiment.points
    res = points[0].config
    crash = (res["topology"]["crash_at"] or [None])[0]
    fig, axes = subplots(3, len(patterns), figsize=(5.2 * len(patterns), 7.6), squeeze=False,
                         sharex=True)
    for j, pattern in enumerate(patterns):
        for (pat, jitter), (t, rec, tls, lat, _conns) in sorted(series.items()):
            if pat != pattern:
                continue
            color = COLORS.get(jitter)
            label = f"jitter {jitter:g} s"
            axes[0][j].plot(t, rec, color=color, label=label, lw=1.2)
            axes[1][j].plot(t, tls, color=color, label=label, lw=1.2)
            axes[2][j].plot(t, lat, color=color, label=label, lw=1.2)
        axes[0][j].set_title(f"{pattern}: {res['topology']['servers']} instances, one crashes",
                             fontsize=9)
        for i, ylabel in enumerate(("reconnects per second", "TLS handshake CPU (cores)",
                                    "latency of arriving updates (s)")):
            ax = axes[i][j]
            if crash is not None:
                ax.axvline(crash, color="black", ls=":", lw=1)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7, which="both")
        axes[2][j].set_yscale("log")
        axes[2][j].set_xlabel("simulated time (s)", fontsize=8)
        if crash is not None:
            for ax in (row[j] for row in axes):
                ax.set_xlim(crash - 2, crash + 10)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Reconnect storm: {res['clients']['count']:,} clients, crash at "
                 f"t = {crash:g} s (replication 0)", fontsize=10)
    fig.tight_layout()
    return [save_figure(fig, out_dir / "storm_timeseries.png"), csv]


def _summary_figure(result, patterns, out_dir: Path) -> list[Path]:
    from commsim.experiment.output import save_figure
    from commsim.experiment.plots import subplots

    paths = []
    df = result.summary
    if J in df.columns:
        fig, axes = subplots(1, 4, figsize=(14, 3.4), squeeze=False)
        metrics = [("reconnect_rate_peak", "peak reconnects per second"),
                   ("handshake_cpu_peak", "peak TLS CPU (cores)"),
                   ("latency_storm_p99", "p99 latency, updates of the storm (s)"),
                   ("missed", "updates missed")]
        for ax, (m, label) in zip(axes[0], metrics):
            for pattern in patterns:
                d = df[df["pattern"] == pattern].sort_values(J)
                ax.plot(d[J], d[m], "o-", label=pattern)
            ax.set_xlabel("reconnect jitter (s)", fontsize=8)
            ax.set_title(label, fontsize=8)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / "storm_summary.png"))
    return paths
