"""A store of finished runs, so an interrupted or edited sweep resumes.

Every run that finishes is written at once, as one small JSON file
``<results>/.runs/<key>.json`` (its metrics; for replication 0 of a pattern
with side tables also ``side``, the series its figures need:
:mod:`commsim.figures.sidetables`), atomically (temporary file + rename): a
killed process leaves at most a stray ``.*.tmp`` file, never a half-written
record, and the store ignores those.

The key is a SHA-256 of

* the run's resolved configuration, minus the keys that do not change what a
  single run computes (``name``, ``replications``, the base ``seed``, and the
  experiment-level ``plots`` and ``precision`` sections),
* the run's own seed (derived from the base seed and the replication number),
* a fingerprint of commsim's source code.

So re-running the same command computes only the runs that are missing;
changing a parameter recomputes exactly the runs whose resolved config
changed (other sweep points keep their key); adding replications reuses the
ones already done; and editing the simulator's code invalidates everything,
because a record is only as good as the code that produced it.

Damage (issue 11)
-----------------
A record carries a ``checksum`` (SHA-256 of its other fields), and is used
only if it is a JSON object with the expected fields and types, its key and
its checksum match.  Anything else (random bytes, ``null``, a list, a string
for ``metrics``, an edited value, a directory where a record should be) is
*damaged*: the store names it in a warning (``warn``), moves a directory out
of the way, and the runner recomputes that run; the fresh record replaces
the damaged one.  A ``.runs`` that is not a directory is a damaged *folder*:
:class:`ConfigError` naming it, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from commsim.errors import ConfigError
from commsim.experiment.output import atomic_write

#: Top-level keys that describe the experiment, not a single run.
NOT_IN_KEY = ("name", "replications", "seed", "plots", "precision", "sweep")

STORE_DIR = ".runs"


def _jsonable(value: Any) -> Any:
    """numpy scalars to Python; everything else as is (for ``json.dumps``)."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"cannot store value of type {type(value).__name__}: {value!r}")


def canonical(obj: Any) -> str:
    """Deterministic JSON text of plain data (sorted keys, exact floats)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable, allow_nan=True)


def _dump(record: dict) -> str:
    """Record text: key order kept (it is the column order of runs.csv)."""
    return json.dumps(record, default=_jsonable, allow_nan=True)


def normalise(metrics: dict) -> dict:
    """The form a metrics dict has after a store round trip.

    Fresh and stored runs both go through this, so ``runs.csv`` is identical
    whether a run was computed now, earlier, or in another process.
    """
    return json.loads(json.dumps(metrics, default=_jsonable, allow_nan=True))


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (16 hex digits) over commsim's Python sources, in path order."""
    import commsim

    root = Path(commsim.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(str(path.relative_to(root)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def run_key(config: dict, seed: int) -> str:
    """The store key of one run: its resolved config, its seed and the code."""
    essential = {k: v for k, v in config.items() if k not in NOT_IN_KEY}
    text = canonical({"config": essential, "seed": int(seed), "code": code_fingerprint()})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def checksum(record: dict) -> str:
    """SHA-256 (16 hex digits) of a record's fields other than ``checksum``."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()[:16]


def _number(v) -> bool:
    return v is None or isinstance(v, (int, float)) and not isinstance(v, bool)


def _problem(record: Any, key: str) -> str | None:
    """Why ``record`` (parsed JSON) is not a valid record for ``key``, or None.

    A run's record has ``metrics`` (names to numbers), ``replication`` and
    ``seed``; other records (e.g. warm-up pilots, keys ending ``-mser5``)
    only the common checks: a mapping, its key, its checksum.
    """
    if not isinstance(record, dict):
        return f"holds a JSON {'null' if record is None else type(record).__name__}, not a record"
    if record.get("key") != key:
        return "its key does not match its file name"
    if "-" not in key:  # a run
        metrics = record.get("metrics")
        if not isinstance(metrics, dict):
            return f"its 'metrics' is a {type(metrics).__name__}, not a mapping"
        bad = [k for k, v in metrics.items() if not _number(v)]
        if bad:
            return f"metric {bad[0]!r} is not a number"
        if not isinstance(record.get("replication"), int) or not isinstance(record.get("seed"), int):
            return "its replication or seed is missing"
        if not _number(record.get("wall_s", 0.0)):
            return "its wall_s is not a number"
        if not isinstance(record.get("side", {}), (dict, type(None))):
            return "its side series is not a mapping"
    elif "warmup" in record and not _number(record["warmup"]):
        return "its warmup is not a number"
    if record.get("checksum") != checksum(record):
        return "its checksum does not match its contents (edited or corrupted)"
    return None


def _warn_stderr(text: str) -> None:
    import sys

    print(text, file=sys.stderr)


class RunStore:
    """Finished runs of a results folder, one JSON file per run.

    ``warn(text)`` is told about every damaged record (default: stderr);
    :attr:`damaged` lists their file names.
    """

    def __init__(self, out_dir: str | Path, warn=None):
        self.dir = Path(out_dir) / STORE_DIR
        self.warn = warn or _warn_stderr
        self.damaged: list[str] = []

    def check(self) -> None:
        """Raise :class:`ConfigError` if the store's folder is damaged (exists
        but is not a directory); call before anything runs."""
        if self.dir.exists() and not self.dir.is_dir() or self.dir.is_symlink() and not self.dir.exists():
            raise ConfigError("--out", f"{str(self.dir)!r} should be commsim's folder of stored runs "
                              "but is not a directory; move it away (or delete it) and run again")

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def _damaged(self, key: str, why: str) -> None:
        path = self.path(key)
        self.damaged.append(path.name)
        self.warn(f"warning: stored run {path} is damaged ({why}); computing that run again")

    def get(self, key: str) -> dict | None:
        """The stored record for ``key``, or None (missing or damaged: a damaged
        one is reported through ``warn``)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            aside = path.with_name(f".{path.name}.damaged")
            try:
                os.replace(path, aside)
                moved = f"moved to {aside.name}"
            except OSError:
                moved = "could not be moved aside"
            self._damaged(key, f"a directory, {moved}")
            return None
        except OSError as exc:
            self._damaged(key, f"unreadable: {exc.strerror}")
            return None
        try:
            record = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._damaged(key, "not JSON text")
            return None
        why = _problem(record, key)
        if why is not None:
            self._damaged(key, why)
            return None
        return record

    def put(self, key: str, record: dict) -> None:
        from commsim.experiment.output import WriteError

        record = dict(record, key=key)
        record["checksum"] = checksum(record)
        try:
            atomic_write(self.path(key), _dump(record))
        except OSError as exc:
            raise WriteError(f"cannot store a finished run in {str(self.dir)!r}: {exc.strerror}; "
                             f"the runs stored so far ({len(self)}) are kept: fix that and run the "
                             "same command again to compute only the missing ones") from None

    def keys(self) -> set[str]:
        if not self.dir.is_dir():
            return set()
        return {p.stem for p in self.dir.glob("*.json") if not p.name.startswith(".")}

    def __len__(self) -> int:
        return len(self.keys())

    def clear(self) -> None:
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                if p.suffix in (".json", ".tmp") and p.is_file():
                    os.unlink(p)


class MemoryStore(RunStore):
    """A store that lives only as long as the Python object (API default)."""

    def __init__(self):
        self._records: dict[str, dict] = {}
        self.damaged: list[str] = []

    def check(self) -> None:
        pass

    def get(self, key: str) -> dict | None:
        return self._records.get(key)

    def put(self, key: str, record: dict) -> None:
        self._records[key] = json.loads(_dump(dict(record, key=key)))

    def keys(self) -> set[str]:
        return set(self._records)

    def clear(self) -> None:
        self._records.clear()
