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


def _label(key: str) -> str:
    from commsim.metrics import METRICS

    m = METRICS.get(key)
    if m is not None and m.unit not in ("", "1"):
        return f"{key} ({m.unit})"
    return key


def _matches(value, wanted) -> bool:
    if isinstance(value, float) and isinstance(wanted, (int, float)):
        return math.isclose(value, float(wanted), rel_tol=1e-12)
    return value == wanted or str(value) == str(wanted)


def draw(spec: dict, result, out_dir: Path) -> Path:
    """Draw one ``plots:`` entry from ``result.summary``; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from commsim.experiment.output import save_figure

    summary = result.summary
    params = list(result.experiment.sweep)
    df = summary
    for k, v in spec["where"].items():
        df = df[[_matches(val, v) for val in df[k]]]
    x, hue = spec["x"], spec["hue"]
    ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
    split = ([hue] if hue else []) + [k for k in params if k not in (x, hue) and k not in spec["where"]]
    fig, axes = plt.subplots(1, len(ys), figsize=(5.2 * len(ys), 3.6), squeeze=False)
    groups = list(df.groupby(split, sort=False, dropna=False)) if split else [((), df)]
    numeric_x = df[x].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()
    categories = list(dict.fromkeys(df[x].tolist()))
    for ax, y in zip(axes[0], ys):
        if y not in df.columns:
            ax.text(0.5, 0.5, f"{y}: not reported", ha="center", va="center", transform=ax.transAxes)
            continue
        width = 0.8 / max(1, len(groups))
        for gi, (gkey, g) in enumerate(groups):
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            label = ", ".join(f"{k}={v}" for k, v in zip(split, gkey)) or None
            err_col = f"{y}_ci95"
            err = g[err_col].to_numpy(dtype=float) if spec["errorbars"] and err_col in g else None
            if err is not None:
                err = np.where(np.isnan(err), 0.0, err)
            if spec["kind"] == "bar":
                pos = np.array([categories.index(v) for v in g[x]]) + (gi - (len(groups) - 1) / 2) * width
                ax.bar(pos, g[y].to_numpy(dtype=float), width, yerr=err, capsize=3, label=label)
            else:
                if numeric_x:
                    g = g.sort_values(x)
                    xs = g[x].to_numpy(dtype=float)
                    if err is not None:
                        err = g[err_col].fillna(0.0).to_numpy(dtype=float)
                else:
                    xs = np.array([categories.index(v) for v in g[x]])
                ax.errorbar(xs, g[y].to_numpy(dtype=float), yerr=err, marker="o", ms=4, capsize=3,
                            label=label)
        if spec["kind"] == "bar" or not numeric_x:
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels([str(c) for c in categories])
        if spec["logx"]:
            ax.set_xscale("log")
        if spec["logy"]:
            ax.set_yscale("log")
        ax.set_xlabel(spec["xlabel"] or x)
        ax.set_ylabel(spec["ylabel"] or _label(y))
        ax.grid(True, alpha=0.3)
        if len(groups) > 1:
            ax.legend(fontsize=8)
    exp = result.experiment
    title = spec["title"] or f"{exp.name}: {', '.join(ys)} vs {x}"
    fig.suptitle(title, fontsize=10)
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


def draw_all(result, out_dir: Path) -> list[Path]:
    specs = result.experiment.resolved.get("plots") or []
    return [draw(spec, result, out_dir) for spec in specs]
