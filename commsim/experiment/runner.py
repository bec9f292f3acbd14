"""Run an experiment: every sweep point times every replication.

Each run is independent: it gets a fresh :class:`~commsim.engine.Simulation`
built from its resolved config and its replication seed
(:func:`commsim.rng.derive_run_seed`).  Replication ``r`` of every sweep point
uses the same seed, so compared configurations see the same random workload
(common random numbers); replications use independent seeds.

A run's row carries its swept parameters, ``replication``, ``seed`` and every
metric the pattern reports (names checked against :mod:`commsim.metrics`).

Scale (issue 7)
---------------
* Runs execute on an executor (:mod:`.executors`): serially, in ``jobs``
  local processes, or on a Dask cluster.  Rows are put back in task order
  (sweep point, then replication), so ``runs.csv`` is the same whatever ran
  it.  Wall-clock times are kept apart (:attr:`Result.timings`), since they
  are never reproducible.
* Every finished run goes at once into a store (:mod:`.store`) keyed by its
  resolved config, seed and the code; runs found there are not recomputed.
* A run that raises is reported in :attr:`Result.failures` with its
  parameters; the other runs go on.
* With a precision target (:mod:`.precision`) replications are added, in
  waves, until every sweep point's 95 % half-width is small enough or a cap
  is reached.  Waves are decided from finished results only, so the set of
  runs is deterministic too.
* ``warmup: auto`` is resolved by MSER-5 on pilot runs (:mod:`.warmup`)
  before the experiment runs.

Errors (issue 11)
-----------------
* A bad ``jobs`` or ``executor`` is a :class:`~commsim.errors.ConfigError`.
* If *every* run failed, :class:`ExperimentFailed` is raised (its
  ``result`` holds the failures), so the API never returns 0 rows quietly.
* Out of memory, a dead worker process or a lost Dask scheduler stop the
  experiment with :class:`~commsim.experiment.executors.RunAborted`; what
  finished is in the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from commsim.config import Experiment
from commsim.engine import Simulation
from commsim.metrics import METRICS
from commsim.patterns import registry
from commsim.rng import derive_run_seed

if TYPE_CHECKING:  # pandas is imported where tables are built: `import commsim` stays lean (issue 14)
    import pandas as pd


@dataclass
class Result:
    """What an experiment produced: one row per run, one per sweep point.

    ``failures`` lists runs that raised (their parameters, replication, seed
    and error); ``timings`` has each run's wall-clock seconds and whether it
    was computed now or taken from the store; ``computed`` and ``reused``
    count those; ``warmup`` describes a detected warm-up and ``precision``
    the precision target's outcome per sweep point (or None).  ``records``
    is the folder of the per-operation records (``records=`` in
    :func:`run_experiment`; read them with :meth:`read_records`), else None;
    ``side`` the series replication 0 of each sweep point recorded for the
    figures (``{point index: data}``; :mod:`commsim.figures.sidetables`).
    """

    experiment: Experiment
    runs: pd.DataFrame
    summary: pd.DataFrame
    failures: list[dict] = field(default_factory=list)
    timings: pd.DataFrame | None = None
    computed: int = 0
    reused: int = 0
    warmup: dict | None = None
    precision: dict | None = None
    records: Any = None
    side: dict = field(default_factory=dict)

    @property
    def params(self) -> list[str]:
        return list(self.experiment.sweep)

    def plot(self, out_dir=None, formats=("png",)):
        """Draw this result's figures from its tables (no simulation) into
        ``out_dir`` (default a new temporary folder); returns their paths,
        shown inline in a notebook.  See :func:`commsim.figures.plot`."""
        from commsim.figures import plot

        return plot(self, out_dir, formats)

    def read_records(self) -> pd.DataFrame:
        """Every per-operation record of this result, as one DataFrame
        (columns in docs/experiments.md, "Per-operation records")."""
        if self.records is None:
            raise ValueError("this result has no records: run with records=True (or a folder)")
        from commsim.experiment.records import read

        return read(self.records)


class ExperimentFailed(RuntimeError):
    """Every run of an experiment failed; ``result`` holds the failures."""

    def __init__(self, result: "Result"):
        self.result = result
        first = result.failures[0]["error"] if result.failures else "?"
        super().__init__(f"every run failed ({len(result.failures)} run(s); the first: {first}); "
                         "see result.failures for each run's parameters and traceback")


def check_jobs(jobs) -> int:
    from commsim.errors import ConfigError

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError("jobs", f"got {jobs!r}; expected a positive number of processes "
                          "(0: one per core)")
    if jobs == 0:
        from commsim.experiment.executors import default_jobs

        return default_jobs()
    return jobs


class SimRun(tuple):
    """What :func:`simulate` returns: unpacks as ``(metrics, sim)``; also
    ``.metrics``, ``.sim``, ``.model`` and ``.series`` (the recorder's time
    series, ``{name: (times, values)}``)."""

    def __new__(cls, metrics: dict, sim: Simulation, model: Any):
        self = super().__new__(cls, (metrics, sim))
        self.metrics, self.sim, self.model = metrics, sim, model
        self.series = {k: (s.t, s.values) for k, s in sim.recorder.series.items()}
        return self


def collect(sim: Simulation, model) -> dict:
    """A finished run's metrics: the model's own plus the standard ones
    (bytes, message ledger, events) from the recorder; every name checked
    against :mod:`commsim.metrics`."""
    metrics = model.metrics()
    # A model without in_flight() still reports the standard metrics itself.
    if hasattr(model, "in_flight"):
        for key, value in sim.recorder.standard_metrics(model.in_flight()).items():
            metrics.setdefault(key, value)
    # max_run_queue: 1 and the time when a run queue stopped the run, else 0 and the window's end
    metrics["stopped"] = int(sim.stopped)
    metrics["stopped_at"] = sim.env.now
    unknown = [k for k in metrics if k not in METRICS]
    if unknown:
        raise RuntimeError(f"pattern {sim.config['pattern']!r} reported undefined metrics "
                           f"{unknown}; define them in commsim/metrics")
    return metrics


def simulate(config: dict, run_seed: int, tracer=None, watch=None, records: bool = False) -> SimRun:
    """Build, run and collect one resolved config with one seed: the one
    place a simulation is run.  Returns a :class:`SimRun` (unpacks as
    ``(metrics, sim)``; ``.model``, ``.series``).

    ``records``: the models keep one record per operation in the recorder's
    ``Operations`` (``sim.recorder.operations``; :mod:`.records`).

    ``watch(sim)``, if given, returns a context manager held while the
    simulation runs (used to report its simulated clock; it must not schedule
    events).
    """
    import time

    from commsim.experiment.executors import collect_garbage

    t0 = time.perf_counter()
    try:
        return _simulate(config, run_seed, tracer, watch, records)
    finally:
        # The garbage of earlier runs (this one is still referenced): memory
        # stays flat over any number of runs (issue 11).
        collect_garbage(time.perf_counter() - t0)


def _simulate(config: dict, run_seed: int, tracer, watch, records=False) -> tuple[dict, Simulation]:
    pattern = registry()[config["pattern"]]
    sim = Simulation(config, run_seed)
    if records:
        sim.recorder.records = True
    if tracer is not None:
        tracer.attach(sim)
    model = pattern.model(sim)
    if watch is None:
        sim.run()
    else:
        with watch(sim):
            sim.run()
    return SimRun(collect(sim, model), sim, model)


def _as_progress(progress):
    from commsim.experiment.progress import Progress, Quiet

    if progress is None or progress is False:
        return Quiet()
    if progress is True:  # a bar on a terminal, a live line in a notebook, lines otherwise
        return Progress()
    if isinstance(progress, Progress):
        return progress

    class _Callback(Quiet):  # the old progress(done, total) callback
        def run_done(self, index=None, ok=True, label=""):
            super().run_done(index, ok, label)
            progress(self.done, self.total)

    return _Callback()


def run_experiment(exp: Experiment, progress: Callable[[int, int], None] | Any = None, *,
                   jobs: int = 1, executor: Any = "auto", scheduler: Any = None,
                   store=None, precision=None, records: Any = None, force: bool = False) -> Result:
    """Run every task of ``exp`` and summarise.

    Parameters
    ----------
    progress:
        a :class:`~commsim.experiment.progress.Progress`, or a
        ``progress(done, total)`` callback, or None.
    jobs, executor, scheduler:
        where runs execute (see :func:`commsim.experiment.executors.make_executor`);
        ``executor`` may also be an executor object.
    store:
        a :class:`~commsim.experiment.store.RunStore` of finished runs (runs
        found there are reused, new ones added as they finish); default: an
        in-memory store.
    precision:
        a :class:`~commsim.experiment.precision.Precision` target (default:
        the experiment's ``precision`` section, if any).
    records:
        per-operation records (:mod:`.records`), taken from each run as it
        finishes (no second simulation): ``True`` writes them into a new
        temporary folder, a path into that folder (``records-p<point>-r<rep>.parquet``
        and ``records-units.csv``, moved in when the experiment finished;
        records already there are replaced only with ``force=True``), a
        :class:`~commsim.experiment.records.Sink` into it (``commsim run``).
        ``Result.records`` is then the folder; ``Result.read_records()`` reads it.

    >>> result = run_experiment(load("experiments/request_response.yaml"), records=True)  # doctest: +SKIP
    >>> result.read_records().groupby("outcome").latency.describe()                       # doctest: +SKIP
    """
    from commsim.experiment.executors import make_executor
    from commsim.experiment.precision import Precision
    from commsim.experiment.store import MemoryStore

    own = not hasattr(executor, "run")
    if own:
        jobs = check_jobs(jobs)
    sink, own_sink = _records_sink(exp, records, force)  # refused before anything starts
    prog = _as_progress(progress)
    store = store if store is not None else MemoryStore()
    try:
        ex = make_executor(executor, jobs, scheduler, prog.sim_time) if own else executor
        if precision is None:
            precision = Precision.from_config(exp.resolved.get("precision"))
    except BaseException:
        if own_sink:
            sink.discard()
        raise
    state = _State(exp, store, prog, sink)
    warmup_report = None
    try:
        if getattr(exp, "warmup_auto", False):
            from commsim.experiment.warmup import detect_warmup

            warmup_report = detect_warmup(exp, ex, store, prog)
        n0 = exp.replications if precision is None else max(exp.replications, precision.min_replications)
        reps = {i: n0 for i in range(len(exp.points))}
        first = True
        while True:
            wanted = [(i, r) for i in range(len(exp.points)) for r in range(reps[i])
                      if (i, r) not in state.outcomes and (i, r) not in state.failed]
            state.wave(ex, wanted, first)
            first = False
            if precision is None:
                break
            more = precision.more(exp, state.metrics_by_point(), state.failed_points(), reps)
            if not more:
                break
            reps.update(more)
    except BaseException:
        if own_sink:
            sink.discard()
        raise
    finally:
        if own:
            ex.close()
        prog.close()
    result = state.result()
    if own_sink:
        if result.runs.empty:
            sink.discard()
        else:
            sink.finish()
            result.records = sink.publish()
    result.warmup = warmup_report
    if precision is not None:
        result.precision = precision.report(exp, result.summary)
    if result.failures and result.runs.empty:
        raise ExperimentFailed(result)
    return result


def _records_sink(exp: Experiment, records, force: bool):
    """``(sink, own)`` for ``records=`` of :func:`run_experiment`."""
    from commsim.experiment import records as op_records

    if records is None or records is False:
        return None, False
    if isinstance(records, op_records.Sink) and not isinstance(records, op_records.FolderSink):
        return records, False
    op_records.check(exp, True, False, flag="records")
    if records is True:
        import tempfile

        records = tempfile.mkdtemp(prefix="commsim-records-")
    elif not isinstance(records, (str, bytes)) and not hasattr(records, "__fspath__"):
        from commsim.errors import ConfigError

        raise ConfigError("records", f"got {records!r}; expected True, False or a folder")
    return op_records.FolderSink(records, exp, force=force), True


class _State:
    """Outcomes of the runs of one experiment, as they arrive."""

    def __init__(self, exp: Experiment, store, prog, sink=None):
        self.exp = exp
        self.store = store
        self.prog = prog
        self.sink = sink  # per-operation records of each run, as it finishes
        self.types = sink.types if sink is not None else None
        self.outcomes: dict[tuple[int, int], dict] = {}
        self.failed: dict[tuple[int, int], dict] = {}
        self.timing: dict[tuple[int, int], tuple[float, bool]] = {}
        self.computed = 0
        self.reused = 0
        self._next_index = 0
        from commsim import humanize

        self.written = humanize.written_values(exp)  # progress labels show swept values as written

    def wave(self, ex, wanted: list[tuple[int, int]], first: bool) -> None:
        from commsim import humanize
        from commsim.experiment.executors import Job
        from commsim.experiment.store import run_key
        from commsim.figures import sidetables

        jobs: list[Job] = []
        meta: dict[int, tuple[tuple[int, int], str]] = {}
        reused = 0
        for i, r in wanted:
            point = self.exp.points[i]
            seed = derive_run_seed(point.config["seed"], r)
            key = run_key(point.config, seed)
            side = sidetables.wanted(point.config, r)
            # The store keeps no records: with records, every run is computed (once).
            record = self.store.get(key) if self.sink is None else None
            if record is not None and side and "side" not in record:
                record = None  # stored before side series were kept: compute it with them
            if record is not None:
                self.outcomes[(i, r)] = record
                self.timing[(i, r)] = (float(record.get("wall_s", math.nan)), True)
                reused += 1
                continue
            job = Job(self._next_index, point.config, point.params, r, seed, self.types, side)
            self._next_index += 1
            jobs.append(job)
            meta[job.index] = ((i, r), key)
        self.reused += reused
        if first:
            self.prog.start(len(wanted), reused)
        elif wanted:
            self.prog.grow(len(wanted), reused)
        if not jobs:
            return
        outcomes = ex.run(jobs)
        try:
            for out in outcomes:
                self._take(out, meta)
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:
                close()  # an abandoned executor generator stops its workers

    def _take(self, out: dict, meta: dict) -> None:
        from commsim import humanize
        from commsim.experiment.executors import RunAborted

        (i, r), key = meta[out["index"]]
        point = self.exp.points[i]
        label = ", ".join(f"{k}={humanize.param(k, v, self.written)}" for k, v in point.params.items())
        label = f"{label + ', ' if label else ''}replication={r}"
        if out.get("fatal"):
            raise RunAborted(f"{out['error']} ({label})")
        if out["ok"]:
            from commsim.experiment.store import normalise

            record = {"replication": r, "seed": derive_run_seed(point.config["seed"], r),
                      "metrics": normalise(out["metrics"]), "wall_s": out["wall_s"]}
            if "side" in out:
                record["side"] = normalise(out["side"]) if out["side"] is not None else None
            data = out.pop("records", None)
            if data is not None and self.sink is not None:
                self.sink.put(i, r, data)  # written now, then forgotten
            del data
            self.store.put(key, record)
            self.outcomes[(i, r)] = record
            self.timing[(i, r)] = (out["wall_s"], False)
            self.computed += 1
        else:
            failure = dict(point.params)
            failure.update(replication=r, seed=derive_run_seed(point.config["seed"], r),
                           error=out["error"], traceback=out.get("traceback", ""))
            self.failed[(i, r)] = failure
            self.prog.message(f"run failed ({label}): {out['error']}")
        self.prog.run_done(out["index"], out["ok"], label)

    def metrics_by_point(self) -> dict[int, list[dict]]:
        by: dict[int, list[dict]] = {}
        for (i, _r), rec in sorted(self.outcomes.items()):
            by.setdefault(i, []).append(rec["metrics"])
        return by

    def failed_points(self) -> set[int]:
        return {i for i, _r in self.failed}

    def result(self) -> Result:
        rows, timing_rows = [], []
        for (i, r) in sorted(self.outcomes):
            rec = self.outcomes[(i, r)]
            params = self.exp.points[i].params
            row: dict[str, Any] = dict(params)
            row["replication"] = r
            row["seed"] = derive_run_seed(self.exp.points[i].config["seed"], r)
            row.update(rec["metrics"])
            rows.append(row)
            wall, reused = self.timing[(i, r)]
            timing_rows.append({**params, "replication": r, "wall_s": wall, "reused": reused})
        result = make_result(self.exp, rows)
        result.failures = [self.failed[k] for k in sorted(self.failed)]
        import pandas as pd

        result.timings = pd.DataFrame(timing_rows)
        result.computed = self.computed
        result.reused = self.reused
        result.side = {i: rec["side"] for (i, r), rec in sorted(self.outcomes.items())
                       if r == 0 and rec.get("side") is not None}
        return result


def make_result(exp: Experiment, rows: list[dict]) -> Result:
    """Build a :class:`Result` from ``runs.csv`` rows (a ``wall_s`` column,
    as the executors add, goes to ``timings``)."""
    import pandas as pd

    from commsim.experiment.stats import summarize

    runs = pd.DataFrame(rows)
    timings = None
    if "wall_s" in runs.columns:
        keep = [c for c in [*exp.sweep, "replication"] if c in runs.columns]
        timings = runs[[*keep, "wall_s"]].copy()
        runs = runs.drop(columns=["wall_s"])
    params = list(exp.sweep)
    metrics = [c for c in runs.columns if c in METRICS]
    if runs.empty:
        summary = pd.DataFrame(columns=[*params, "replications"])
    else:
        summary = summarize(runs, params, metrics)
    from commsim.experiment.stability import assess  # steady-state flags (issue 12)

    summary = assess(summary, exp)
    return Result(experiment=exp, runs=runs, summary=summary, timings=timings)


def run(source, overrides=(), progress=None, *, allow_large: bool = False, **options) -> Result:
    """Load a config (a YAML path or a dict) and run it: the Python API.

    ``options`` are those of :func:`run_experiment` (``jobs``, ``executor``,
    ``scheduler``, ``store``, ``precision``, ``records``, ``force``);
    ``allow_large`` runs beyond the work limits (:mod:`commsim.config.estimate`).

    >>> result = run("experiments/request_response.yaml", jobs=2)   # doctest: +SKIP
    >>> result.summary[["request_response.encoding", "latency_mean"]]                 # doctest: +SKIP
    >>> result = run("experiments/request_response.yaml", records="my-records")      # doctest: +SKIP
    >>> result.read_records().latency.quantile(0.99)                                # doctest: +SKIP
    """
    from commsim.config import load

    return run_experiment(load(source, overrides, allow_large=allow_large), progress, **options)

