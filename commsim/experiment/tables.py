"""How result tables are written: integers as integers.

Resolved configs hold base-unit numbers, and a size parses to a float
(``1B`` -> 1.0, ``64KiB`` -> 65536.0); pandas turns a column of integers
with a gap (``chunk_size: [null, 64KiB]``) into floats.  Written as they are,
``runs.csv`` and ``summary.csv`` read ``65536.0`` and ``1000.0`` where the
user wrote an integer.  :func:`for_writing` is applied to every table
written to a results folder (CSV and Parquet): a parameter column (a swept
key, the replication counters, the capacity search's values) whose values
are all whole numbers (and blanks) is written as integers, with blanks kept
blank.  A column with any fractional value (``clients.rate: [2.5, 10]``)
is left as it is, so a column never mixes notations.  Metrics are not
touched: a mean over replications is a real number.

The in-memory tables (``Result.runs``/``summary``) are unchanged; only the
written copies are converted.
"""

from __future__ import annotations

import math

#: Integer bookkeeping columns of the result tables.
COUNTERS = ("replication", "replications", "seed")


def _integral(values) -> bool:
    seen = False
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:  # numpy scalars
                import numpy as np

                if isinstance(v, np.bool_) or not isinstance(v, (np.integer, np.floating)):
                    return False
            except ImportError:  # pragma: no cover
                return False
        if not math.isfinite(float(v)) or float(v) != int(float(v)):
            return False
        seen = True
    return seen


def for_writing(df, columns):
    """A copy of ``df`` in which each of ``columns`` (those present) holding
    only whole numbers and blanks has pandas' nullable integer dtype
    (``Int64``: written as ``65536``, blanks stay blank, Parquet int64)."""
    out = df.copy()
    for c in dict.fromkeys([*columns, *COUNTERS]):
        if c not in out.columns or str(out[c].dtype) in ("Int64", "int64", "bool"):
            continue
        if _integral(out[c].tolist()):
            out[c] = out[c].map(lambda v: None if v is None or v != v else int(v)).astype("Int64")
    return out
