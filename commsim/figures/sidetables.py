"""Side tables: time series a few figures need beside ``summary.csv``.

Runs report scalars only, so the series behind ``queue_depth_slow_consumer``
(pubsub) and ``timeline`` (stateful) come from replaying replication 0 of
the points they show (same config and seed, hence the same run).  That
replay happens once, when the figures are first drawn after ``commsim run``;
its series are written beside the figure (``queue_depth.csv``,
``timeseries.csv``, ``servers.csv``) under a first line that fingerprints
the configs and seed they come from.  ``commsim plot``, ``Result.plot()``
and ``commsim report`` then read those tables and never simulate; a table
whose fingerprint does not match the result being drawn (another
configuration, written with ``--force``) is replayed again, so a figure
never shows another run's series.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_HEAD = "# commsim side table: replication 0 (seed {seed}) of the points drawn; fingerprint {fp}"


def fingerprint(configs, seed: int) -> str:
    text = json.dumps([configs, int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read(path: Path, fp: str) -> list[str] | None:
    """The data lines (CSV header first) of ``path`` if it was written for
    fingerprint ``fp``; otherwise None."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].startswith("# ") or not lines[0].endswith(f"fingerprint {fp}"):
        return None
    return lines[1:]


#: Side tables written after a replay in this process (``commsim plot`` says so).
replayed: list[Path] = []


def write(path: Path, fp: str, seed: int, lines: list[str]) -> Path:
    """Write a table that a replay just produced (recorded in :data:`replayed`)."""
    from commsim.experiment.output import atomic_write

    atomic_write(Path(path), "\n".join([_HEAD.format(seed=seed, fp=fp), *lines]) + "\n")
    replayed.append(Path(path))
    return Path(path)
