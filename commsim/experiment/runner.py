"""Run an experiment: every sweep point times every replication.

Each run is independent: it gets a fresh :class:`~commsim.engine.Simulation`
built from its resolved config and its replication seed
(:func:`commsim.rng.derive_run_seed`).  Replication ``r`` of every sweep point
uses the same seed, so compared configurations see the same random workload
(common random numbers); replications use independent seeds.

A run's row carries its swept parameters, ``replication``, ``seed`` and every
metric the pattern reports (names checked against :mod:`commsim.metrics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from commsim.config import Experiment
from commsim.engine import Simulation
from commsim.metrics import METRICS
from commsim.patterns import registry
from commsim.rng import derive_run_seed


@dataclass
class Result:
    """What an experiment produced: one row per run, one per sweep point."""

    experiment: Experiment
    runs: pd.DataFrame
    summary: pd.DataFrame

    @property
    def params(self) -> list[str]:
        return list(self.experiment.sweep)


def simulate(config: dict, run_seed: int, tracer=None) -> tuple[dict, Simulation]:
    """Run one resolved config with one seed; returns (metrics, simulation)."""
    pattern = registry()[config["pattern"]]
    sim = Simulation(config, run_seed)
    if tracer is not None:
        tracer.attach(sim)
    model = pattern.model(sim)
    sim.run()
    metrics = model.metrics()
    unknown = [k for k in metrics if k not in METRICS]
    if unknown:
        raise RuntimeError(f"pattern {pattern.name!r} reported undefined metrics {unknown}; "
                           "define them in commsim/metrics")
    return metrics, sim


def run_point(config: dict, params: dict, replication: int) -> dict:
    """One replication of one sweep point, as a ``runs.csv`` row."""
    seed = derive_run_seed(config["seed"], replication)
    metrics, _ = simulate(config, seed)
    row: dict[str, Any] = dict(params)
    row["replication"] = replication
    row["seed"] = seed
    row.update(metrics)
    return row


def tasks(exp: Experiment) -> list[tuple[dict, dict, int]]:
    """Every (config, params, replication) of an experiment, in a fixed order."""
    return [(p.config, p.params, r) for p in exp.points for r in range(exp.replications)]


def run_experiment(exp: Experiment, progress: Callable[[int, int], None] | None = None) -> Result:
    """Run every task serially and summarise."""
    todo = tasks(exp)
    rows = []
    for i, (config, params, rep) in enumerate(todo):
        rows.append(run_point(config, params, rep))
        if progress:
            progress(i + 1, len(todo))
    return make_result(exp, rows)


def make_result(exp: Experiment, rows: list[dict]) -> Result:
    from commsim.experiment.stats import summarize

    runs = pd.DataFrame(rows)
    params = list(exp.sweep)
    metrics = [c for c in runs.columns if c in METRICS]
    summary = summarize(runs, params, metrics)
    return Result(experiment=exp, runs=runs, summary=summary)


def run(source, overrides=(), progress=None) -> Result:
    """Load a config (a YAML path or a dict) and run it: the Python API.

    >>> result = run("experiments/request_response.yaml")   # doctest: +SKIP
    >>> result.summary[["encoding", "latency_mean"]]        # doctest: +SKIP
    """
    from commsim.config import load

    return run_experiment(load(source, overrides), progress)


def is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
