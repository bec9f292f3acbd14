"""Warm-up detection with MSER-5 (``warmup: auto``).

A simulation starts empty and idle, which is not its steady state; the
observations of the first moments bias every mean.  With ``warmup: auto``
the runner first makes one *pilot run* per sweep point (replication 0's
seed, no warm-up, the configured ``duration``), takes the pilot's output
series and truncates it with MSER-5:

* cut the series ``x_1..x_n`` into ``m = n // 5`` batch means ``Y_1..Y_m``
  of 5 consecutive observations;
* for each truncation point ``d`` in ``0 .. m/2``, compute
  ``MSER(d) = sum_{i>d} (Y_i - mean(Y_{d+1..m}))^2 / (m - d)^2``;
* keep the ``d*`` that minimises it: dropping the first ``5 d*``
  observations gives the narrowest (bias-adjusted) interval.

(K. P. White, M. J. Cobb, S. C. Spratt, "A comparison of five steady-state
truncation heuristics for simulation", WSC 2000; Hoad, Robinson & Davies,
"Automating warm-up length estimation", JORS 2010.)  A minimum at ``m/2``
means the pilot never settled: the run is too short or the system is
unstable (e.g. overloaded), and a warning says so.

The series is the pattern's ``model.warmup_series()`` if it defines one
(the notification patterns: each update's latency in order of arrival;
pub/sub: each message copy's latency to its consumer), otherwise the
latencies its client population recorded, in order of completion.  The truncated count is turned into simulated time in
proportion, ``warmup = duration * 5 d* / n`` (completions spread evenly over
the pilot; true in steady state, slightly pessimistic during a fill-up).

The warm-up used is the largest over the sweep points (one warm-up for the
whole experiment, so compared points are measured over the same window),
rounded up to two significant digits; it is written into
``config.resolved.yaml``, so the results can be reproduced with a fixed
warm-up.  Pilot outcomes are stored like runs, so a resumed experiment does
not repeat them.
"""

from __future__ import annotations

import math
import traceback

import numpy as np

BATCH = 5


def mser(series, batch: int = BATCH) -> tuple[int, int, bool]:
    """MSER-``batch`` truncation of ``series``.

    Returns ``(observations to drop, batch count m, settled)``; ``settled``
    is False when the minimum sits at the end of the allowed range (m/2),
    i.e. the series never reached a steady state.
    """
    x = np.asarray(series, dtype=float)
    x = x[~np.isnan(x)]
    m = x.size // batch
    if m < 4:
        raise ValueError(f"MSER-{batch} needs at least {4 * batch} observations, got {x.size}")
    y = x[: m * batch].reshape(m, batch).mean(axis=1)
    # Suffix sums give every tail's mean and sum of squares in O(m).
    s1 = np.cumsum(y[::-1])[::-1]
    s2 = np.cumsum((y * y)[::-1])[::-1]
    dmax = m // 2
    d = np.arange(dmax + 1)
    k = m - d
    sse = s2[d] - s1[d] ** 2 / k
    stat = np.maximum(sse, 0.0) / (k * k)
    best = int(np.argmin(stat))
    return best * batch, m, best < dmax


def output_series(model) -> list[float]:
    fn = getattr(model, "warmup_series", None)
    if callable(fn):
        return list(fn())
    clients = getattr(model, "clients", None)
    latencies = getattr(clients, "latencies", None)
    values = getattr(latencies, "values", None)
    if values is None:
        raise RuntimeError(f"{type(model).__name__} has no output series for MSER-5 (define "
                           "warmup_series() on the model, or set warmup to a fixed time)")
    return list(values)


def pilot(job) -> dict:
    """Executor function: one pilot run and its MSER-5 truncation."""
    from commsim.experiment.runner import simulate

    try:
        run = simulate(job.config, job.seed)
        sim, model = run.sim, run.model
        series = output_series(model)
        drop, m, settled = mser(series)
        n = len(series)
        warmup = sim.duration * drop / n
        return {"index": job.index, "ok": True, "n": n, "drop": drop, "batches": m,
                "settled": settled, "warmup": warmup}
    except Exception as exc:  # noqa: BLE001
        return {"index": job.index, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}


def round_up(x: float, digits: int = 2) -> float:
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x)) - digits + 1
    step = 10.0 ** e
    return float(f"{math.ceil(x / step - 1e-9) * step:.12g}")


def detect_warmup(exp, executor, store, progress) -> dict:
    """Run the pilots, pick the warm-up and write it into ``exp``."""
    from commsim.errors import ConfigError
    from commsim.experiment.executors import Job
    from commsim.experiment.store import run_key
    from commsim.rng import derive_run_seed

    results: dict[int, dict] = {}
    jobs, keys = [], {}
    for i, point in enumerate(exp.points):
        cfg = dict(point.config, warmup=0.0)
        seed = derive_run_seed(cfg["seed"], 0)
        key = run_key(cfg, seed) + "-mser5"
        rec = store.get(key)
        if rec is not None and "warmup" in rec:
            results[i] = rec
            continue
        jobs.append(Job(i, cfg, point.params, 0, seed))
        keys[i] = key
    if jobs:
        progress.message(f"detecting the warm-up (MSER-5): {len(jobs)} pilot run(s)")
    for out in executor.run(jobs, pilot):
        i = out["index"]
        if not out["ok"]:
            params = ", ".join(f"{k}={v}" for k, v in exp.points[i].params.items()) or "base config"
            raise ConfigError("warmup", f"'auto' could not detect a warm-up ({params}): {out['error']}")
        rec = {k: out[k] for k in ("n", "drop", "batches", "settled", "warmup")}
        store.put(keys[i], rec)
        results[i] = rec
    chosen = round_up(max(r["warmup"] for r in results.values()))
    exp.resolved["warmup"] = chosen
    for p in exp.points:
        p.config["warmup"] = chosen
    exp.warmup_auto = False  # resolved now
    unsettled = [exp.points[i].params for i, r in sorted(results.items()) if not r["settled"]]
    report = {"method": "MSER-5", "warmup": chosen,
              "points": [{**exp.points[i].params, **results[i]} for i in sorted(results)],
              "unsettled": unsettled}
    text = f"warm-up detected by MSER-5: {chosen:g} s (largest over {len(results)} sweep point(s))"
    progress.message(text)
    if unsettled:
        progress.message(f"warning: MSER-5 found no steady state for {len(unsettled)} point(s) "
                         f"(e.g. {unsettled[0] or 'base config'}): the run may be too short or the "
                         "system unstable")
    return report
