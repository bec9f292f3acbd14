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
    from commsim.experiment.plots import key_axis

    values = summary[x].astype(float)
    label, xscale = key_axis(x, values)
    values = values * xscale
    resolved = result.experiment.resolved
    if x == "clients.rate" and "clients.count" not in params:
        values = values * resolved["clients"]["count"]
        label = "offered load (requests/s)"
    return x, values, label, rest


def _saturation(result, row) -> float | None:
    """X_max of the row's I/O model (docs/sync_async.md), or None when other
    keys of the model are swept too."""
    from commsim import theory
    from commsim.dists import make_distribution

    swept = set(result.params) - {MODEL_KEY, "clients.rate"}
    if any(k.startswith("sync_async.") or k == "server.cores" for k in swept):
        return None
    res = result.experiment.resolved
    sa = res["sync_async"]
    model = row[MODEL_KEY] if MODEL_KEY in row.index else sa["io_model"]

    def mean(key):
        return make_distribution(sa[key], "duration", f"sync_async.{key}").mean

    k = int(sa["ios_per_request"])
    base = mean("cpu_before") + mean("cpu_after")
    cores = float(res["server"]["cores"])
    cs = float(sa["context_switch"])
    if model == "thread_pool":
        return theory.thread_pool_saturation(int(sa["threads"]), base + 2 * k * cs, k * mean("io_time"), cores)
    per_call = {"event_loop": sa["readiness_cpu"], "io_uring": sa["completion_cpu"],
                "thread_per_call": sa["thread_spawn_cpu"] + 2 * cs}.get(model)
    if per_call is None:
        return None
    return cores / (base + k * float(per_call))


def _groups(result, rest):
    summary = result.summary
    keys = ([MODEL_KEY] if MODEL_KEY in summary.columns else []) + rest
    if not keys:
        yield "", summary.index
        return
    from commsim.experiment.plots import key_label, value_label

    for key, g in summary.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(value_label(k, v) if k == MODEL_KEY else f"{key_label(k)}: {value_label(k, v)}"
                          for k, v in zip(keys, key))
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

    from commsim.experiment.plots import ci_note, mark_unstable, unstable_flags

    note = ci_note(summary)

    def line(ax, metric, idx, label, style="-o", scale=1.0):
        if metric not in summary.columns:
            return
        y = summary.loc[idx, metric].astype(float) * scale
        ci = summary.get(f"{metric}_ci95")
        err = ci.loc[idx].astype(float).fillna(0.0) * scale if ci is not None else None
        ax.errorbar(xv.loc[idx], y, yerr=err, fmt=style, capsize=2, label=label, ms=4)
        mark_unstable(ax, xv.loc[idx], y, unstable_flags(summary.loc[idx]))

    def titled(fig, text):
        fig.suptitle(text + (f"\n({note})" if note else ""), fontsize=10)
        fig.tight_layout()

    # Throughput vs offered load.
    fig, ax = subplots(figsize=(6.4, 4.6))
    for label, idx in _groups(result, rest):
        line(ax, "throughput", idx, label)
    if xlabel.startswith("offered"):
        lim = float(xv.max())
        ax.plot([0, lim], [0, lim], ":", color="grey", lw=1, label="offered")
        # The closed form: throughput = min(offered, X_max) per I/O model
        # (utilisation law, docs/sync_async.md), where X_max is reachable.
        shown = False
        for j, (label, idx) in enumerate(_groups(result, rest)):
            x_max = _saturation(result, summary.loc[idx[0]])
            if x_max is None:
                continue
            xs = sorted(xv.loc[idx])
            ax.plot([0, *xs], [min(v, x_max) for v in [0, *xs]], "--", color=f"C{j}", lw=1, alpha=0.8)
            shown = True
        if shown:
            ax.plot([], [], "--", color="grey", lw=1, label="closed form: min(offered, X_max) per model")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput (requests/s)")
    titled(fig, "Throughput vs load per I/O model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "sync_async_throughput.png"))

    # Latency.
    fig, axes = subplots(1, 2, figsize=(7.6, 4.0), sharey=True)
    for ax, metric in zip(axes, ("latency_p50", "latency_p99")):
        for label, idx in _groups(result, rest):
            line(ax, metric, idx, label, scale=1e3)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_title(metric.replace("latency_", "") + " latency", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend(fontsize=7)
    titled(fig, "Latency vs load per I/O model")
    paths.append(save_figure(fig, out_dir / "sync_async_latency.png"))

    # Blocking time and wasted CPU (per second of the window).
    duration = result.experiment.resolved["duration"]
    fig, axes = subplots(1, 3, figsize=(7.6, 3.4))
    panels = (("io_blocked_s", "threads blocked\non I/O (mean)"),
              ("server_cpu_wasted_s", "wasted CPU\n(cores)"),
              ("io_overhead_cpu_s", "readiness/completion\nCPU (cores)"))
    for ax, (metric, title) in zip(axes, panels):
        if metric not in summary.columns:
            continue
        for label, idx in _groups(result, rest):
            line(ax, metric, idx, label, scale=1 / duration)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    titled(fig, "Blocking and wasted CPU vs load")
    paths.append(save_figure(fig, out_dir / "sync_async_blocking_wasted.png"))

    # Threads in use and their memory.
    fig, axes = subplots(1, 2, figsize=(7.6, 3.8))
    for label, idx in _groups(result, rest):
        line(axes[0], "threads_mean", idx, label)
        line(axes[1], "thread_memory_max", idx, label, scale=1 / 2 ** 20)
    axes[0].set_title("threads in use (time average)", fontsize=9)
    axes[1].set_title("peak thread memory (MiB)", fontsize=9)
    for ax in axes:
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    titled(fig, "Threads vs load per I/O model")
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


