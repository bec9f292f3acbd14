"""Show quantities in human units: the one formatting module.

:mod:`commsim.units` parses what users write (``"250us"``, ``"100Mbps"``)
into base units; this module goes the other way, for everything a person
reads (the on-screen summary, REPORT.md, report.html, ``commsim metrics``).
Files keep base units (``runs.csv``, ``summary.csv``; their units are in
``units.csv`` beside them).

Base unit of a metric (``commsim.metrics.Metric.unit``) and how it is shown:

==========  ======================================================
``s``       ns, µs, ms or s, whichever gives 1..999
``B``       B, KiB, MiB, GiB (binary: 1 KiB = 1024 B)
``B/s``     a bit rate: bit/s, kbit/s, Mbit/s, Gbit/s (x 8, decimal), the
            unit of the key ``network.bandwidth``; the metric ``bandwidth``
            keeps its name and B/s in the files
``1/s``     /s (k/s, M/s for large rates)
``fraction``  percent
``cores``   cores (CPU-seconds per second of window)
``1``       a count or ratio: integers print as integers
==========  ======================================================

A column of a table uses one unit for all its rows (chosen from the column's
median magnitude), so rows compare at a glance.  Numbers get 3 significant
digits (4 below 10 000 when the value is not an integer), integers print as
integers, NaN prints as an en dash.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

#: (factor from the base unit, label), smallest first, per base unit.
_SCALES: dict[str, list[tuple[float, str]]] = {
    "s": [(1e9, "ns"), (1e6, "µs"), (1e3, "ms"), (1.0, "s")],
    "B": [(1.0, "B"), (1 / 1024, "KiB"), (1 / 1024**2, "MiB"), (1 / 1024**3, "GiB")],
    "B/s": [(8.0, "bit/s"), (8e-3, "kbit/s"), (8e-6, "Mbit/s"), (8e-9, "Gbit/s")],
    "bit/s": [(1.0, "bit/s"), (1e-3, "kbit/s"), (1e-6, "Mbit/s"), (1e-9, "Gbit/s")],
    "1/s": [(1.0, "/s")],
}

#: What a base unit is called in prose (``commsim metrics``, units.csv).
UNIT_NAMES = {
    "s": "seconds", "B": "bytes", "B/s": "bytes per second", "1/s": "per second",
    "fraction": "fraction (0..1)", "1": "count or ratio", "cores": "cores",
    "bit/s": "bits per second",
}


def _is_nan(x) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def number(x, digits: int = 3, grouping: bool = True) -> str:
    """A plain number: integers as integers (``16384``), others with
    ``digits`` significant digits (``0.0347``, ``2.43e+06`` only below 1e-4
    or above 1e9), NaN as an en dash."""
    if isinstance(x, bool):
        return str(x)
    if _is_nan(x):
        return "–"
    if isinstance(x, str):
        return x
    x = float(x)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}" if abs(x) >= 10_000 and grouping else str(int(x))
    a = abs(x)
    if a != 0 and (a < 1e-4 or a >= 1e9):
        return f"{x:.{digits - 1}e}"
    if a >= 1000:
        return f"{x:,.0f}" if a >= 10_000 and grouping else f"{x:.0f}"
    # enough decimals for `digits` significant digits
    decimals = max(0, digits - 1 - int(math.floor(math.log10(a)))) if a else 0
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def scale(unit: str, values: Iterable[float] = ()) -> tuple[float, str]:
    """(factor, label) to show values of ``unit``: ``value * factor`` in
    ``label``.  The scale is chosen from the median magnitude of ``values``."""
    if unit == "fraction":
        return 100.0, "%"
    if unit not in _SCALES:
        return 1.0, "" if unit == "1" else unit
    mags = sorted(abs(float(v)) for v in values if not _is_nan(v) and float(v) != 0)
    steps = _SCALES[unit]
    if not mags:
        base = [s for s in steps if s[0] == 1.0 or (unit == "B/s" and s[1] == "bit/s")]
        return base[0] if base else steps[0]
    m = mags[len(mags) // 2]
    best = steps[0]
    for factor, label in steps:
        if m * factor >= 1 - 1e-12:
            best = (factor, label)
    # the smallest step is chosen when even it gives < 1
    return best


def quantity(value, unit: str, ci=None, fixed: tuple[float, str] | None = None,
             with_unit: bool = True) -> str:
    """``value`` (± ``ci``) in a human unit, e.g. ``12.3 ± 0.4 ms``."""
    if isinstance(value, str):
        return value
    factor, label = fixed or scale(unit, [value])
    if _is_nan(value):
        return "–"
    text = number(float(value) * factor)
    # a half-width below 1e-6 of the mean is rounding noise of identical replications
    if ci is not None and not _is_nan(ci) and float(ci) > 1e-6 * abs(float(value)):
        text += f" ± {number(float(ci) * factor, 2)}"
    if with_unit and label:
        text += ("" if label in ("%",) else " ") + label
    return text


def metric_unit(name: str) -> str:
    """The base unit of a metric (``1`` when it is not defined)."""
    from commsim.metrics import METRICS

    m = METRICS.get(name)
    return m.unit if m is not None else "1"


def column(values: Sequence, unit: str, cis: Sequence | None = None) -> tuple[list[str], str]:
    """Format a column in one shared unit; returns (cells, unit label)."""
    fixed = scale(unit, values)
    cis = cis if cis is not None else [None] * len(values)
    return [quantity(v, unit, c, fixed=fixed, with_unit=False) for v, c in zip(values, cis)], fixed[1]


# --------------------------------------------------------- swept values ----

def written_values(experiment) -> dict[str, dict]:
    """For every swept key, {parsed value: value as the user wrote it}
    (``16384.0 -> 16384``, ``10.0 -> "10/s"``)."""
    out: dict[str, dict] = {}
    resolved = (experiment.resolved.get("sweep") or {}) if experiment is not None else {}
    for key, raw in (getattr(experiment, "sweep", None) or {}).items():
        parsed = resolved.get(key, raw)
        m = {}
        for p, r in zip(parsed, raw):
            if isinstance(r, str) and r != str(p):  # a bare number is formatted by its key's kind
                m[_key(p)] = r
        out[key] = m
    return out


def _key(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return str(v)


def param(key: str, value, written: dict[str, dict] | None = None) -> str:
    """A swept value as written in the experiment (``chunk_size=16384``,
    ``rate 10/s``), else as a plain number."""
    if written and key in written:
        m = written[key]
        k = _key(value)
        if k in m:
            return m[k]
    if _is_nan(value):
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _by_kind(key, float(value))
    return str(value)


def _by_kind(key: str, value: float) -> str:
    """A swept value in the form a user writes its key's kind: ``10ms``,
    ``0.1/s``, ``100Mbps``; sizes and plain numbers as numbers (``16384``)."""
    from commsim.config.schema import SECTIONS, TOP_LEVEL

    section, _, name = key.rpartition(".")
    fields = SECTIONS[section].fields if section in SECTIONS else (TOP_LEVEL if not section else {})
    f = fields.get(name)
    kind = f.kind.split(":", 1)[-1] if f is not None else ""
    if kind == "duration":
        if value == 0:
            return "0s"
        factor, label = scale("s", [value])
        return number(value * factor, 4, False) + label
    if kind == "rate":
        return number(value, 4, False) + "/s"
    if kind == "bandwidth":
        factor, label = scale("bit/s", [value])
        return number(value * factor, 4, False) + label.replace("bit/s", "bps").replace("kbps", "Kbps")
    return number(value, 4, False)
