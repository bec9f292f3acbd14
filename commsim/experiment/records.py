"""Per-operation records as Parquet (``commsim run --records``) and the
results tables as Parquet (``--parquet``).

Records are one row per operation, for users' own CDFs and analyses:

* ``request_response``: one row per operation (a request, or a whole chunked
  upload), from the moment the client starts it to the moment it has the
  response;
* the notification patterns (``short_polling``, ``long_polling``, ``sse``,
  ``push``, ``websocket``): one row per update *delivery* to a client (a
  broadcast gives one row per client it reached) and one row per update
  *lost* (``missed``: offline client, full client buffer, SSE drop without
  resume).

The models write them into the recorder's
:class:`~commsim.engine.recorder.Operations` (compact arrays, no Python
object per operation), and only when records are asked for
(``Recorder.records``): without ``--records`` a run is unchanged.

How they are obtained: after the experiment, each of its runs is simulated
once more, in this process, with its own resolved config and seed and with
recording switched on.  Same config + seed give the same run (the models are
deterministic), so the records are the operations of the run whose metrics
are in ``runs.csv`` (this is checked: the run's ``latency_mean`` and
``throughput`` must come out identical, else nothing is published and
``commsim run`` exits with status 1); the cost is one more simulation per
run.  One run's records are in memory at a time.  A failed run has no
records file.

Files (in the results folder, written through the staging folder like every
other file, flat beside runs.csv): ``records-p<point>-r<replication>.parquet``,
``<point>`` the index of the sweep point (0-based, in the order of runs.csv),
and ``records-units.csv`` (unit and meaning of every column).  A later run
without ``--records`` removes them, as it removes every stale result file.  Columns:
:data:`COLUMNS` (documented in docs/experiments.md).
"""

from __future__ import annotations

import math
from pathlib import Path

from commsim.engine.recorder import OP_KINDS, OUTCOMES
from commsim.errors import ConfigError

#: Patterns whose models write per-operation records.
RECORDING = ("request_response", "short_polling", "long_polling", "sse", "push", "websocket")

#: Record columns after the swept parameters: (name, unit, meaning).
COLUMNS = (
    ("replication", "1", "replication index (0-based)"),
    ("seed", "1", "the run's random seed"),
    ("op", "text", "operation kind: request (request_response) or update (notifications)"),
    ("client", "1", "client index (0-based)"),
    ("created", "s", "simulated time the operation began: request sent by the client / update "
                     "created at the server"),
    ("completed", "s", "simulated time it ended: response received / update arrived at the "
                       "client; null if it did not (unfinished, missed)"),
    ("latency", "s", "completed - created; null if not completed"),
    ("bytes", "B", "application bytes of the operation (request_response: headers and bodies of "
                   "every chunk, no handshakes or retransmissions; notifications: the "
                   "update's payload size)"),
    ("outcome", "text", "ok (response received), unfinished (no response by the end of the run), "
                        "delivered (update reached the client), missed (update lost)"),
    ("measured", "true/false", "created inside the measurement window [warmup, warmup + "
                               "duration): exactly the rows the run's latency metrics and "
                               "delivery counts are computed from"),
)

PREFIX = "records-"


def _pyarrow(flag: str):
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(flag, "needs pyarrow, which is not installed: "
                          "pip install 'commsim[parquet]' (or pyarrow)") from None
    return pyarrow


def check(exp, records: bool, parquet: bool) -> None:
    """Refuse, before anything runs, what cannot be written (exit 2)."""
    if records:
        patterns = sorted({p.config["pattern"] for p in exp.points})
        missing = [p for p in patterns if p not in RECORDING]
        if missing:
            raise ConfigError("--records", f"pattern {', '.join(missing)} does not write "
                              "per-operation records yet; records are written for "
                              f"{', '.join(RECORDING)}")
    if records or parquet:
        _pyarrow("--records" if records else "--parquet")


def simulate_recorded(config: dict, seed: int):
    """One run with recording on: ``(metrics, sim)``."""
    from commsim.engine import Simulation
    from commsim.experiment.runner import collect
    from commsim.patterns import registry

    pattern = registry()[config["pattern"]]
    sim = Simulation(config, seed)
    sim.recorder.records = True
    model = pattern.model(sim)
    sim.run()
    return collect(sim, model), sim


def table(sim, params: dict, replication: int, seed: int, types: dict | None = None):
    """The records of one finished run as a pyarrow Table."""
    import numpy as np
    import pyarrow as pa

    parts = [o for o in sim.recorder.operations.values() if len(o)]
    cat = (lambda name, dtype: np.concatenate([np.frombuffer(getattr(o, name), dtype=dtype)
                                               for o in parts]) if parts
           else np.empty(0, dtype=dtype))
    kind = cat("kind", np.int8)
    start = cat("start", np.float64)
    end = cat("end", np.float64)
    client = cat("client", np.int64)
    size = cat("size", np.int64)
    outcome = cat("outcome", np.int8)
    n = len(start)
    done = ~np.isnan(end)
    cols: dict = {}
    for k, v in params.items():
        cols[k] = pa.array([v] * n, type=(types or {}).get(k))
    cols["replication"] = pa.array(np.full(n, replication, dtype=np.int64))
    cols["seed"] = pa.array(np.full(n, seed, dtype=np.int64))
    cols["op"] = pa.DictionaryArray.from_arrays(pa.array(kind), pa.array(list(OP_KINDS)))
    cols["client"] = pa.array(client, mask=client < 0)
    cols["created"] = pa.array(start)
    cols["completed"] = pa.array(end, mask=~done)
    cols["latency"] = pa.array(end - start, mask=~done)
    cols["bytes"] = pa.array(size, mask=size < 0)
    cols["outcome"] = pa.DictionaryArray.from_arrays(pa.array(outcome), pa.array(list(OUTCOMES)))
    cols["measured"] = pa.array((start >= sim.start) & (start < sim.end))
    return pa.table(cols)


def _same(a, b) -> bool:
    try:
        return a == b or (math.isnan(a) and math.isnan(b))
    except TypeError:
        return False


def _runs_of_point(runs, params: dict):
    mask = None
    for k, v in params.items():
        if k not in runs.columns:
            continue
        m = runs[k].isna() if v is None else (runs[k] == v)
        mask = m if mask is None else (mask & m)
    return runs if mask is None else runs[mask]


def write_records(result, out_dir: Path) -> list[Path]:
    """Simulate every run of ``result`` again with records on and write
    ``records-p<i>-r<r>.parquet`` and ``records-units.csv`` into ``out_dir``
    (the staging folder)."""
    import pandas as pd
    import pyarrow.parquet as pq

    import pyarrow as pa

    from commsim.experiment.output import WriteError, atomic_write
    from commsim.rng import derive_run_seed

    exp = result.experiment
    folder = Path(out_dir)
    # One type per swept key over the whole sweep, so every file has the same
    # schema (a null value is a typed null): the files read back as one table.
    types = {k: pa.array([p.params.get(k) for p in exp.points]).type for k in exp.sweep}
    paths = []
    for i, point in enumerate(exp.points):
        rows = _runs_of_point(result.runs, point.params)
        for _, row in rows.iterrows():
            r = int(row["replication"])
            seed = derive_run_seed(point.config["seed"], r)  # (a row's int64 may be a float)
            metrics, sim = simulate_recorded(point.config, seed)
            for key in ("throughput", "latency_mean"):
                if key in row and not _same(metrics.get(key), row[key]):
                    raise WriteError(f"records of point {i} replication {r}: {key} "
                                     f"{metrics.get(key)!r} differs from the run's {row[key]!r}; "
                                     "the run is not reproducible (a bug: please report it); "
                                     "nothing was written")
            path = folder / f"{PREFIX}p{i}-r{r}.parquet"
            pq.write_table(table(sim, point.params, r, seed, types), path)
            paths.append(path)
            del sim
    from commsim.experiment.unitsfile import key_unit

    units = [{"column": k, "unit": key_unit(k)[0], "meaning": key_unit(k)[1]} for k in exp.sweep]
    units += [{"column": c, "unit": u, "meaning": m} for c, u, m in COLUMNS]
    upath = folder / f"{PREFIX}units.csv"
    atomic_write(upath, pd.DataFrame(units, columns=["column", "unit", "meaning"]).to_csv(index=False))
    paths.append(upath)
    return paths


def write_parquet_tables(result, out_dir: Path) -> list[Path]:
    """runs.parquet and summary.parquet beside the CSVs (same columns; units
    in units.csv)."""
    out_dir = Path(out_dir)
    paths = [out_dir / "runs.parquet", out_dir / "summary.parquet"]
    from commsim.experiment.tables import for_writing  # integers as integers, as in the CSVs

    params = list(result.experiment.sweep)
    for_writing(result.runs.drop(columns=["wall_s"], errors="ignore"), params).to_parquet(paths[0], index=False)
    for_writing(result.summary, params).to_parquet(paths[1], index=False)
    return paths
