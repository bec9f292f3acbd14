"""Figures of the pubsub pattern, drawn from a finished experiment.

Each figure is drawn only when the sweep has what it needs:

* ``throughput_latency_vs_prefetch.png``: sweep ``pubsub.prefetch`` (and
  ``pubsub.delivery``): push throughput and latency against prefetch, with
  pull and direct as horizontal references and the prefetch bound
  ``S * min(rate, p / (E[s] + rtt))`` dotted.
* ``queue_depth_slow_consumer.png`` (+ ``queue_depth.csv``): when
  ``pubsub.slow_consumers`` takes a value > 0, the sampled queue depth of the
  slow consumer's subscription, of the others and of the publishers'
  outboxes over time, for replication 0 of one point per delivery mode
  (largest subscriber count).  The series are recorded during that run and
  kept in ``queue_depth.csv`` (:mod:`commsim.figures.sidetables`; never
  re-simulated: a missing table is said, and the figure not drawn).
* ``slow_consumer_impact.png``: with the slow consumer on and off, the p99
  latency of the *other* subscriptions and the publishers' blocked time,
  per delivery mode (largest subscriber count and prefetch).
* ``fanout_cost.png``: sweep ``pubsub.subscribers``: bytes sent towards
  subscribers per published message and broker CPU per second.
* ``pull_fetch_wait.png``: sweep ``pubsub.fetch_min_bytes``: pull fetch
  latency against fetch_min_bytes per fetch_max_wait, with the closed form.
"""

from __future__ import annotations

from pathlib import Path

from commsim.experiment.output import atomic_write, save_figure

MODE_STYLE = {"push": ("tab:blue", "o"), "pull": ("tab:orange", "s"), "direct": ("tab:green", "^")}


def _select(df, **eq):
    for col, val in eq.items():
        if col in df.columns and val is not None:
            df = df[df[col] == val]
    return df


def _err(rows, col, scale=1.0):
    """95 % half-widths of ``col`` times ``scale`` (None without replications)."""
    c = f"{col}_ci95"
    if c not in rows.columns or not rows[c].notna().any():
        return None
    return rows[c].fillna(0.0).to_numpy(dtype=float) * scale


def _base_filter(summary, params):
    """Rows of the fault-free runs."""
    if "pubsub.slow_consumers" in params:
        summary = summary[summary["pubsub.slow_consumers"] == 0]
    return summary


def pubsub_figures(result, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    params = result.params
    summary = result.summary
    paths: list[Path] = []
    if "pubsub.prefetch" in params:
        paths.append(_prefetch_figure(result, summary, params, out_dir))
    if "pubsub.slow_consumers" in params and (summary["pubsub.slow_consumers"] > 0).any():
        paths += _depth_figure(result, out_dir)
        paths.append(_impact_figure(result, summary, params, out_dir))
    if "pubsub.subscribers" in params:
        paths.append(_fanout_figure(result, summary, params, out_dir))
    if "pubsub.fetch_min_bytes" in params:
        paths.append(_fetch_figure(result, summary, params, out_dir))
    return paths


def _modes(summary, params, result):
    if "pubsub.delivery" in params:
        return list(dict.fromkeys(summary["pubsub.delivery"]))
    return [result.experiment.resolved["pubsub"]["delivery"]]


def _prefetch_figure(result, summary, params, out_dir) -> Path:
    from commsim.experiment.plots import subplots

    base = _base_filter(summary, params)
    cfg = result.experiment.resolved["pubsub"]
    subs_values = sorted(set(base["pubsub.subscribers"])) if "pubsub.subscribers" in params \
        else [cfg["subscribers"]]
    s_mean = _mean_of(cfg["processing_time"])
    rtt = _mean_of(cfg["deliver_latency"] or result.experiment.resolved["network"]["latency"]) + \
        _mean_of(cfg["ack_latency"] or result.experiment.resolved["network"]["latency"])
    lam = cfg["publish_rate"] * cfg["publishers"]
    fig, (ax_t, ax_l) = subplots(1, 2, figsize=(7.6, 4.6))
    styles = ["-", "--", ":", "-."]
    unbounded: list = []
    for k, S in enumerate(subs_values):
        rows = base[base["pubsub.subscribers"] == S] if "pubsub.subscribers" in params else base
        ls = styles[k % len(styles)]
        for mode in _modes(rows, params, result):
            r = _select(rows, **{"pubsub.delivery": mode}).sort_values("pubsub.prefetch")
            if r.empty:
                continue
            color, marker = MODE_STYLE[mode]
            label = f"{mode}, {S} sub(s)"
            if mode == "push":
                ax_t.errorbar(r["pubsub.prefetch"], r["throughput"], yerr=_err(r, "throughput"),
                              linestyle=ls, color=color, marker=marker, capsize=3, label=label)
                ax_l.errorbar(r["pubsub.prefetch"], r["latency_p50"], yerr=_err(r, "latency_p50"),
                              linestyle=ls, color=color, marker=marker, capsize=3, label=label)
                censored = r[r["latency_p50"].isna()]["pubsub.prefetch"]
                if len(censored):
                    unbounded.extend(censored)
                bound = [S * cfg["topics"] * min(lam, p / (s_mean + rtt)) for p in r["pubsub.prefetch"]]
                ax_t.plot(r["pubsub.prefetch"], bound, ":", color="grey", linewidth=1,
                          label="prefetch bound" if k == 0 else None)
            else:
                ax_t.axhline(r["throughput"].mean(), linestyle=ls, color=color, linewidth=1.2,
                             label=label)
                ax_l.axhline(r["latency_p50"].mean(), linestyle=ls, color=color, linewidth=1.2,
                             label=label)
    if unbounded:
        top = max(summary["latency_p50"].max(), 1.0) * 3
        ax_l.plot(sorted(set(unbounded)), [top] * len(set(unbounded)), "^", color="red",
                  label="no message of the window processed\n(queue grows without bound)")
    ax_t.set_xscale("log")
    ax_t.set_xlabel("prefetch (unacked messages per consumer)")
    ax_t.set_ylabel("copies processed per second")
    ax_t.set_title("Throughput vs prefetch")
    ax_l.set_xscale("log")
    ax_l.set_yscale("log")
    ax_l.set_xlabel("prefetch")
    ax_l.set_ylabel("p50 latency, publish to processed (s)")
    ax_l.set_title("Latency vs prefetch", fontsize=10)
    ax_t.set_title("Throughput vs prefetch", fontsize=10)
    for ax in (ax_t, ax_l):
        ax.grid(True, which="both", alpha=0.3)
    # One legend for both panels (same lines), below them.
    handles, labels = ax_t.get_legend_handles_labels()
    extra = [(h, lab) for h, lab in zip(*ax_l.get_legend_handles_labels()) if lab.startswith("no message")]
    handles += [h for h, _ in extra]
    labels += [lab.replace("\n", " ") for _, lab in extra]
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    from commsim.experiment.plots import ci_note

    note = ci_note(base)
    if note:
        fig.suptitle(f"({note})", fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return save_figure(fig, out_dir / "throughput_latency_vs_prefetch.png")


def _mean_of(spec) -> float:
    if isinstance(spec, dict):
        from commsim.dists import make_distribution

        return make_distribution(spec, "duration", "").mean
    return float(spec)


def run_series(run) -> dict:
    """At the end of a run (replication 0; :mod:`commsim.figures.sidetables`):
    the sampled queue depths, as rows ``[t, slow, others_max, outbox]``."""
    model = run.model
    rows = []
    for t, d, outbox in zip(model.samples_t, model.samples_depth, model.samples_outbox):
        rows.append([t, d[0], max(d[1:]) if len(d) > 1 else 0, outbox])
    return {"queue_depth": rows}


def _depth_series(result, chosen: dict, seed: int, out_dir: Path) -> tuple[dict, Path]:
    """Per delivery mode: (t, slow, others, outbox), from the series the runs
    recorded (written to ``queue_depth.csv``), else read from
    ``queue_depth.csv`` when it was written for these points and seed (see
    :mod:`commsim.figures.sidetables`; never simulated)."""
    from commsim.figures import sidetables

    csv = out_dir / "queue_depth.csv"
    fp = sidetables.fingerprint({m: p.config for m, p in chosen.items()}, seed)
    index = {m: result.experiment.points.index(p) for m, p in chosen.items()}

    def build(side: dict) -> list[str]:
        out = ["delivery,t,slow_subscription,other_subscriptions_max,publisher_outbox"]
        for mode in chosen:
            for t, slow, others, outbox in side[index[mode]]["queue_depth"]:
                out.append(f"{mode},{t:g},{slow},{others},{outbox}")
        return out

    lines = sidetables.lines(result, csv, fp, seed, index.values(), build,
                             "queue_depth_slow_consumer.png")
    series: dict[str, tuple[list, list, list, list]] = {m: ([], [], [], []) for m in chosen}
    for line in lines[1:]:
        mode, t, slow, others, outbox = line.split(",")
        if mode in series:
            for col, v in zip(series[mode], (float(t), int(slow), int(others), int(outbox))):
                col.append(v)
    return series, csv


def _depth_figure(result, out_dir) -> list[Path]:
    from commsim.experiment.plots import subplots
    from commsim.figures import sidetables
    from commsim.rng import derive_run_seed

    points = [p for p in result.experiment.points if p.config["pubsub"]["slow_consumers"] > 0]
    if not points:
        return []
    max_subs = max(p.config["pubsub"]["subscribers"] for p in points)
    chosen: dict[str, object] = {}
    for p in points:
        c = p.config["pubsub"]
        if c["subscribers"] != max_subs:
            continue
        mode = c["delivery"]
        # Prefer the largest prefetch (push's best case).
        if mode not in chosen or c["prefetch"] > chosen[mode].config["pubsub"]["prefetch"]:
            chosen[mode] = p
    seed = derive_run_seed(result.experiment.resolved["seed"], 0)
    try:
        series, csv = _depth_series(result, chosen, seed, out_dir)
    except sidetables.Missing:  # said by draw_figures; the other figures are drawn
        return []
    n = len(chosen)
    fig, axes = subplots(1, n, figsize=(7.6, 3.4) if n > 1 else (6.4, 3.8), squeeze=False,
                         sharey=True)
    for ax, (mode, point) in zip(axes[0], chosen.items()):
        c = point.config["pubsub"]
        t, slow, others, outbox = series[mode]
        color, _ = MODE_STYLE[mode]
        ax.plot(t, slow, color=color, label="slow subscriber's queue")
        if c["subscribers"] * c["topics"] > 1:
            ax.plot(t, others, color=color, linestyle="--", label="other subscribers (max)")
        ax.plot(t, outbox, color="black", linestyle=":", label="publishers' outbox")
        t0 = c["slow_from"]
        t1 = t0 + c["slow_for"] if c["slow_for"] is not None else (t[-1] if t else t0)
        ax.axvspan(t0, t1, color="red", alpha=0.08, label="slow period")
        what = {"push": f"push, prefetch {c['prefetch']}", "pull": "pull",
                "direct": f"direct, buffer {c['direct_buffer']}"}[mode]
        ax.set_title(what, fontsize=8)
        ax.set_xlabel("simulated time (s)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("messages waiting")
    axes[0][0].legend(fontsize=6)
    c0 = points[0].config["pubsub"]
    fig.suptitle(f"Queue depth with one consumer {c0['slow_factor']:g}x slower "
                 f"({max_subs} subscribers, replication 0)", fontsize=10)
    fig.tight_layout()
    return [save_figure(fig, out_dir / "queue_depth_slow_consumer.png"), csv]


def _fanout_figure(result, summary, params, out_dir) -> Path:
    from commsim.experiment.plots import subplots

    base = _base_filter(summary, params)
    if "pubsub.prefetch" in params:
        base = base[base["pubsub.prefetch"] == base["pubsub.prefetch"].max()]
    res = result.experiment.resolved
    cfg = res["pubsub"]
    # Messages published in the window (expected: rate x publishers x topics x duration).
    rate = 1.0 / _mean_of(cfg["interarrival"]) if cfg.get("interarrival") is not None \
        else cfg["publish_rate"]
    published = rate * cfg["publishers"] * cfg["topics"] * res["duration"]
    fig, (ax_b, ax_c) = subplots(1, 2, figsize=(7.6, 3.8))
    for mode in _modes(base, params, result):
        r = _select(base, **{"pubsub.delivery": mode}).sort_values("pubsub.subscribers")
        if r.empty:
            continue
        color, marker = MODE_STYLE[mode]
        per_msg = r["bytes_deliver"] / published
        ax_b.errorbar(r["pubsub.subscribers"], per_msg / 1024, yerr=_err(r, "bytes_deliver", 1 / published / 1024),
                      color=color, marker=marker, capsize=3, label=f"{mode}: {'publisher' if mode == 'direct' else 'broker'} -> subscribers")
        if mode != "direct":
            inb = r["bytes_publish"] / published
            ax_b.plot(r["pubsub.subscribers"], inb / 1024, color=color, marker=marker, linestyle=":",
                      label=f"{mode}: publisher -> broker")
            ax_c.errorbar(r["pubsub.subscribers"], r["broker_cpu_s"] / published * 1e6,
                          yerr=_err(r, "broker_cpu_s", 1e6 / published), color=color, marker=marker,
                          capsize=3, label=f"{mode}: broker CPU")
        ctrl = r["bytes_control"] / published
        ax_b.plot(r["pubsub.subscribers"], ctrl / 1024, color=color, marker=marker, linestyle="--",
                  label=f"{mode}: acks, confirms, fetches, commits")
    # The closed form of the fan-out: every copy sent once in its own frame
    # (push, direct): S x (E[message] + header) per published message.
    from commsim import theory

    subs = sorted(set(base["pubsub.subscribers"])) if "pubsub.subscribers" in params else [cfg["subscribers"]]
    size = _mean_of_size(cfg["message_size"])
    ax_b.plot(subs, [theory.fanout_bytes(size, 1, int(S), cfg["header"]) / 1024 for S in subs], "--",
              color="black", lw=1, zorder=5, label="closed form: S x (message + header)")
    ax_b.set_xlabel("subscriptions per topic")
    ax_b.set_ylabel("KiB on the wire per published message")
    ax_b.set_title("Fan-out: bytes per published message", fontsize=10)
    ax_c.set_xlabel("subscriptions per topic")
    ax_c.set_ylabel("broker CPU per published message (us)")
    ax_c.set_title("Fan-out: broker CPU", fontsize=10)
    for ax in (ax_b, ax_c):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out_dir / "fanout_cost.png")


def _fetch_figure(result, summary, params, out_dir) -> Path:
    from commsim.experiment.plots import subplots

    from commsim import theory

    res = result.experiment.resolved
    cfg = res["pubsub"]
    base = _select(summary, **{"pubsub.delivery": "pull"}) if "pubsub.delivery" in params else summary
    waits = sorted(set(base["pubsub.fetch_max_wait"])) if "pubsub.fetch_max_wait" in params \
        else [cfg["fetch_max_wait"]]
    size = _mean_of_size(cfg["message_size"])
    byte_rate = cfg["publish_rate"] * cfg["publishers"] * size / (cfg["partitions"] or cfg["group_size"])
    rtt = _mean_of(cfg["deliver_latency"] or res["network"]["latency"]) + \
        _mean_of(cfg["ack_latency"] or res["network"]["latency"])
    fig, ax = subplots(figsize=(6, 4))
    for k, W in enumerate(waits):
        r = base[base["pubsub.fetch_max_wait"] == W] if "pubsub.fetch_max_wait" in params else base
        r = r.sort_values("pubsub.fetch_min_bytes")
        color = f"C{k}"
        ax.errorbar(r["pubsub.fetch_min_bytes"], r["fetch_latency_mean"] * 1000,
                    yerr=_err(r, "fetch_latency_mean", 1000), fmt="o", capsize=3, color=color,
                    label=f"simulated, max_wait {W * 1000:g} ms")
        import numpy as np

        lo, hi = max(1.0, float(r["pubsub.fetch_min_bytes"].min())), float(r["pubsub.fetch_min_bytes"].max())
        xs = list(np.geomspace(lo, hi, 200))
        th = [theory.pull_fetch(byte_rate, B, W, rtt, backlog_bytes=byte_rate * rtt)["fetch_latency"] * 1000
              for B in xs]
        ax.plot(xs, th, "-", color=color, alpha=0.6, label="closed form (steady state)")
    ax.set_xscale("log")
    ax.set_xlabel("fetch_min_bytes (B)")
    ax.set_ylabel("fetch latency (ms)")
    ax.set_title(f"Pull: long-poll fetch, producer {byte_rate / 1024:.0f} KiB/s per partition")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out_dir / "pull_fetch_wait.png")


def _mean_of_size(spec) -> float:
    if isinstance(spec, dict):
        from commsim.dists import make_distribution

        return make_distribution(spec, "size", "").mean
    return float(spec)


def _impact_figure(result, summary, params, out_dir) -> Path:
    """p99 latency of the healthy subscriptions (points on a log axis) and
    the publishers' blocked time (bars), without and with the slow consumer,
    per delivery mode; 95 % CIs when replicated."""
    import numpy as np

    from commsim.experiment.plots import ci_note, subplots

    rows = summary
    if "pubsub.subscribers" in params:
        rows = rows[rows["pubsub.subscribers"] == rows["pubsub.subscribers"].max()]
    if "pubsub.prefetch" in params:
        rows = rows[rows["pubsub.prefetch"] == rows["pubsub.prefetch"].max()]
    modes = _modes(rows, params, result)
    fig, (ax_l, ax_b) = subplots(1, 2, figsize=(7.4, 3.6))
    x = np.arange(len(modes))
    width = 0.38

    def value(r, col, scale):
        if not len(r):
            return np.nan, 0.0
        v = float(r[col].iloc[0]) * scale
        e = r.get(f"{col}_ci95")
        e = float(e.iloc[0]) * scale if e is not None and np.isfinite(e.iloc[0]) else 0.0
        return v, e

    for j, (slow, label) in enumerate(((0, "no fault"), (1, "one consumer slow"))):
        vals_l, errs_l, vals_b, errs_b = [], [], [], []
        for mode in modes:
            r = _select(rows, **{"pubsub.delivery": mode})
            r = r[r["pubsub.slow_consumers"] == (0 if slow == 0 else r["pubsub.slow_consumers"].max())]
            v, e = value(r, "healthy_latency_p99", 1000)
            vals_l.append(v)
            errs_l.append(e)
            v, e = value(r, "publisher_blocked_fraction", 100)
            vals_b.append(v)
            errs_b.append(e)
        color = "tab:grey" if slow == 0 else "tab:red"
        ax_l.errorbar(x + (j - 0.5) * 0.25, vals_l, yerr=errs_l if any(errs_l) else None, fmt="o",
                      ms=7, capsize=3, color=color, label=label)
        ax_b.bar(x + (j - 0.5) * width, vals_b, width, yerr=errs_b if any(errs_b) else None,
                 capsize=3, color=color, label=label)
    subs = int(rows["pubsub.subscribers"].iloc[0]) if "pubsub.subscribers" in params else \
        result.experiment.resolved["pubsub"]["subscribers"]
    for ax in (ax_l, ax_b):
        ax.set_xticks(x, modes)
        ax.set_xlim(-0.6, len(modes) - 0.4)
        ax.grid(True, axis="y", alpha=0.3, which="both")
        ax.legend(fontsize=7)
    ax_l.set_yscale("log")
    ax_l.set_ylabel("p99 latency, healthy subscriptions (ms)", fontsize=9)
    ax_l.set_title(f"Latency of the other {subs - 1} subscriptions", fontsize=9)
    ax_b.set_ylabel("publisher blocked (% of time)", fontsize=9)
    ax_b.set_title("Publisher back-pressure", fontsize=9)
    note = ci_note(rows)
    fig.suptitle("What one slow subscriber costs the others" + (f"\n({note})" if note else ""),
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir / "slow_consumer_impact.png")
