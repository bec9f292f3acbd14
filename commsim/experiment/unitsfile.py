"""``units.csv``: the unit and meaning of every column of runs.csv and summary.csv.

Results files keep base units (seconds, bytes, bytes per second, ...) so that
they are exact and machine-readable; ``units.csv`` beside them says which
(one row per column: ``column, unit, meaning, files``).  Units are those of
:mod:`commsim.metrics` (metrics) and :mod:`commsim.config.schema` (swept
keys); ``fraction`` is a number in 0..1, ``1`` a count or ratio.
"""

from __future__ import annotations

from pathlib import Path

FILE = "units.csv"

_FIXED = {
    "replication": ("1", "replication index (0-based); replication r of every sweep point uses the same seed"),
    "seed": ("1", "the run's random seed (derived from the experiment seed and the replication)"),
    "replications": ("1", "runs averaged in this row"),
    "unstable": ("true/false", "the point is not in steady state (docs/metrics.md, Stability); "
                 "its means describe the window, not the system"),
    "unstable_reason": ("text", "which stability checks fired, with their numbers"),
}


def key_unit(key: str) -> tuple[str, str]:
    """(unit, meaning) of a configuration key such as ``clients.rate``."""
    from commsim.config.schema import SECTIONS, TOP_LEVEL
    from commsim.experiment.reference import _unit

    section, _, name = key.rpartition(".")
    fields = SECTIONS[section].fields if section in SECTIONS else (TOP_LEVEL if not section else {})
    f = fields.get(name)
    if f is None:
        return "", f"swept key {key}"
    return _unit(f), f"swept key: {f.doc}"


def column_unit(column: str, params=()) -> tuple[str, str]:
    """(unit, meaning) of one results column."""
    from commsim.metrics import METRICS

    if column in params:
        return key_unit(column)
    if column in _FIXED:
        return _FIXED[column]
    if column in METRICS:
        m = METRICS[column]
        return m.unit, m.doc
    if column.endswith("_ci95") and column[:-5] in METRICS:
        m = METRICS[column[:-5]]
        return m.unit, f"95% confidence half-width of {m.name} (Student t over replications)"
    return "", ""


def rows(result) -> list[dict]:
    params = list(result.experiment.sweep)
    seen: dict[str, list[str]] = {}
    for fname, df in (("runs.csv", result.runs.drop(columns=["wall_s"], errors="ignore")),
                      ("summary.csv", result.summary)):
        for c in df.columns:
            seen.setdefault(str(c), []).append(fname)
    out = []
    for c, files in seen.items():
        unit, meaning = column_unit(c, params)
        out.append({"column": c, "unit": unit, "meaning": meaning, "files": " ".join(files)})
    return out


def write(result, out_dir: Path) -> Path:
    import pandas as pd

    from commsim.experiment.output import atomic_write

    path = Path(out_dir) / FILE
    atomic_write(path, pd.DataFrame(rows(result), columns=["column", "unit", "meaning", "files"])
                 .to_csv(index=False))
    return path
