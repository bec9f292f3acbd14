"""Figures of experiment summaries: shared helpers and per-pattern figure sets.

A summary (:func:`commsim.experiment.stats.summarize`) has one row per sweep
point: the swept keys as columns (dotted names such as
``request_response.encoding``), ``replications``, and for every metric ``m``
its mean ``m`` and 95 % half-width ``m_ci95``.  The helpers here draw one
metric against one swept key, optionally one line/bar group per value of a
second key (``hue``); every *other* key that varies becomes a separate panel
(small multiples), so a point is never averaged with a different
configuration.  Error bars are the ``_ci95`` half-widths when present (none
with a single replication).

Metric values are in base units (seconds, bytes, bytes per second); callers
pass ``scale`` and a ``ylabel`` naming the unit they scale to (ms, KB/s).

Figures are bare :class:`matplotlib.figure.Figure` objects (no pyplot state),
saved with :func:`commsim.experiment.output.save_figure`.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Sequence

import numpy as np
import pandas as pd

MAX_PANELS = 9
MAX_BARS = 24  # sweep points in one stacked-bar figure

# ------------------------------------------------------------------ labels --

_KEY_LABELS = {
    "request_response.encoding": "encoding",
    "request_response.chunk_size": "chunk size",
    "network.keepalive": "connections",
    "network.handshake": "handshake",
    "network.latency": "one-way latency",
    "network.bandwidth": "bandwidth",
    "network.loss": "loss",
    "clients.count": "clients",
    "clients.rate": "request rate per client",
    "clients.mode": "client mode",
    "server.cores": "server cores",
}


def key_label(key: str) -> str:
    """Short human name of a swept key."""
    if key in _KEY_LABELS:
        return _KEY_LABELS[key]
    return key.rsplit(".", 1)[-1].replace("_", " ")


def _field_kind(key: str) -> str:
    try:
        from commsim.config.load import _field_for
        from commsim.patterns import registry

        registry()  # pattern sections register themselves when their module is imported
        f = _field_for(key)
    except Exception:  # pragma: no cover - labels must never break a figure
        f = None
    return f.kind.split(":", 1)[-1] if f is not None else ""


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _num(v: float) -> str:
    return f"{v:g}"


def format_size(n: float) -> str:
    """Bytes as B / KiB / MiB."""
    n = float(n)
    for unit, div in (("MiB", 1024 ** 2), ("KiB", 1024)):
        if abs(n) >= div:
            return f"{_num(round(n / div, 2))} {unit}"
    return f"{_num(n)} B"


def format_duration(s: float) -> str:
    s = float(s)
    if s == 0:
        return "0 s"
    if abs(s) < 1e-3:
        return f"{_num(round(s * 1e6, 3))} us"
    if abs(s) < 1:
        return f"{_num(round(s * 1e3, 3))} ms"
    return f"{_num(round(s, 3))} s"


def value_label(key: str, v) -> str:
    """Human label of one value of a swept key."""
    if key == "network.keepalive" and isinstance(v, (bool, np.bool_)):
        return "keep-alive" if v else "new per request"
    if key == "request_response.chunk_size" and _is_missing(v):
        return "no chunking"
    if _is_missing(v):
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "on" if v else "off"
    if isinstance(v, dict):
        name = v.get("dist", "dist")
        args = ", ".join(f"{k}={value_label(key, x)}" for k, x in v.items() if k != "dist")
        return f"{name}({args})"
    kind = _field_kind(key)
    if isinstance(v, (int, float, np.integer, np.floating)):
        if kind == "size":
            return format_size(v)
        if kind == "duration":
            return format_duration(v)
        if kind == "bandwidth":
            return f"{_num(float(v) / 1e6)} Mbit/s"
        if kind == "fraction":
            return f"{_num(float(v) * 100)} %"
        return _num(float(v)) if isinstance(v, (float, np.floating)) else str(int(v))
    return str(v)


# ------------------------------------------------------- units on axes --

_PERCENT_HINTS = ("utilization", "utilisation", "fraction", "ratio", "availability", "success_rate",
                  "delivery")

_METRIC_NAMES = {
    "throughput": "throughput",
    "latency_mean": "mean latency",
    "wait_mean": "mean wait at the server",
    "server_utilization": "server utilisation",
    "broker_utilization": "broker utilisation",
    "bandwidth": "bandwidth",
    "replications": "replications",
    "server_cpu_s": "server CPU",
    "server_cpu_wasted_s": "wasted server CPU",
    "page_load_time": "page load time",
}


def display_unit(unit: str, values=(), name: str = "") -> tuple[str, float]:
    """A human unit for values in base ``unit`` and the factor to multiply
    them by, from :func:`commsim.humanize.scale` (the one owner of human
    units: seconds as µs/ms/s, bytes as KiB/MiB, the B/s metric as a bit
    rate, fractions as %), chosen from the largest value so that an axis's
    ticks stay readable.  A count whose name says it is a ratio
    (utilisation, availability ...) is shown in %."""
    from commsim import humanize

    if unit in ("", "1"):
        return ("%", 100.0) if any(h in name for h in _PERCENT_HINTS) else ("", 1.0)
    vals = np.asarray([v for v in np.asarray(values, dtype=float).ravel() if np.isfinite(v)])
    top = float(np.max(np.abs(vals))) if vals.size else 0.0
    factor, label = humanize.scale(unit, [top] if top else [])
    return ("per second" if label == "/s" else label), factor


def metric_name(name: str) -> str:
    """Short human name of a metric (``latency_p99`` -> "p99 latency")."""
    if name in _METRIC_NAMES:
        return _METRIC_NAMES[name]
    parts = name.split("_")
    if len(parts) == 2 and parts[1][:1] == "p" and parts[1][1:].isdigit():
        return f"{parts[1]} {parts[0]}"
    if parts[-1] == "s" and len(parts) > 1:
        parts = parts[:-1]
    if parts[-1] == "mean" and len(parts) > 1:
        return "mean " + " ".join(parts[:-1])
    return " ".join(parts)


def metric_axis(name: str, values=()) -> tuple[str, float]:
    """Axis label with a human unit for a metric (its unit from
    :data:`commsim.metrics.METRICS`) and the factor for its values."""
    from commsim.metrics import METRICS

    m = METRICS.get(name)
    base = m.unit if m is not None else ""
    if name.endswith("_s") and base == "s" and "cpu" in name:
        label = metric_name(name)
        unit, scale = "core-s", 1.0  # CPU-seconds: keep seconds, say what they are
        return f"{label} ({unit})", scale
    unit, scale = display_unit(base, values, name)
    label = metric_name(name)
    if unit == "1/s":
        unit = "per second"
    return (f"{label} ({unit})" if unit else label), scale


def key_axis(key: str, values=()) -> tuple[str, float]:
    """Axis label with a human unit for a swept key (its unit from the
    schema) and the factor for its values."""
    kind = _field_kind(key)
    base = {"duration": "s", "size": "B", "rate": "1/s", "bandwidth": "bit/s"}.get(kind, "")
    if kind == "fraction":
        return f"{key_label(key)} (%)", 100.0
    unit, scale = display_unit(base, values)
    if unit == "1/s":
        unit = "per second"
    return (f"{key_label(key)} ({unit})" if unit else key_label(key)), scale


# ----------------------------------------------------------------- columns --

#: Summary columns that are neither sweep keys nor metrics (the stability flag).
NOT_PARAMS = ("replications", "unstable", "unstable_reason")
UNSTABLE_LABEL = "not in steady state"


def param_columns(summary: pd.DataFrame) -> list[str]:
    """Columns that are sweep keys: neither ``replications``, the stability
    flag, nor a metric (a metric ``m`` always has its ``m_ci95`` companion)."""
    cols = set(summary.columns)
    return [c for c in summary.columns
            if c not in NOT_PARAMS and not c.endswith("_ci95") and f"{c}_ci95" not in cols]


def unstable_flags(rows: pd.DataFrame) -> np.ndarray:
    """Per row: flagged as not in steady state (summary column ``unstable``;
    all False for results written before the stability check)."""
    if "unstable" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return np.array([v is True or (isinstance(v, (bool, np.bool_)) and bool(v))
                     or (isinstance(v, str) and v.strip().lower() == "true") for v in rows["unstable"]])


def mark_unstable(ax, xs, ys, flags) -> None:
    """A red ring around every point not in steady state (one legend entry
    per axes): its mean describes the window length, not the system."""
    flags = np.asarray(flags, dtype=bool)
    if not flags.any():
        return
    xs, ys = np.asarray(xs, dtype=float)[flags], np.asarray(ys, dtype=float)[flags]
    labelled = any(t == UNSTABLE_LABEL for t in ax.get_legend_handles_labels()[1])
    ax.scatter(xs, ys, s=110, facecolors="none", edgecolors="red", linewidths=1.5, zorder=6,
               label=None if labelled else UNSTABLE_LABEL)


def _labelled(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """A copy with a display-label column ``__<key>`` per key (groups NaN/None safely)."""
    df = df.copy()
    for k in keys:
        df[f"__{k}"] = [value_label(k, v) for v in df[k]]
    return df


def _order(labels) -> list[str]:
    out: list[str] = []
    for v in labels:
        if v not in out:
            out.append(v)
    return out


def _facets(df: pd.DataFrame, keys: Sequence[str]) -> tuple[list[tuple[str, pd.DataFrame | None]], str, int]:
    """Split ``df`` (labelled) into panels, one per combination of ``keys``
    that vary.  With more than :data:`MAX_PANELS` combinations the last keys
    are fixed at their first value; the returned note says which.  Returns
    (panels in row-major order, note, number of columns).  With two keys the
    panels form a grid whose rows are the values of one key and whose
    columns are the values of the other (the one with fewer values, at most
    3); a missing combination is an empty (hidden) panel."""
    keys = [k for k in keys if len(_order(df[f"__{k}"])) > 1]
    fixed = []
    while keys:
        n = len(df[[f"__{k}" for k in keys]].drop_duplicates())
        if n <= MAX_PANELS:
            break
        k = keys.pop()
        first = _order(df[f"__{k}"])[0]
        df = df[df[f"__{k}"] == first]
        fixed.append(f"{key_label(k)} = {first}")
    note = ("only " + "; ".join(fixed)) if fixed else ""
    if not keys:
        return [("", df)], note, 1
    if len(keys) == 2:
        a, b = keys
        va, vb = _order(df[f"__{a}"]), _order(df[f"__{b}"])
        if len(vb) > len(va) or len(vb) > 3:
            (a, va), (b, vb) = (b, vb), (a, va)
        if len(vb) <= 3:
            panels = []
            for x in va:
                for y in vb:
                    g = df[(df[f"__{a}"] == x) & (df[f"__{b}"] == y)]
                    panels.append((f"{key_label(a)}: {x}, {key_label(b)}: {y}", g if len(g) else None))
            return panels, note, len(vb)
    panels = []
    for combo in product(*(_order(df[f"__{k}"]) for k in keys)):
        mask = np.ones(len(df), dtype=bool)
        for k, v in zip(keys, combo):
            mask &= (df[f"__{k}"] == v).to_numpy()
        if mask.any():
            panels.append((", ".join(f"{key_label(k)}: {v}" for k, v in zip(keys, combo)), df[mask]))
    n = len(panels)
    return panels, note, 1 if n == 1 else 2 if n in (2, 4) else 3


def _restrict(df: pd.DataFrame, keys: Sequence[str], max_rows: int) -> tuple[pd.DataFrame, list[str], str]:
    """Fix the last keys at their first value until ``df`` has at most
    ``max_rows`` rows; returns (rows, keys still varying, note)."""
    keys = list(keys)
    fixed = []
    while len(df) > max_rows and len(keys) > 1:
        k = keys.pop()
        first = _order(df[f"__{k}"])[0]
        df = df[df[f"__{k}"] == first]
        fixed.append(f"{key_label(k)} = {first}")
    return df, keys, ("only " + "; ".join(fixed)) if fixed else ""


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """Like ``pyplot.subplots`` but a bare Figure: no pyplot state, no
    backend switch, so figures drawn in a notebook leave its inline backend
    alone and a CLI needs no display."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _new_figure(n_panels: int, ncols: int | None = None, width: float = 7.4,
                sharey: bool = True):
    """Panels in a grid at most ``width`` inches wide (README width at 110 dpi)."""
    from matplotlib.figure import Figure

    ncols = ncols or min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    per = width / ncols
    height = per * 0.9 if ncols > 1 else 4.2
    fig = Figure(figsize=(width, max(2.4, height) * nrows + 0.7))
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def _ci(df: pd.DataFrame, y: str, scale: float, errorbars: bool):
    col = f"{y}_ci95"
    if not errorbars or col not in df.columns:
        return None
    ci = df[col].to_numpy(dtype=float) * scale
    if np.all(np.isnan(ci)):
        return None
    return np.nan_to_num(ci, nan=0.0)


def ci_note(summary: pd.DataFrame, errorbars: bool = True) -> str:
    """What the error bars are: "95% CI over 3 replications", or that one
    replication gives none."""
    if "replications" not in summary.columns or not len(summary):
        return ""
    reps = sorted({int(r) for r in summary["replications"].dropna()})
    if not reps:
        return ""
    if reps == [1]:
        return "1 replication: no confidence interval"
    if not errorbars:
        return ""
    n = str(reps[0]) if len(reps) == 1 else f"{reps[0]}-{reps[-1]}"
    return f"error bars: 95% CI over {n} replications"


def _check_unique(df: pd.DataFrame, cols: list[str]) -> None:
    if df.duplicated(cols).any():
        raise ValueError("several summary rows share the same x/hue values; pass facet=[...] "
                         "with the other varying keys or filter the summary first")


def _finish(fig, axes, title, note, xlabel, ylabel, hue, legend_axes=None):
    shown = [ax for ax in axes if ax.get_visible()]
    small = len(shown) > 2
    for ax in shown:
        ax.grid(axis="y", alpha=0.3)
        spec = ax.get_subplotspec()
        if spec.is_last_row() or not small:
            ax.set_xlabel(xlabel, fontsize=8 if small else None)
        if spec.is_first_col():
            ax.set_ylabel(ylabel or "", fontsize=8 if small else None)
        if small:
            ax.tick_params(labelsize=7)
    ax = legend_axes or shown[0]
    handles, labels = ax.get_legend_handles_labels()
    if not any(t == UNSTABLE_LABEL for t in labels):  # a flagged point in another panel
        for other in shown:
            h2, l2 = other.get_legend_handles_labels()
            if UNSTABLE_LABEL in l2:
                handles.append(h2[l2.index(UNSTABLE_LABEL)])
                labels.append(UNSTABLE_LABEL)
                break
    if handles and (hue is not None or UNSTABLE_LABEL in labels):
        ax.legend(handles, labels, title=key_label(hue) if hue is not None else None, fontsize=8,
                  title_fontsize=8)
    head = title or ""
    if note:
        head = f"{head}\n({note})" if head else f"({note})"
    if head:
        fig.suptitle(head, fontsize=10)
    fig.tight_layout()


# --------------------------------------------------------------- drawing ----

def _draw_bars(ax, df, x, y, hue, scale, errorbars, x_order, hue_order, logy=False):
    n_h = max(1, len(hue_order))
    width = 0.8 / n_h
    pos = np.arange(len(x_order))
    groups = [(h, df[df[f"__{hue}"] == h]) for h in hue_order] if hue else [(None, df)]
    for j, (h, g) in enumerate(groups):
        idx = {lbl: i for i, lbl in enumerate(x_order)}
        xs, ys, es = [], [], []
        ci = _ci(g, y, scale, errorbars)
        for r, (lbl, val) in enumerate(zip(g[f"__{x}"], g[y].to_numpy(dtype=float))):
            xs.append(pos[idx[lbl]] + (j - (n_h - 1) / 2) * width)
            ys.append(val * scale)
            es.append(ci[r] if ci is not None else 0.0)
        mark_unstable(ax, xs, ys, unstable_flags(g))
        if logy:  # a bar's length means nothing on a log axis: points instead
            ax.errorbar(xs, ys, yerr=es if ci is not None else None, fmt="o", ms=5, capsize=3,
                        label=h if h is not None else None, color=f"C{j}")
        else:
            ax.bar(xs, ys, width=width * 0.95, yerr=es if ci is not None else None, capsize=3,
                   label=h if h is not None else None, color=f"C{j}")
    ax.set_xticks(pos)
    room = ax.get_position().width * ax.figure.get_figwidth()  # inches for the labels
    crowded = len(x_order) * max((len(s) for s in x_order), default=0) * 0.05 > room
    ax.set_xticklabels(x_order, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    if logy:
        ax.set_yscale("log")


def _draw_lines(ax, df, x, y, hue, scale, errorbars, hue_order, xscale=1.0, logx=False, logy=False):
    groups = [(h, df[df[f"__{hue}"] == h]) for h in hue_order] if hue else [(None, df)]
    for j, (h, g) in enumerate(groups):
        g = g.sort_values(x)
        xs = g[x].to_numpy(dtype=float) * xscale
        ys = g[y].to_numpy(dtype=float) * scale
        ci = _ci(g, y, scale, errorbars)
        ax.errorbar(xs, ys, yerr=ci, marker="o", ms=4, capsize=3, label=h if h is not None else None,
                    color=f"C{j}")
        mark_unstable(ax, xs, ys, unstable_flags(g))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")


def _prepare(summary, x, y, hue, facet):
    if y not in summary.columns:
        raise KeyError(f"metric {y!r} not in summary")
    if facet is None:
        facet = [c for c in param_columns(summary) if c not in (x, hue)]
    keys = [x] + ([hue] if hue else []) + [f for f in facet if f not in (x, hue)]
    df = _labelled(summary, keys)
    panels, note, ncols = _facets(df, [f for f in facet if f not in (x, hue)])
    for _, g in panels:
        if g is not None:
            _check_unique(g, [f"__{x}"] + ([f"__{hue}"] if hue else []))
    return df, panels, note, ncols


def line_plot(summary: pd.DataFrame, x: str, y: str, hue: str | None = None, logx: bool = False,
              logy: bool = False, errorbars: bool = True, ylabel: str | None = None,
              title: str | None = None, *, xlabel: str | None = None, scale: float = 1.0,
              xscale: float = 1.0, facet: Sequence[str] | None = None):
    """``y`` (times ``scale``) against numeric ``x``, one line per ``hue`` value.

    ``facet``: keys whose combinations get one panel each (default: every
    other swept key that varies).  Returns a Figure.
    """
    if ylabel is None and scale == 1.0 and y in summary.columns:  # human unit from the metric
        ylabel, scale = metric_axis(y, summary[y])
    if xlabel is None and xscale == 1.0 and x in summary.columns:
        xlabel, xscale = key_axis(x, summary[x])
    df, panels, note, ncols = _prepare(summary, x, y, hue, facet)
    hue_order = _order(df[f"__{hue}"]) if hue else []
    fig, axes = _new_figure(len(panels), ncols)
    for ax, (ptitle, g) in zip(axes, panels):
        if g is None:
            ax.set_visible(False)
            continue
        _draw_lines(ax, g, x, y, hue, scale, errorbars, hue_order, xscale, logx, logy)
        if ptitle:
            ax.set_title(ptitle, fontsize=8 if ncols > 1 else 9)
    has_ci = f"{y}_ci95" in summary.columns and summary[f"{y}_ci95"].notna().any()
    note = "; ".join(t for t in (note, ci_note(summary, errorbars and has_ci)) if t)
    _finish(fig, axes, title, note, xlabel or key_axis(x)[0], ylabel or metric_axis(y)[0], hue)
    return fig


def bar_plot(summary: pd.DataFrame, x: str, y: str, hue: str | None = None, logy: bool = False,
             errorbars: bool = True, ylabel: str | None = None, title: str | None = None, *,
             xlabel: str | None = None, scale: float = 1.0, facet: Sequence[str] | None = None):
    """Grouped bars of ``y`` (times ``scale``) per value of ``x`` (in sweep
    order), one bar colour per ``hue`` value; panels as :func:`line_plot`."""
    if ylabel is None and scale == 1.0 and y in summary.columns:
        ylabel, scale = metric_axis(y, summary[y])
    df, panels, note, ncols = _prepare(summary, x, y, hue, facet)
    x_order = _order(df[f"__{x}"])
    hue_order = _order(df[f"__{hue}"]) if hue else []
    fig, axes = _new_figure(len(panels), ncols)
    for ax, (ptitle, g) in zip(axes, panels):
        if g is None:
            ax.set_visible(False)
            continue
        _draw_bars(ax, g, x, y, hue, scale, errorbars, x_order, hue_order, logy)
        if ptitle:
            ax.set_title(ptitle, fontsize=8 if ncols > 1 else 9)
    has_ci = f"{y}_ci95" in summary.columns and summary[f"{y}_ci95"].notna().any()
    note = "; ".join(t for t in (note, ci_note(summary, errorbars and has_ci)) if t)
    _finish(fig, axes, title, note, xlabel or key_axis(x)[0], ylabel or metric_axis(y)[0], hue)
    return fig


def stacked_bar_plot(summary: pd.DataFrame, parts: Sequence[tuple[str, str]], keys: Sequence[str],
                     scale=1.0, ylabel: str | None = None, title: str | None = None):
    """One horizontal stacked bar per summary row (sweep point): ``parts`` is
    a list of ``(column, legend label)``; ``scale`` a number or a per-row
    array; ``ylabel`` names the quantity (on the value axis).  Each bar is
    labelled on the left with the values of ``keys``, so labels are never
    rotated and the figure keeps a README-friendly width however many points."""
    from matplotlib.figure import Figure

    n = len(summary)
    if keys:
        ticks = [", ".join(value_label(k, v) for k, v in zip(keys, row))
                 for row in summary[list(keys)].itertuples(index=False)]
    else:
        ticks = ["all"] * n
    fig = Figure(figsize=(6.8, 1.3 + 0.24 * max(n, 3)))
    ax = fig.subplots()
    pos = np.arange(n)
    left = np.zeros(n)
    scale = np.broadcast_to(np.asarray(scale, dtype=float), (n,))
    for j, (col, lbl) in enumerate(parts):
        vals = summary[col].to_numpy(dtype=float) * scale
        vals = np.nan_to_num(vals, nan=0.0)
        ax.barh(pos, vals, left=left, height=0.72, label=lbl, color=f"C{j}")
        left += vals
    ax.set_yticks(pos)
    ax.set_yticklabels(ticks, fontsize=8)
    ax.invert_yaxis()  # sweep order top to bottom
    ax.set_xlabel(ylabel or "")
    if keys:
        ax.set_ylabel(" / ".join(key_label(k) for k in keys), fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
