"""A store of finished runs, so an interrupted or edited sweep resumes.

Every run that finishes is written at once, as one small JSON file
``<results>/.runs/<key>.json``, atomically (temporary file + rename): a
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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

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


class RunStore:
    """Finished runs of a results folder, one JSON file per run."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir) / STORE_DIR

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored record for ``key``, or None (missing or unreadable)."""
        try:
            text = self.path(key).read_text()
        except OSError:
            return None
        try:
            record = json.loads(text)
        except ValueError:  # pragma: no cover - atomic writes make this unlikely
            return None
        return record if record.get("key") == key else None

    def put(self, key: str, record: dict) -> None:
        record = dict(record, key=key)
        atomic_write(self.path(key), _dump(record))

    def keys(self) -> set[str]:
        if not self.dir.is_dir():
            return set()
        return {p.stem for p in self.dir.glob("*.json") if not p.name.startswith(".")}

    def __len__(self) -> int:
        return len(self.keys())

    def clear(self) -> None:
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                if p.suffix in (".json", ".tmp"):
                    os.unlink(p)


class MemoryStore(RunStore):
    """A store that lives only as long as the Python object (API default)."""

    def __init__(self):
        self._records: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        return self._records.get(key)

    def put(self, key: str, record: dict) -> None:
        self._records[key] = json.loads(_dump(dict(record, key=key)))

    def keys(self) -> set[str]:
        return set(self._records)

    def clear(self) -> None:
        self._records.clear()


def is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
