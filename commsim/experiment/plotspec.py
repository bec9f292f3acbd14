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

import difflib
import math
from pathlib import Path

from commsim.errors import ConfigError, describe

KEYS = ("name", "x", "y", "hue", "kind", "logx", "logy", "errorbars", "where",
        "title", "xlabel", "ylabel")


def _hint(value: str, options) -> str:
    near = difflib.get_close_matches(str(value), list(options), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def _where_value(dotted: str, value, swept: list, key: str):
    """Resolve a ``where`` value like the swept key's own values (units) and
    check that the sweep has it."""
    from commsim.config.load import _field_for, resolve_value

    field = _field_for(dotted)
    try:
        resolved = resolve_value(field, value, key) if field is not None else value
    except ConfigError:
        resolved = value
    if resolved not in swept:
        raise ConfigError(key, f"got {describe(value)}; the sweep has "
                          f"{', '.join(repr(v) for v in swept)}")
    return resolved


def resolve_plots(raw, sweep_keys, sweep_values: dict | None = None) -> list[dict]:
    """Validate a ``plots:`` section against the sweep and the metrics;
    return it with every default filled in.  ``sweep_values`` (dotted key ->
    resolved swept values) lets ``where`` values be checked and resolved."""
    from commsim.metrics import METRICS

    sweep_keys = list(sweep_keys)
    if not isinstance(raw, list):
        raise ConfigError("plots", f"got {describe(raw)}; expected a list of figures, each a mapping "
                          "with at least x and y")
    out, names = [], set()
    for n, spec in enumerate(raw):
        key = f"plots[{n}]"
        if not isinstance(spec, dict):
            raise ConfigError(key, f"got {describe(spec)}; expected a mapping with at least x and y")
        for k in spec:
            if k not in KEYS:
                raise ConfigError(f"{key}.{k}", f"unknown key{_hint(k, KEYS)} (allowed: {', '.join(KEYS)})")
        for k in ("x", "y"):
            if k not in spec:
                raise ConfigError(f"{key}.{k}", "missing; every figure needs x (a swept key) and y (a metric)")
        if not sweep_keys:
            raise ConfigError(f"{key}.x", "the experiment has no sweep; plots need a swept key on the x axis")
        x = spec["x"]
        if x not in sweep_keys:
            raise ConfigError(f"{key}.x", f"got {describe(x)}; expected a swept key: "
                              f"{', '.join(sweep_keys)}{_hint(x, sweep_keys)}")
        ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
        if not ys:
            raise ConfigError(f"{key}.y", "got an empty list; expected a metric name or a list of them")
        for y in ys:
            if not isinstance(y, str):
                raise ConfigError(f"{key}.y", f"got {describe(y)}; expected a metric name or a list "
                                  "of metric names")
            if y not in METRICS and y != "replications":
                raise ConfigError(f"{key}.y", f"got {describe(y)}; expected a metric name (or "
                                  f"'replications'){_hint(y, [*METRICS, 'replications'])}")
        hue = spec.get("hue")
        if hue is not None and (hue not in sweep_keys or hue == x):
            raise ConfigError(f"{key}.hue", f"got {describe(hue)}; expected a swept key other than x: "
                              f"{', '.join(k for k in sweep_keys if k != x) or '(none)'}")
        kind = spec.get("kind", "line")
        if kind not in ("line", "bar"):
            raise ConfigError(f"{key}.kind", f"got {describe(kind)}; expected 'line' or 'bar'")
        flags = {}
        for k, default in (("logx", False), ("logy", False), ("errorbars", True)):
            v = spec.get(k, default)
            if not isinstance(v, bool):
                raise ConfigError(f"{key}.{k}", f"got {describe(v)}; expected true or false")
            flags[k] = v
        if kind == "bar" and flags["logy"]:
            raise ConfigError(f"{key}.logy", "got true with kind: bar; a bar's length means nothing "
                              "on a log axis: use kind: line (points) with logy, or logy: false")
        where = spec.get("where") or {}
        if not isinstance(where, dict):
            raise ConfigError(f"{key}.where", f"got {describe(where)}; expected a mapping of swept keys to values")
        for k in where:
            if k not in sweep_keys or k in (x, hue):
                raise ConfigError(f"{key}.where.{k}", f"expected a swept key other than x and hue"
                                  f"{_hint(k, sweep_keys)}")
        if sweep_values is not None:
            where = {k: _where_value(k, v, sweep_values[k], f"{key}.where.{k}")
                     for k, v in where.items()}
        texts = {}
        for k in ("title", "xlabel", "ylabel"):
            v = spec.get(k)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{key}.{k}", f"got {describe(v)}; expected a string")
            texts[k] = v
        name = spec.get("name") or f"{'_'.join(ys)}_vs_{x.replace('.', '_')}"
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{key}.name", f"got {describe(name)}; expected a file name stem like 'latency'")
        if name in names:
            raise ConfigError(f"{key}.name", f"{name!r} is used by another figure; give each a distinct name")
        names.add(name)
        out.append({"name": name, "x": x, "y": ys if isinstance(spec["y"], list) else ys[0],
                    "hue": hue, "kind": kind, **flags, "where": dict(where), **texts})
    return out


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
