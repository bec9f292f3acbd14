"""Generic figures described in the YAML: the ``plots:`` section.

Each entry draws summary means (one line or bar group per value of ``hue``)
with their 95 % confidence intervals as error bars::

    plots:
      - name: latency_vs_clients        # file stem (default: <y>_vs_<x>)
        x: clients.count                # a swept key
        y: latency_mean                 # a metric, or a list of metrics (one panel each);
                                        # 'replications' shows how many each point needed
        hue: pattern                    # optional: a swept key, one line per value
        kind: line                      # line (default) or bar
        logx: true                      # log axes (default false)
        logy: false
        errorbars: true                 # 95 % CI half-widths from summary.csv (default true)
        where: {server.cores: 2}        # optional: keep only these values of other swept keys
        title: Latency against load     # optional; also xlabel, ylabel

Swept keys that are neither ``x``, ``hue`` nor fixed by ``where`` split the
lines further (their values join the legend label).  Figures are drawn from
``summary.csv`` alone, so ``commsim plot`` redraws them without simulating.
"""

from __future__ import annotations

import math
from pathlib import Path


# The plots: section is validated with the rest of the configuration.
from commsim.config.plots import KEYS, resolve_plots  # noqa: E402,F401


def _matches(value, wanted) -> bool:
    if isinstance(value, float) and isinstance(wanted, (int, float)):
        return math.isclose(value, float(wanted), rel_tol=1e-12)
    return value == wanted or str(value) == str(wanted)


def _configs_by_row(result, df, params):
    """The resolved run config of each row of ``df`` (a summary), or None."""
    from commsim.experiment.plots import value_label

    by_key = {tuple(value_label(k, p.params.get(k)) for k in params): p.config
              for p in result.experiment.points}
    return [by_key.get(tuple(value_label(k, row[k]) for k in params))
            for _, row in df[params].iterrows()] if params else [result.experiment.points[0].config] * len(df)


def draw(spec: dict, result, out_dir: Path) -> Path:
    """Draw one ``plots:`` entry from ``result.summary``; returns the PNG path.

    Axis labels are human names with units (from the metric definitions and
    the schema), values are scaled to them; error bars are 95 % CIs over the
    replications; where :mod:`commsim.figures.theory` has a closed form for
    the metric at every point of a line, it is drawn dashed beside it."""
    import numpy as np

    from commsim.experiment.output import save_figure
    from commsim.experiment.plots import (ci_note, key_axis, key_label, mark_unstable, metric_axis,
                                          subplots, unstable_flags, value_label)
    from commsim.figures.theory import closed_form

    summary = result.summary
    params = [k for k in result.experiment.sweep if k in summary.columns]
    df = summary
    for k, v in spec["where"].items():
        df = df[[_matches(val, v) for val in df[k]]]
    x, hue = spec["x"], spec["hue"]
    ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
    split = ([hue] if hue else []) + [k for k in params if k not in (x, hue) and k not in spec["where"]]
    width = 6.4 if len(ys) == 1 else 7.4
    fig, axes = subplots(1, len(ys), figsize=(width, 4.0 if len(ys) == 1 else 3.6), squeeze=False)
    groups = list(df.groupby(split, sort=False, dropna=False)) if split else [((), df)]
    numeric_x = df[x].map(lambda v: isinstance(v, (int, float, np.integer, np.floating))
                          and not isinstance(v, bool)).all()
    categories = list(dict.fromkeys(df[x].tolist()))
    xlabel, xscale = key_axis(x, df[x]) if numeric_x else (key_label(x), 1.0)
    configs = dict(zip(df.index, _configs_by_row(result, df, params)))
    for ax, y in zip(axes[0], ys):
        if y not in df.columns:
            ax.text(0.5, 0.5, f"{y}: not reported", ha="center", va="center", transform=ax.transAxes)
            continue
        ylabel, scale = metric_axis(y, df[y]) if y != "replications" else ("replications", 1.0)
        bar_w = 0.8 / max(1, len(groups))
        for gi, (gkey, g) in enumerate(groups):
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            label = ", ".join(f"{key_label(k)}: {value_label(k, v)}" for k, v in zip(split, gkey)) or None
            if label is None:
                label = "simulated"
            if numeric_x:
                g = g.sort_values(x)
            err_col = f"{y}_ci95"
            err = None
            if spec["errorbars"] and err_col in g and g[err_col].notna().any():
                err = g[err_col].fillna(0.0).to_numpy(dtype=float) * scale
            vals = g[y].to_numpy(dtype=float) * scale
            color = f"C{gi}"
            if spec["kind"] == "bar":
                xs = np.array([categories.index(v) for v in g[x]]) + (gi - (len(groups) - 1) / 2) * bar_w
                ax.bar(xs, vals, bar_w, yerr=err, capsize=3, label=label, color=color)
            else:
                xs = g[x].to_numpy(dtype=float) * xscale if numeric_x else \
                    np.array([categories.index(v) for v in g[x]], dtype=float)
                ax.errorbar(xs, vals, yerr=err, marker="o", ms=4, capsize=3, label=label, color=color)
            if y != "replications":
                mark_unstable(ax, xs, vals, unstable_flags(g))
            th = [closed_form(configs[i], y) if configs.get(i) is not None else None for i in g.index]
            if th and all(t is not None for t in th):
                tv = np.array([t[0] for t in th]) * scale
                model = th[0][1]
                lbl = f"closed form ({model})" + (f", {label}" if label and len(groups) > 1 else "")
                if spec["kind"] == "bar":
                    ax.plot(xs, tv, "_", ms=18, mew=2, color="black", label=lbl, zorder=5)
                else:
                    ax.plot(xs, tv, "--", color="black" if len(groups) == 1 else color, lw=1.0,
                            label=lbl, zorder=5)
        if spec["kind"] == "bar" or not numeric_x:
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels([value_label(x, c) for c in categories])
        if spec["logx"]:
            ax.set_xscale("log")
        if spec["logy"]:
            from matplotlib.ticker import LogFormatter, ScalarFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
            ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel(spec["xlabel"] or xlabel)
        ax.set_ylabel(spec["ylabel"] or ylabel)
        ax.grid(True, alpha=0.3, which="both" if spec["logy"] else "major")
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 1:
            ax.legend(fontsize=7)
    title = spec["title"] or (" and ".join(metric_axis(y)[0].split(" (")[0] for y in ys)
                              + f" against {key_label(x)}")
    note = ci_note(df, spec["errorbars"]) if any(y != "replications" for y in ys) else ""
    fig.suptitle(title + (f"\n({note})" if note else ""), fontsize=10)
    fig.tight_layout()
    meta = {"source": "plots", "x": x, "y": spec["y"], "hue": hue, "kind": spec["kind"],
            "logx": spec["logx"], "logy": spec["logy"], "errorbars": spec["errorbars"],
            "where": spec["where"], **figure_context(result)}
    return save_figure(fig, Path(out_dir) / f"{spec['name']}.png", meta)


def figure_context(result) -> dict:
    """What every figure of an experiment was drawn from: seed, replications,
    duration, warm-up and the swept values."""
    r = result.experiment.resolved
    reps = sorted({int(v) for v in result.summary["replications"]}) if "replications" in result.summary else []
    return {"seed": r.get("seed"), "replications": reps[0] if len(reps) == 1 else reps,
            "duration": r.get("duration"), "warmup": r.get("warmup"),
            "pattern": r.get("pattern"), "sweep": r.get("sweep", {})}
