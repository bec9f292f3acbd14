"""Helpers shared by the validation tests (imported as ``helpers``; pytest puts
``tests/`` on the path)."""

import copy
import math
import sys
from contextlib import contextmanager

import numpy as np

from commsim.config import load
from commsim.experiment.stats import t_quantile


def within_t(values, expected, rel_width):
    """Assert the 99% Student-t interval of ``values`` (independent
    replications) contains ``expected`` and is narrower than ``rel_width``
    times it, so a model error of that size cannot hide behind a wide
    interval.  Returns the half-width."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    half = t_quantile(0.995, n - 1) * values.std(ddof=1) / math.sqrt(n)
    assert half < rel_width * expected, f"interval too wide: +/-{half:.3g} vs {expected:.3g}"
    assert abs(values.mean() - expected) <= half, (
        f"mean {values.mean():.6g} vs theory {expected:.6g} (99% half-width {half:.3g})")
    return half


def resolved(base: dict, **sections) -> dict:
    """The resolved run config of ``base`` with sections updated (dicts are
    merged into the section, other values replace the key)."""
    raw = copy.deepcopy(base)
    for name, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(name, {}).update(values)
        else:
            raw[name] = values
    return load(raw).points[0].config


def balanced(m: dict) -> None:
    """The message ledger of one run balances: every message sent was
    delivered, dropped (given up on) or is still in flight at the end."""
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"], m


def same(a: dict, b: dict) -> None:
    """Two runs' metrics are identical, key by key (NaN equals NaN)."""
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert v == b[k] or (isinstance(v, float) and math.isnan(v) and math.isnan(b[k])), k


def same_but_events(fast: dict, ref: dict, reordered=()) -> None:
    """A fast path's metrics against the path it replaces: every metric
    equal except ``events``; those in ``reordered`` (sums of times added in
    another order) equal to a relative 1e-12 (the last bits of a double),
    and so is every float from CPython 3.12 on, whose ``sum()`` is
    compensated (the run-ahead CPU sums per batch with it).  The ledger of
    the fast path balances."""
    assert fast.keys() == ref.keys()
    loose = set(reordered)
    for key in sorted(fast):
        a, e = fast[key], ref[key]
        if key == "events":
            continue
        if isinstance(e, float) and math.isnan(e):
            assert isinstance(a, float) and math.isnan(a), (key, a, e)
        elif isinstance(e, float) and (key in loose or sys.version_info >= (3, 12)):
            assert math.isclose(a, e, rel_tol=1e-12, abs_tol=0.0), (key, a, e)
        else:
            assert a == e, (key, a, e)
    balanced(fast)


def stops_exactly(ahead: dict, ref: dict, reordered=(), in_service_rel: float = 0.0) -> None:
    """A run stopped by ``max_run_queue`` on a run-ahead path and on the
    general path: both stopped at the same instant with the same metrics
    (:func:`same_but_events`), but for the CPU's two means that count the
    jobs in service at the stop: the run-ahead CPU accounts a job's
    completion when it starts, so those (one per core) count as completed
    and present up to their finish; ``in_service_rel`` is the caller's
    bound on what that moves them."""
    import pytest

    assert ahead["stopped"] == ref["stopped"] == 1
    ahead = dict(ahead)
    for key in ("server_jobs_mean", "server_sojourn_mean"):
        assert ahead[key] == pytest.approx(ref[key], rel=in_service_rel), key
        ahead[key] = ref[key]
    same_but_events(ahead, ref, reordered)


def notification_cfg(pattern: str, count=60, rate=2.0, latency=0.02, duration=8.0, warmup=1.0,
                     **sections) -> dict:
    """A small notification-pattern config: ``count`` clients, ``rate``
    updates/s each, constant ``latency`` each way, 2 cores of exponential
    2 ms service; ``sections`` update the named sections."""
    cfg = {"pattern": pattern, "duration": duration, "warmup": warmup,
           "clients": {"count": count},
           "network": {"latency": latency},
           "server": {"cores": 2, "service_time": {"dist": "exponential", "mean": "2ms"}},
           "workload": {"event_rate": rate}}
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


def records_serial_and_parallel(config_path, tmp_path, files: int):
    """Run ``config_path`` with ``--records`` serially and with ``--jobs 2``;
    assert the same ``files`` records files (parquet parts and units),
    identical part by part, and the same runs.csv.  Returns the serial
    folder's records as one DataFrame (``commsim.experiment.records.read``)."""
    import pandas as pd

    from commsim.cli import main
    from commsim.experiment import records

    stem = config_path.stem
    a, b = tmp_path / f"{stem}-serial", tmp_path / f"{stem}-jobs2"
    assert main(["run", str(config_path), "--out", str(a), "--quiet", "--records"]) == 0
    assert main(["run", str(config_path), "--out", str(b), "--quiet", "--records",
                 "--jobs", "2"]) == 0
    names = sorted(p.name for p in a.glob("records-*"))
    assert names == sorted(p.name for p in b.glob("records-*")) and len(names) == files
    for name in names:
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name))
    assert (a / "runs.csv").read_text() == (b / "runs.csv").read_text()
    df = records.read(a)
    pd.testing.assert_frame_equal(df, records.read(b))
    return df, a


@contextmanager
def event_driven():
    """Models built inside take their event-driven paths: the run-ahead modes
    (short polling, long polling, SSE and push) end at the window's end and refuse to go on,
    so a run continued past its window (a "drain") is built here.  Their
    metrics at the end equal run-ahead's (tests/test_polling_ahead.py,
    tests/test_streaming_ahead.py, tests/test_long_polling_ahead.py)."""
    from commsim.patterns.notifications import long_polling, streaming
    from commsim.patterns.notifications.polling import ShortPolling

    can, ahead, lp = ShortPolling._can_run_ahead, streaming.RUN_AHEAD, long_polling.RUN_AHEAD
    ShortPolling._can_run_ahead = lambda self: False
    streaming.RUN_AHEAD = long_polling.RUN_AHEAD = False
    try:
        yield
    finally:
        ShortPolling._can_run_ahead, streaming.RUN_AHEAD, long_polling.RUN_AHEAD = can, ahead, lp


def duration_for(cfg: dict, seconds_per_run: float, probe_s: float = 200.0) -> str:
    """A ``duration`` for the one-point config ``cfg`` (its sweep and
    replications are ignored) whose run costs about ``seconds_per_run`` of
    wall time on this machine, at this code's speed.

    Measured, not assumed: a test that kills a sweep "mid-way" with a fixed
    duration stops being mid-way the day the simulator gets faster (how the
    interrupted-sweep test once failed in CI: all 8 runs were stored before
    the first poll of the store).  Clamped to [4 s, 1 h] of simulated time."""
    from commsim.experiment.runner import run_experiment

    probe = {k: v for k, v in cfg.items() if k != "sweep"}
    probe.update(duration=f"{probe_s:g}s", replications=1)
    wall = float(run_experiment(load(probe)).timings["wall_s"].iloc[0])
    return f"{min(3600.0, max(4.0, probe_s * seconds_per_run / max(wall, 1e-6))):.0f}s"
