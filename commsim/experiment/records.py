"""Per-operation records as Parquet (``commsim run --records``, ``records=``
in the Python API) and the results tables as Parquet (``--parquet``).

Records are one row per operation, for users' own CDFs and analyses:

* ``request_response``: one row per operation (a request, or a whole chunked
  upload), from the moment the client starts it to the moment it has the
  response;
* ``sync_async``: one row per request (retries included), sent to answered;
* ``multiplexing``: one row per page load (``page``) and one per object
  request (``request``); with the api workload one row per request;
* the notification patterns (``short_polling``, ``long_polling``, ``sse``,
  ``push``, ``websocket``): one row per update *delivery* to a client (a
  broadcast gives one row per client it reached) and one row per update
  *lost* (``missed``: offline client, full client buffer, SSE drop without
  resume);
* ``pubsub``: one row per publish (creation to confirm) and one per message
  copy a consumer processed (creation to the end of processing:
  ``delivered`` the first time, ``duplicate`` again) or lost (``missed``).
* ``stateful``: one row per client operation (an optional login, then one
  request; kinds request, login, relogin), outcome ok or the failure that
  ended it (reset, 503, 401, lost) (commsim.patterns.stateful.records);
* ``sidecar``: one row per client call, end to end (kind call), and one per
  try of any call in the mesh (kind try), outcome ok or error
  (commsim.patterns.sidecar.records).

The models write them into the recorder's
:class:`~commsim.engine.recorder.Operations` (compact arrays, no Python
object per operation), and only when records are asked for
(``Recorder.records``): without records a run is unchanged.

How they are obtained: *during* the run.  When records are asked for, each
run is simulated once, with recording on, in whichever executor runs it
(this process, a ``--jobs`` worker, a Dask worker); at the end of that run
the worker turns its operations into one Parquet file's bytes
(:func:`run_bytes`) and returns them with the run's metrics; the runner
hands them at once to a :class:`Sink`, which writes them into the staging
folder (atomically) and forgets them.  So at most the runs in flight hold
records in memory, never the whole experiment, and there is no second
simulation.  Runs in the run store (``.runs/``) carry no records, so with
records every run of the experiment is computed (once).  A failed run has no
records file.

Files (in the results folder, written through the staging folder like every
other file, flat beside runs.csv): ``records-p<point>-r<replication>.parquet``,
``<point>`` the index of the sweep point (0-based, in the order of runs.csv),
and ``records-units.csv`` (unit and meaning of every column).  A later run
without ``--records`` removes them, as it removes every stale result file.  Columns:
:data:`COLUMNS` (documented in docs/experiments.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from commsim.engine.recorder import OP_KINDS, OUTCOMES
from commsim.errors import ConfigError

#: Patterns whose models write per-operation records.
RECORDING = ("request_response", "short_polling", "long_polling", "sse", "push", "websocket",
             "pubsub", "stateful", "sidecar", "sync_async", "multiplexing")

#: Record columns after the swept parameters: (name, unit, meaning).
COLUMNS = (
    ("replication", "1", "replication index (0-based)"),
    ("seed", "1", "the run's random seed"),
    ("op", "text", "operation kind: request (request_response, sync_async, multiplexing's "
                   "objects and API requests; stateful without a login), update "
                   "(notifications), publish or delivery (pubsub), login, relogin (stateful), "
                   "call, try (sidecar), page (a multiplexing page load)"),
    ("client", "1", "client index (0-based; pubsub: publisher for publish, consumer for "
                    "delivery); null if none (a sidecar try between services)"),
    ("created", "s", "simulated time the operation began: request sent by the client / update "
                     "created at the server / message created at the publisher"),
    ("completed", "s", "simulated time it ended: response received / update arrived at the "
                       "client / publish confirmed, copy processed by the consumer; null if it "
                       "did not (unfinished, missed)"),
    ("latency", "s", "completed - created; null if not completed"),
    ("bytes", "B", "application bytes of the operation (request_response: headers and bodies of "
                   "every chunk, no handshakes or retransmissions; notifications: the "
                   "update's payload size; pubsub: the message size without header; stateful: "
                   "headers, token and bodies of its logins, requests and answers; sidecar: "
                   "request_size + response_size; sync_async: request and response bytes of "
                   "the answered exchange; multiplexing: headers as sent (after HPACK/QPACK) "
                   "and the response body, a page's summed over its objects, null until "
                   "answered)"),
    ("outcome", "text", "ok (response received, publish confirmed), unfinished (not by the end of "
                        "the run), delivered (update reached the client, copy first processed), "
                        "missed (update or copy lost), duplicate (copy processed again); stateful "
                        "failures reset, 503, 401, lost; sidecar error; sync_async retried "
                        "(answered after the client sent it again) and acked_lost (answered, "
                        "its acknowledged write lost at a later crash)"),
    ("measured", "true/false", "created inside the measurement window [warmup, warmup + "
                               "duration): exactly the rows the run's latency metrics and "
                               "delivery counts are computed from"),
)

PREFIX = "records-"
UNITS = f"{PREFIX}units.csv"


def file_name(point: int, replication: int) -> str:
    return f"{PREFIX}p{point}-r{replication}.parquet"


def _pyarrow(flag: str):
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(flag, "needs pyarrow, which is not installed: "
                          "pip install 'commsim[parquet]' (or pyarrow)") from None
    return pyarrow


def check(exp, records: bool, parquet: bool, flag: str = "--records") -> None:
    """Refuse, before anything runs, what cannot be written (exit 2)."""
    if records:
        patterns = sorted({p.config["pattern"] for p in exp.points})
        missing = [p for p in patterns if p not in RECORDING]
        if missing:
            raise ConfigError(flag, f"pattern {', '.join(missing)} does not write "
                              "per-operation records yet; records are written for "
                              f"{', '.join(RECORDING)}")
    if records or parquet:
        _pyarrow(flag if records else "--parquet")


def column_types(exp) -> dict:
    """One pyarrow type per swept key over the whole sweep, so every file has
    the same schema (a null value is a typed null): the files read back as
    one table.  Picklable: it travels with each job."""
    import pyarrow as pa

    return {k: pa.array([p.params.get(k) for p in exp.points]).type for k in exp.sweep}


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


def run_bytes(sim, params: dict, replication: int, seed: int, types: dict | None = None) -> bytes:
    """One finished run's records as the bytes of a Parquet file (made where
    the run ran, so only compressed bytes travel back to the runner)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = pa.BufferOutputStream()
    pq.write_table(table(sim, params, replication, seed, types), buf)
    return buf.getvalue().to_pybytes()


def units_table(exp):
    import pandas as pd

    from commsim.experiment.unitsfile import key_unit

    units = [{"column": k, "unit": key_unit(k)[0], "meaning": key_unit(k)[1]} for k in exp.sweep]
    units += [{"column": c, "unit": u, "meaning": m} for c, u, m in COLUMNS]
    return pd.DataFrame(units, columns=["column", "unit", "meaning"])


class Sink:
    """Where a run's records go as it finishes: ``records-p<i>-r<r>.parquet``
    in ``folder`` (a staging folder), each written atomically.

    ``put`` writes and forgets the bytes (memory stays at the runs in flight);
    ``finish`` adds ``records-units.csv`` and returns every path written.
    """

    def __init__(self, folder: Path, exp):
        self.folder = Path(folder)
        self.exp = exp
        self.types = column_types(exp)
        self.paths: list[Path] = []

    def put(self, point: int, replication: int, data: bytes) -> Path:
        from commsim.experiment.output import atomic_write

        path = self.folder / file_name(point, replication)
        atomic_write(path, data)
        self.paths.append(path)
        return path

    def finish(self) -> list[Path]:
        from commsim.experiment.output import atomic_write

        upath = self.folder / UNITS
        atomic_write(upath, units_table(self.exp).to_csv(index=False))
        return sorted(self.paths) + [upath]


class FolderSink(Sink):
    """``records=PATH`` in the Python API: the records go into a staging
    folder inside ``PATH`` and are moved into ``PATH`` only when the
    experiment finished (:meth:`publish`), replacing the records files there
    (only with ``force``; other files are never touched)."""

    def __init__(self, folder, exp, force: bool = False):
        from commsim.experiment import output

        target = Path(folder)
        if target.exists() and not target.is_dir():
            raise ConfigError("records", f"{str(target)!r} is a file, not a folder; pass a folder "
                              "(new or empty) for the records")
        old = self._records_files(target)
        if old and not force:
            raise ConfigError("records", f"{str(target)!r} already holds records "
                              f"({old[0].name}{' ...' if len(old) > 1 else ''}); choose another "
                              "folder, or pass force=True to replace them")
        self.target = target
        target.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=output.STAGING + "-records-", dir=target))
        super().__init__(self.stage, exp)

    @staticmethod
    def _records_files(folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(PREFIX))

    def publish(self) -> Path:
        """Move the staged files into the folder; stale records files (of
        runs no longer there) are removed.  Returns the folder."""
        new = {p.name for p in self.stage.iterdir() if p.is_file()}
        for old in self._records_files(self.target):
            if old.name not in new:
                os.unlink(old)
        for name in sorted(new, key=lambda n: n == UNITS):  # the units file last
            os.replace(self.stage / name, self.target / name)
        shutil.rmtree(self.stage, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)


def read(folder) -> "object":
    """Every records file of ``folder`` as one pandas DataFrame (in point and
    replication order)."""
    import re

    import pandas as pd

    folder = Path(folder)

    def order(p: Path):
        m = re.fullmatch(rf"{PREFIX}p(\d+)-r(\d+)\.parquet", p.name)
        return (int(m.group(1)), int(m.group(2))) if m else (1 << 62, 0)

    files = sorted(folder.glob(f"{PREFIX}p*-r*.parquet"), key=order)
    if not files:
        raise FileNotFoundError(f"no records files ({PREFIX}p<point>-r<replication>.parquet) "
                                f"in {str(folder)!r}")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


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
