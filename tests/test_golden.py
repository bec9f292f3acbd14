"""Golden results: every committed experiment, shortened, gives exactly the
metrics stored in ``tests/golden/<experiment>.json``.

This pins the whole model before a refactor: where the model is unchanged the
same streams and the same event order give bit-identical metrics, so any
difference is either a bug or an intended change.  An intended change (a hop
that now applies loss, say) is made deliberately:

    COMMSIM_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/test_golden.py

and the commit that changes a stored copy says which metrics moved and why.

Every sweep point of every ``experiments/*.yaml`` runs once (replication 0)
with ``duration`` 2 s, ``warmup`` 0.5 s and at most 100 clients, so the whole
file runs in seconds while still exercising each pattern's code paths.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from commsim.config import load
from commsim.experiment.runner import simulate
from commsim.rng import derive_run_seed

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
OVERRIDES = ["replications=1", "duration=2s", "warmup=0.5s"]
MAX_CLIENTS = 100
UPDATE = os.environ.get("COMMSIM_GOLDEN_UPDATE") == "1"


def shortened_runs(path: Path) -> dict[str, dict]:
    """{point label: metrics} for every sweep point of one experiment."""
    exp = load(path, OVERRIDES)
    out = {}
    for point in exp.points:
        config = point.config
        clients = config.get("clients")
        if clients and clients.get("count", 0) > MAX_CLIENTS:
            clients["count"] = MAX_CLIENTS
        metrics, _ = simulate(config, derive_run_seed(config["seed"], 0))
        label = json.dumps(point.params, sort_keys=True, default=str)
        assert label not in out, f"two sweep points share the label {label}"
        out[label] = {k: (float(v) if isinstance(v, (int, float)) else v)
                      for k, v in sorted(metrics.items())}
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_golden(path: Path):
    got = shortened_runs(path)
    stored = GOLDEN / f"{path.stem}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        stored.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"updated {stored.name}")
    assert stored.exists(), (f"no golden copy for {path.name}; create it with "
                             "COMMSIM_GOLDEN_UPDATE=1")
    want = json.loads(stored.read_text())
    assert sorted(got) == sorted(want), "the sweep points differ from the golden copy"
    diffs = []
    for label in want:
        g, w = got[label], want[label]
        for key in sorted(set(g) | set(w)):
            if key not in g or key not in w or not _same(g[key], w[key]):
                diffs.append(f"{label} {key}: golden {w.get(key)!r}, now {g.get(key)!r}")
    assert not diffs, f"{len(diffs)} metric(s) differ:\n" + "\n".join(diffs[:40])
