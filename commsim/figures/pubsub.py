"""Figures of the pubsub pattern, drawn from a finished experiment.

Each figure is drawn only when the sweep has what it needs:

* ``throughput_latency_vs_prefetch.png``: sweep ``pubsub.prefetch`` (and
  ``pubsub.delivery``): push throughput and latency against prefetch, with
  pull and direct as horizontal references and the prefetch bound
  ``S * min(rate, p / (E[s] + rtt))`` dotted.
* ``queue_depth_slow_consumer.png`` (+ ``queue_depth.csv``): when
  ``pubsub.slow_consumers`` takes a value > 0, one run per delivery mode is
  simulated again (replication 0, largest subscriber count) to record the
  sampled queue depth of the slow consumer's subscription, of the others and
  of the publishers' outboxes over time.
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
    fig, (ax_t, ax_l) = subplots(1, 2, figsize=(11, 4.2))
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
                ax_t.plot(r["pubsub.prefetch"], r["throughput"], ls, color=color, marker=marker,
                          label=label)
                ax_l.plot(r["pubsub.prefetch"], r["latency_p50"], ls, color=color, marker=marker,
                          label=label + " (p50)")
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
                             label=label + " (p50)")
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
    ax_l.set_ylabel("publish -> processed latency (s)")
    ax_l.set_title("Latency vs prefetch")
    for ax in (ax_t, ax_l):
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    ax_l.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out_dir / "throughput_latency_vs_prefetch.png")


def _mean_of(spec) -> float:
    if isinstance(spec, dict):
        from commsim.dists import make_distribution

        return make_distribution(spec, "duration", "").mean
    return float(spec)


def _depth_figure(result, out_dir) -> list[Path]:
    from commsim.experiment.plots import subplots

    from commsim.experiment.runner import simulate
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
    fig, axes = subplots(1, len(chosen), figsize=(4.2 * len(chosen), 3.8), squeeze=False,
                             sharey=True)
    lines = ["delivery,t,slow_subscription,other_subscriptions_max,publisher_outbox"]
    for ax, (mode, point) in zip(axes[0], chosen.items()):
        _, sim = simulate(point.config, seed)
        model = sim.pubsub
        c = point.config["pubsub"]
        t = model.samples_t
        slow = [d[0] for d in model.samples_depth]
        others = [max(d[1:]) if len(d) > 1 else 0 for d in model.samples_depth]
        outbox = model.samples_outbox
        for row in zip(t, slow, others, outbox):
            lines.append(f"{mode},{row[0]:g},{row[1]},{row[2]},{row[3]}")
        color, _ = MODE_STYLE[mode]
        ax.plot(t, slow, color=color, label="slow subscriber's queue")
        if len(model.subs) > 1:
            ax.plot(t, others, color=color, linestyle="--", label="other subscribers (max)")
        ax.plot(t, outbox, color="black", linestyle=":", label="publishers' outbox")
        t0 = c["slow_from"]
        t1 = t0 + c["slow_for"] if c["slow_for"] is not None else t[-1]
        ax.axvspan(t0, t1, color="red", alpha=0.08, label="slow period")
        what = {"push": f"push, prefetch {c['prefetch']}", "pull": "pull",
                "direct": f"direct, buffer {c['direct_buffer']}"}[mode]
        ax.set_title(f"{what}, {c['subscribers']} subscriber(s)", fontsize=9)
        ax.set_xlabel("simulated time (s)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("messages waiting")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Queue depth with one consumer {points[0].config['pubsub']['slow_factor']:g}x slower",
                 fontsize=10)
    fig.tight_layout()
    csv = out_dir / "queue_depth.csv"
    atomic_write(csv, "\n".join(lines) + "\n")
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
    fig, (ax_b, ax_c) = subplots(1, 2, figsize=(10, 4))
    for mode in _modes(base, params, result):
        r = _select(base, **{"pubsub.delivery": mode}).sort_values("pubsub.subscribers")
        if r.empty:
            continue
        color, marker = MODE_STYLE[mode]
        per_msg = r["bytes_deliver"] / published
        ax_b.plot(r["pubsub.subscribers"], per_msg / 1024, color=color, marker=marker,
                  label=f"{mode}: {'publisher' if mode == 'direct' else 'broker'} -> subscribers")
        if mode != "direct":
            inb = r["bytes_publish"] / published
            ax_b.plot(r["pubsub.subscribers"], inb / 1024, color=color, marker=marker, linestyle=":",
                      label=f"{mode}: publisher -> broker")
            ax_c.plot(r["pubsub.subscribers"], r["broker_cpu_s"] / published * 1e6, color=color,
                      marker=marker, label=f"{mode}: broker CPU")
        ctrl = r["bytes_control"] / published
        ax_b.plot(r["pubsub.subscribers"], ctrl / 1024, color=color, marker=marker, linestyle="--",
                  label=f"{mode}: acks, confirms, fetches, commits")
    ax_b.set_xlabel("subscriptions per topic")
    ax_b.set_ylabel("KiB on the wire per published message")
    ax_b.set_title("Fan-out: bytes per published message")
    ax_c.set_xlabel("subscriptions per topic")
    ax_c.set_ylabel("broker CPU per published message (us)")
    ax_c.set_title("Fan-out: broker CPU")
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
        ax.plot(r["pubsub.fetch_min_bytes"], r["fetch_latency_mean"] * 1000, "o", color=color,
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
    from commsim.experiment.plots import subplots
    import numpy as np

    rows = summary
    if "pubsub.subscribers" in params:
        rows = rows[rows["pubsub.subscribers"] == rows["pubsub.subscribers"].max()]
    if "pubsub.prefetch" in params:
        rows = rows[rows["pubsub.prefetch"] == rows["pubsub.prefetch"].max()]
    modes = _modes(rows, params, result)
    fig, (ax_l, ax_b) = subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(modes))
    width = 0.38
    for j, (slow, label) in enumerate(((0, "no fault"), (1, "one consumer slow"))):
        vals_l, vals_b = [], []
        for mode in modes:
            r = _select(rows, **{"pubsub.delivery": mode})
            r = r[r["pubsub.slow_consumers"] == (0 if slow == 0 else r["pubsub.slow_consumers"].max())]
            vals_l.append(float(r["healthy_latency_p99"].iloc[0]) * 1000 if len(r) else np.nan)
            vals_b.append(float(r["publisher_blocked_fraction"].iloc[0]) * 100 if len(r) else np.nan)
        color = "tab:grey" if slow == 0 else "tab:red"
        ax_l.bar(x + (j - 0.5) * width, vals_l, width, color=color, label=label)
        ax_b.bar(x + (j - 0.5) * width, vals_b, width, color=color, label=label)
    subs = int(rows["pubsub.subscribers"].iloc[0]) if "pubsub.subscribers" in params else \
        result.experiment.resolved["pubsub"]["subscribers"]
    for ax in (ax_l, ax_b):
        ax.set_xticks(x, modes)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    ax_l.set_yscale("log")
    ax_l.set_ylabel("p99 latency of the healthy subscriptions (ms)")
    ax_l.set_title(f"What one slow subscriber costs the other {subs - 1}", fontsize=10)
    ax_b.set_ylabel("publisher blocked (% of time)")
    ax_b.set_title("Publisher back-pressure", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir / "slow_consumer_impact.png")
