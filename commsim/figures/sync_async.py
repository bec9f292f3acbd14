"""Figures of ``experiments/sync_vs_async.yaml``: throughput, latency, threads,
blocking and wasted CPU per I/O model against the offered load."""

from __future__ import annotations

from pathlib import Path

# ---------------------------------------------------------------- figures --
MODEL_KEY = "sync_async.io_model"


def _x_axis(result):
    """The swept load parameter: (column, x values as offered load or raw, label)."""
    summary = result.summary
    params = [p for p in result.params if p != MODEL_KEY and p in summary.columns]
    numeric = [p for p in params if summary[p].dtype.kind in "if"]
    if not numeric:
        return None, None, None, params
    x = "clients.rate" if "clients.rate" in numeric else numeric[0]
    rest = [p for p in params if p != x]
    values = summary[x].astype(float)
    label = x
    resolved = result.experiment.resolved
    if x == "clients.rate" and "clients.count" not in params:
        values = values * resolved["clients"]["count"]
        label = "offered load (requests/s)"
    return x, values, label, rest


def _groups(result, rest):
    summary = result.summary
    keys = ([MODEL_KEY] if MODEL_KEY in summary.columns else []) + rest
    if not keys:
        yield "", summary.index
        return
    for key, g in summary.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(str(k) for k in key)
        yield label, g.index


def figures(result, out_dir) -> list[Path]:
    """Throughput, latency, blocking / wasted CPU and threads vs load, one line per I/O model."""
    from commsim.experiment.plots import subplots

    from commsim.experiment.output import save_figure

    out_dir = Path(out_dir)
    summary = result.summary
    x, xv, xlabel, rest = _x_axis(result)
    if x is None or summary.empty:
        return []
    paths = []

    def line(ax, metric, idx, label, style="-o"):
        if metric not in summary.columns:
            return
        y = summary.loc[idx, metric].astype(float)
        ci = summary.get(f"{metric}_ci95")
        err = ci.loc[idx].astype(float).fillna(0.0) if ci is not None else None
        ax.errorbar(xv.loc[idx], y, yerr=err, fmt=style, capsize=2, label=label, ms=4)

    # Throughput vs offered load.
    fig, ax = subplots(figsize=(6.4, 4.4))
    for label, idx in _groups(result, rest):
        line(ax, "throughput", idx, label)
    if xlabel.startswith("offered"):
        lim = float(xv.max())
        ax.plot([0, lim], [0, lim], ":", color="grey", lw=1, label="offered")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput (requests/s)")
    ax.set_title("Throughput vs load per I/O model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "sync_async_throughput.png"))

    # Latency.
    fig, axes = subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ("latency_p50", "latency_p99")):
        for label, idx in _groups(result, rest):
            line(ax, metric, idx, label)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(metric.replace("_", " "))
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("latency (s)")
    axes[0].legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "sync_async_latency.png"))

    # Blocking time and wasted CPU (per second of the window).
    duration = result.experiment.resolved["duration"]
    fig, axes = subplots(1, 3, figsize=(15, 4.2))
    panels = (("io_blocked_s", "threads blocked on I/O (mean)"),
              ("server_cpu_wasted_s", "wasted CPU (cores)"),
              ("io_overhead_cpu_s", "readiness/completion CPU (cores)"))
    for ax, (metric, title) in zip(axes, panels):
        if metric not in summary.columns:
            continue
        for label, idx in _groups(result, rest):
            y = summary.loc[idx, metric].astype(float) / duration
            ax.plot(xv.loc[idx], y, "-o", ms=4, label=label)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "sync_async_blocking_wasted.png"))

    # Threads in use and their memory.
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    for label, idx in _groups(result, rest):
        line(axes[0], "threads_mean", idx, label)
        if "thread_memory_max" in summary.columns:
            axes[1].plot(xv.loc[idx], summary.loc[idx, "thread_memory_max"].astype(float) / 2**20,
                         "-o", ms=4, label=label)
    axes[0].set_title("threads in use (time average)")
    axes[1].set_title("peak thread memory (MiB)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "sync_async_threads.png"))

    # Durability, when the experiment has writes and crashes: acknowledged
    # writes lost per crash; with async commit against the closed form
    # throughput x (flush_interval / 2 + fsync_time) (dashed).
    if ("writes_acked" in summary.columns and float(summary["writes_acked"].max()) > 0
            and float(summary["crashes"].max()) > 0):
        from commsim.dists import make_distribution

        sa = result.experiment.resolved.get("sync_async", {})
        window = None
        if sa.get("commit") == "async":
            window = sa["flush_interval"] / 2 + make_distribution(
                sa["fsync_time"], "duration", "sync_async.fsync_time").mean
        fig, ax = subplots(figsize=(6.4, 4.4))
        for label, idx in _groups(result, rest):
            crashes = summary.loc[idx, "crashes"].astype(float)
            per_crash = summary.loc[idx, "acked_writes_lost"].astype(float) / crashes.where(crashes > 0)
            (handle,) = ax.plot(xv.loc[idx], per_crash, "-o", ms=4, label=label)
            if window is not None:
                ax.plot(xv.loc[idx], summary.loc[idx, "throughput"].astype(float) * window, "--",
                        color=handle.get_color(), lw=1)
        if window is not None:
            ax.plot([], [], "--", color="grey", lw=1,
                    label="throughput x (flush_interval/2 + fsync_time)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("acknowledged writes lost per crash")
        ax.set_title("Acknowledged writes lost per crash")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out_dir / "sync_async_durability.png"))
    return paths


