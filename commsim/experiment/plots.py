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


# ----------------------------------------------------------------- columns --

def param_columns(summary: pd.DataFrame) -> list[str]:
    """Columns that are sweep keys: neither ``replications`` nor a metric
    (a metric ``m`` always has its ``m_ci95`` companion)."""
    cols = set(summary.columns)
    return [c for c in summary.columns
            if c != "replications" and not c.endswith("_ci95") and f"{c}_ci95" not in cols]


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


def _facets(df: pd.DataFrame, keys: Sequence[str]) -> tuple[list[tuple[str, pd.DataFrame]], str]:
    """Split ``df`` (labelled) into panels, one per combination of ``keys``
    that vary.  With more than :data:`MAX_PANELS` combinations the last keys
    are fixed at their first value; the returned note says which."""
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
    if not keys:
        panels = [("", df)]
    else:
        panels = []
        combos = product(*(_order(df[f"__{k}"]) for k in keys))
        for combo in combos:
            mask = np.ones(len(df), dtype=bool)
            for k, v in zip(keys, combo):
                mask &= (df[f"__{k}"] == v).to_numpy()
            if mask.any():
                title = ", ".join(f"{key_label(k)}: {v}" for k, v in zip(keys, combo))
                panels.append((title, df[mask]))
    note = ("only " + "; ".join(fixed)) if fixed else ""
    return panels, note


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


def _new_figure(n_panels: int, width_per: float = 4.6, height: float = 3.6, sharey: bool = True):
    from matplotlib.figure import Figure

    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width_per * ncols + 0.6, height * nrows + 0.6))
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


def _check_unique(df: pd.DataFrame, cols: list[str]) -> None:
    if df.duplicated(cols).any():
        raise ValueError("several summary rows share the same x/hue values; pass facet=[...] "
                         "with the other varying keys or filter the summary first")


def _finish(fig, axes, title, note, xlabel, ylabel, hue, legend_axes=None):
    for i, ax in enumerate(axes):
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlabel(xlabel)
        if i % 3 == 0:
            ax.set_ylabel(ylabel or "")
    if hue is not None:
        ax = legend_axes or axes[0]
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, title=key_label(hue), fontsize=8, title_fontsize=8)
    head = title or ""
    if note:
        head = f"{head}\n({note})" if head else f"({note})"
    if head:
        fig.suptitle(head, fontsize=11)
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
        ax.bar(xs, ys, width=width * 0.95, yerr=es if ci is not None else None, capsize=3,
               label=h if h is not None else None, color=f"C{j}")
    ax.set_xticks(pos)
    crowded = len(x_order) * max((len(s) for s in x_order), default=0) * 0.075 > 4.2
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
    panels, note = _facets(df, [f for f in facet if f not in (x, hue)])
    for _, g in panels:
        _check_unique(g, [f"__{x}"] + ([f"__{hue}"] if hue else []))
    return df, panels, note


def line_plot(summary: pd.DataFrame, x: str, y: str, hue: str | None = None, logx: bool = False,
              logy: bool = False, errorbars: bool = True, ylabel: str | None = None,
              title: str | None = None, *, xlabel: str | None = None, scale: float = 1.0,
              xscale: float = 1.0, facet: Sequence[str] | None = None):
    """``y`` (times ``scale``) against numeric ``x``, one line per ``hue`` value.

    ``facet``: keys whose combinations get one panel each (default: every
    other swept key that varies).  Returns a Figure.
    """
    df, panels, note = _prepare(summary, x, y, hue, facet)
    hue_order = _order(df[f"__{hue}"]) if hue else []
    fig, axes = _new_figure(len(panels))
    for ax, (ptitle, g) in zip(axes, panels):
        _draw_lines(ax, g, x, y, hue, scale, errorbars, hue_order, xscale, logx, logy)
        if ptitle:
            ax.set_title(ptitle, fontsize=9)
    _finish(fig, axes, title, note, xlabel or key_label(x), ylabel or y, hue)
    return fig


def bar_plot(summary: pd.DataFrame, x: str, y: str, hue: str | None = None, logy: bool = False,
             errorbars: bool = True, ylabel: str | None = None, title: str | None = None, *,
             xlabel: str | None = None, scale: float = 1.0, facet: Sequence[str] | None = None):
    """Grouped bars of ``y`` (times ``scale``) per value of ``x`` (in sweep
    order), one bar colour per ``hue`` value; panels as :func:`line_plot`."""
    df, panels, note = _prepare(summary, x, y, hue, facet)
    x_order = _order(df[f"__{x}"])
    hue_order = _order(df[f"__{hue}"]) if hue else []
    fig, axes = _new_figure(len(panels))
    for ax, (ptitle, g) in zip(axes, panels):
        _draw_bars(ax, g, x, y, hue, scale, errorbars, x_order, hue_order, logy)
        if ptitle:
            ax.set_title(ptitle, fontsize=9)
    _finish(fig, axes, title, note, xlabel or key_label(x), ylabel or y, hue)
    return fig


def stacked_bar_plot(summary: pd.DataFrame, parts: Sequence[tuple[str, str]], keys: Sequence[str],
                     scale=1.0, ylabel: str | None = None, title: str | None = None):
    """One stacked bar per summary row (sweep point): ``parts`` is a list of
    ``(column, legend label)``; ``scale`` a number or a per-row array.  The
    bar's tick label lists the values of ``keys``."""
    from matplotlib.figure import Figure

    n = len(summary)
    if keys:
        ticks = ["\n".join(value_label(k, v) for k, v in zip(keys, row))
                 for row in summary[list(keys)].itertuples(index=False)]
    else:
        ticks = ["all"] * n
    longest = max((len(line) for t in ticks for line in t.split("\n")), default=3)
    per_bar = max(0.5, 0.075 * longest)
    width = 1.5 + per_bar * n
    rotate = width > 24.0
    fig = Figure(figsize=(max(5.0, min(24.0, width)), 4.8 + (0.06 * longest if rotate else 0)))
    ax = fig.subplots()
    pos = np.arange(n)
    bottom = np.zeros(n)
    scale = np.broadcast_to(np.asarray(scale, dtype=float), (n,))
    for j, (col, lbl) in enumerate(parts):
        vals = summary[col].to_numpy(dtype=float) * scale
        vals = np.nan_to_num(vals, nan=0.0)
        ax.bar(pos, vals, bottom=bottom, width=0.75, label=lbl, color=f"C{j}")
        bottom += vals
    ax.set_xticks(pos)
    if rotate:  # too many points to write their labels side by side
        ticks = [t.replace("\n", ", ") for t in ticks]
    ax.set_xticklabels(ticks, fontsize=8, rotation=90 if rotate else 0)
    ax.set_ylabel(ylabel or "")
    if keys:
        ax.set_xlabel(" / ".join(key_label(k) for k in keys))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
