"""Figures and the cheapest-pattern table of a notification experiment.

Drawn from ``result.summary`` (means over replications) when the experiment
sweeps ``pattern`` with ``clients.count`` and/or ``workload.event_rate``:

* ``bandwidth_vs_clients.png``: bytes per second vs clients, log-log, one
  line per pattern (at the event rate nearest 0.1/s per client);
* ``wasted_cpu_vs_event_rate.png``: wasted server CPU-seconds per second vs
  the event rate (at the largest client count with every pattern);
* ``latency_distribution.png``: mean and p50/p95/p99 latency per pattern
  (at one sweep point);
* ``connections_held.png``: most connections (and server memory) held at
  once vs clients, plus short polling's mean connections without keep-alive
  (the time-average of polls at the server CPU, ``server_jobs_mean``);
* ``cheapest.csv``: per (clients, event rate), the pattern that uses the
  least bandwidth, server CPU, server memory, and the one with the lowest
  mean latency (patterns within 1 % of the best are listed joined by ``=``),
  with the best value.  Only patterns that deliver at least
  :data:`DELIVERY_MIN` (99 %) of the window's updates compete
  (``delivery_ratio``: one still on its way when the window closes, e.g.
  waiting for short polling's next poll, is not lost).  A
  pattern that loses updates to offline clients or dropped streams is not
  "cheapest" or "fastest", because the updates it lost are absent from its
  costs and latencies; when none qualifies, the row says so (``none
  delivers 99%``) and carries no values.
"""

from __future__ import annotations

import math
from pathlib import Path

PATTERN_ORDER = ("short_polling", "long_polling", "sse", "push")
#: The least delivery ratio a pattern needs to count in cheapest.csv.
DELIVERY_MIN = 0.99
COLORS = {"short_polling": "tab:red", "long_polling": "tab:orange", "sse": "tab:blue",
          "push": "tab:green"}
STYLE = {"short_polling": "o-", "long_polling": "s-", "sse": "^--", "push": "o:"}

P, N, R = "pattern", "clients.count", "workload.event_rate"


def _nearest(values, target):
    values = sorted(set(values))
    return min(values, key=lambda v: abs(math.log(v) - math.log(target)) if v > 0 else math.inf)


def figures(result, out_dir) -> list[Path]:
    from commsim.experiment.plots import subplots

    from commsim.experiment.output import atomic_write, save_figure

    df = result.summary
    if P not in df.columns:
        return []
    out = Path(out_dir)
    paths: list[Path] = []
    pats = [p for p in PATTERN_ORDER if p in set(df[P])]
    has_n = N in df.columns
    has_r = R in df.columns
    rate0 = _nearest(df[R], 0.1) if has_r else None
    n_all = df.groupby(N)[P].nunique() if has_n else None
    n0 = max(n for n, k in n_all.items() if k == len(pats)) if has_n else None

    def select(d, **fixed):
        for col, val in fixed.items():
            if col in d.columns and val is not None:
                d = d[d[col] == val]
        return d

    from commsim.experiment.plots import ci_note, mark_unstable, metric_axis, unstable_flags

    note = ci_note(df)

    def err(d, col, scale=1.0):
        """95 % half-widths of ``col`` (None with one replication)."""
        c = f"{col}_ci95"
        if c not in d.columns or not d[c].notna().any():
            return None
        return d[c].fillna(0.0).to_numpy(dtype=float) * scale

    def titled(ax, text):
        ax.set_title(text + (f"\n({note})" if note else ""), fontsize=10)

    where = ", ".join(t for t in ((f"{n0:,} clients" if has_n else ""),
                                  (f"{rate0:g} updates/s per client" if has_r else "")) if t)

    # 1. bandwidth vs clients, log-log.
    if has_n:
        fig, ax = subplots(figsize=(6.4, 4.4))
        ylabel, scale = metric_axis("bandwidth", df["bandwidth"])
        for p in pats:
            d = select(df[df[P] == p], **{R: rate0}).sort_values(N)
            ax.errorbar(d[N], d["bandwidth"] * scale, yerr=err(d, "bandwidth", scale), fmt=STYLE[p],
                        color=COLORS[p], label=p, capsize=3, ms=5)
            mark_unstable(ax, d[N], d["bandwidth"] * scale, unstable_flags(d))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("clients")
        ax.set_ylabel(ylabel.replace("bandwidth", "bandwidth, both directions"))
        titled(ax, "Bandwidth vs clients" + (f" ({rate0:g} updates/s per client)" if has_r else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out / "bandwidth_vs_clients.png"))

    # 2. wasted server CPU vs event rate.
    if has_r:
        fig, ax = subplots(figsize=(6.4, 4.4))
        dur = result.experiment.resolved["duration"]
        for p in pats:
            d = select(df[df[P] == p], **{N: n0}).sort_values(R)
            ax.errorbar(d[R], d["server_cpu_wasted_s"] / dur, yerr=err(d, "server_cpu_wasted_s", 1 / dur),
                        fmt=STYLE[p], color=COLORS[p], label=p, capsize=3, ms=5)
            mark_unstable(ax, d[R], d["server_cpu_wasted_s"] / dur, unstable_flags(d))
        ax.set_xscale("log")
        ax.set_xlabel("updates per second per client")
        ax.set_ylabel("wasted server CPU (cores)")
        titled(ax, "Wasted server CPU vs event rate" + (f" ({n0:,} clients)" if has_n else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out / "wasted_cpu_vs_event_rate.png"))

    # 3. latency distribution (percentiles) per pattern at one point: points
    # on a log axis (a bar's length means nothing there), 95 % CIs when replicated.
    fig, ax = subplots(figsize=(6.4, 4.4))
    point = select(df, **{N: n0, R: rate0})
    stats = [("latency_p50", "p50", "o"), ("latency_mean", "mean", "D"), ("latency_p95", "p95", "s"),
             ("latency_p99", "p99", "^")]
    offset = 0.16
    for i, (col, label, marker) in enumerate(stats):
        if col not in point.columns:
            continue
        xs, vals, errs, flags = [], [], [], []
        for k, p in enumerate(pats):
            row = point[point[P] == p]
            if not len(row) or not math.isfinite(float(row[col].iloc[0])):
                continue
            xs.append(k + (i - 1.5) * offset)
            vals.append(float(row[col].iloc[0]) * 1e3)
            e = err(row, col, 1e3)
            errs.append(float(e[0]) if e is not None else 0.0)
            flags.append(bool(unstable_flags(row)[0]))
        mark_unstable(ax, xs, vals, flags)
        ax.errorbar(xs, vals, yerr=errs if any(errs) else None, fmt=marker, ms=6, capsize=3,
                    color=f"C{i}", label=label)
    ax.set_xticks(range(len(pats)), pats)
    ax.set_xlim(-0.6, len(pats) - 0.4)
    ax.set_yscale("log")
    ax.set_ylabel("update latency, creation to arrival (ms)")
    titled(ax, "Latency distribution" + (f" ({where})" if where else ""))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="center")
    from matplotlib.ticker import LogFormatter

    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    paths.append(save_figure(fig, out / "latency_distribution.png"))

    # 4. connections held: most at once (max) per pattern, and short polling's
    # time-average without keep-alive; server memory on the right axis.
    if has_n:
        fig, ax = subplots(figsize=(6.4, 4.4))
        sizes = {"short_polling": 9, "long_polling": 7, "sse": 5, "push": 3}  # overlapping lines stay visible
        for p in pats:
            d = select(df[df[P] == p], **{R: rate0}).sort_values(N)
            ax.plot(d[N], d["connections_max"], STYLE[p], color=COLORS[p], ms=sizes.get(p, 5),
                    label=f"{p} (most at once)")
        if "short_polling" in pats and "server_jobs_mean" in df.columns:
            # Without keep-alive a short-polling connection lives from the poll's
            # arrival to its answer: exactly a job at the server CPU, so the
            # time-average jobs present is the mean connections held.
            d = select(df[df[P] == "short_polling"], **{R: rate0}).sort_values(N)
            ax.plot(d[N], d["server_jobs_mean"], "x-.", color=COLORS["short_polling"],
                    label="short_polling without keep-alive (time-average)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("clients")
        ax.set_ylabel("connections open at the server")
        mem = result.experiment.resolved.get("short_polling", {}).get("connection_memory")
        if mem:
            sec = ax.secondary_yaxis("right", functions=(lambda c: c * mem / 2 ** 20,
                                                         lambda m: m * 2 ** 20 / mem))
            sec.set_ylabel(f"server memory at {mem / 1024:g} KiB each (MiB)")
        titled(ax, "Connections held" + (f" ({rate0:g} updates/s per client)" if has_r else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, out / "connections_held.png"))

    # 5. cheapest pattern per regime.
    rows = cheapest_rows(df)
    path = out / "cheapest.csv"
    atomic_write(path, "\n".join(rows) + "\n")
    paths.append(path)
    return paths


def cheapest_rows(df) -> list[str]:
    """The lines of ``cheapest.csv`` (header first) from a summary table."""
    from commsim.metrics.notifications import delivered_share

    keys = [c for c in (N, R) if c in df.columns]
    rows = ["clients,event_rate,cheapest_bandwidth,cheapest_server_cpu,cheapest_server_memory,"
            "lowest_latency,bandwidth_Bps,server_cpu_s,server_memory_max_B,latency_mean_s"]
    groups = df.groupby(keys, sort=True) if keys else [((), df)]
    for k, g in groups:
        k = k if isinstance(k, tuple) else (k,)
        vals = dict(zip(keys, k))
        g = g[~(delivered_share(g) < DELIVERY_MIN)]  # NaN (no updates): nothing to lose
        if g.empty:
            none = f"none delivers {100 * DELIVERY_MIN:g}%"
            rows.append(f"{vals.get(N, '')},{vals.get(R, '')},{none},{none},{none},{none},,,,")
            continue
        best = {}
        for col in ("bandwidth", "server_cpu_s", "server_memory_max", "latency_mean"):
            gg = g.dropna(subset=[col])
            best[col] = gg.loc[gg[col].idxmin()] if len(gg) else None
        # Patterns within 1 % of the best tie: all are named, joined by '='.
        name = {}
        for c, b in best.items():
            if b is None:
                name[c] = ""
                continue
            tol = abs(b[c]) * 0.01
            name[c] = "=".join(p for p in PATTERN_ORDER
                               if ((g[P] == p) & (g[c] <= b[c] + tol)).any())
        val = {c: (f"{b[c]:.6g}" if b is not None else "") for c, b in best.items()}
        rows.append(f"{vals.get(N, '')},{vals.get(R, '')},{name['bandwidth']},{name['server_cpu_s']},"
                    f"{name['server_memory_max']},{name['latency_mean']},{val['bandwidth']},"
                    f"{val['server_cpu_s']},{val['server_memory_max']},{val['latency_mean']}")
    return rows
