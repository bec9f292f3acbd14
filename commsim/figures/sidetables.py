"""Side tables: time series a few figures need beside ``summary.csv``,
recorded *during* the run (figures never simulate).

Runs report scalars; the series behind ``queue_depth_slow_consumer``
(pubsub), ``timeline`` (stateful) and ``storm_timeseries`` (a notification
pattern behind a topology, experiments/reconnect_storm.yaml) are taken from
replication 0 of each sweep point at the end of that run, where it ran
(:func:`of_run`, called by :func:`commsim.experiment.executors.execute` for
the jobs :func:`wanted` names).  They travel with the run's metrics, are kept
in the run store (``.runs/``, so a reused run has them too) and in
:attr:`commsim.experiment.runner.Result.side`; the figures write them as the
side tables beside the figure (``queue_depth.csv``, ``timeseries.csv`` +
``servers.csv``, ``storm_timeseries.csv``) under a first line that
fingerprints the configs and seed they come from, and draw from them.

``commsim plot``, ``Result.plot()`` of a loaded folder and ``commsim report``
read those tables.  A table that is missing (results written before side
tables were recorded, or the file was removed) or was written for another
configuration is *not* rebuilt by simulating: the figure is not drawn, and
the warning (:class:`Missing`) says to run ``commsim run`` again, which
records it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_HEAD = "# commsim side table: replication 0 (seed {seed}) of the points drawn; fingerprint {fp}"


class Missing(Exception):
    """A side table a figure needs is neither recorded in the result nor in
    the folder for this configuration."""

    def __init__(self, path: Path, figure: str, stale: bool):
        self.path, self.figure = Path(path), figure
        why = ("was written for another configuration" if stale else
               "is missing (results written before side tables were recorded during the run, "
               "or the file was removed)")
        super().__init__(
            f"{figure} not drawn: its side table {self.path.name} {why}; figures never "
            f"re-simulate: run `commsim run` again for this folder (with --out {self.path.parent}) "
            "to record it")


#: Missing side tables met while drawing, in this process (``commsim plot`` says so).
missing: list[Missing] = []


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


def write(path: Path, fp: str, seed: int, lines: list[str]) -> Path:
    from commsim.experiment.output import atomic_write

    atomic_write(Path(path), "\n".join([_HEAD.format(seed=seed, fp=fp), *lines]) + "\n")
    return Path(path)


def lines(result, path: Path, fp: str, seed: int, indices, build, figure: str) -> list[str]:
    """The lines (CSV header first) of side table ``path`` for the sweep
    points ``indices``: built by ``build({index: side data})`` from the
    series the runs recorded (``result.side``) and written to ``path``; else
    read from ``path`` if it was written for fingerprint ``fp``; else
    :class:`Missing` (recorded in :data:`missing`)."""
    side = getattr(result, "side", None) or {}
    indices = list(indices)
    if indices and all(side.get(i) is not None for i in indices):
        out = build({i: side[i] for i in indices})
        write(path, fp, seed, out)
        return out
    found = read(path, fp)
    if found is not None:
        return found
    exc = Missing(path, figure, stale=Path(path).exists())
    missing.append(exc)
    raise exc


# ------------------------------------------------------ during the run ----

def wanted(config: dict, replication: int) -> bool:
    """Whether this run's series feed a figure (replication 0 of a point of
    a pattern with a side table)."""
    if replication != 0:
        return False
    pattern = config["pattern"]
    if pattern == "pubsub":
        return config["pubsub"]["slow_consumers"] > 0
    if pattern == "stateful":
        return True
    if pattern in ("short_polling", "long_polling", "sse", "push", "websocket"):
        from commsim.nodes import cluster

        return cluster.active(config)
    return False


def of_run(run) -> dict | None:
    """The series of a finished run (:class:`~commsim.experiment.runner.SimRun`)
    that its pattern's figures need, as plain JSON-able data (stored with the
    run); None when the pattern has none."""
    config = run.sim.config
    pattern = config["pattern"]
    if pattern == "pubsub":
        from commsim.figures.pubsub import run_series
    elif pattern == "stateful":
        from commsim.figures.topology import run_series
    elif "topology" in run.series:
        from commsim.figures.reconnect_storm import run_series
    else:
        return None
    return run_series(run)
