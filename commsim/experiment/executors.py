"""Where runs execute: in this process, in N local processes, or on Dask.

An executor takes independent :class:`Job` s and yields their outcomes
(:func:`execute`'s dicts) in completion order; the runner puts them back in
task order, so ``runs.csv`` does not depend on the executor or on timing.
Every run is a pure function of its resolved config and seed (plain data,
pickled to the worker), so serial, parallel and distributed runs of the same
config give identical rows.

* :class:`SerialExecutor` - one run after another in this process.
* :class:`ProcessExecutor` - a pool of ``jobs`` worker processes (``fork`` on
  Linux: workers start in milliseconds and inherit the imported modules).
* :class:`DaskExecutor` - an existing Dask cluster (``--executor dask
  --scheduler ADDRESS``); needs the optional ``distributed`` package on this
  machine and commsim importable on every worker.

A run that raises does not stop the others: :func:`execute` returns the error
and its traceback as data.  Except for what no other run can survive
either (issue 11): a ``MemoryError``, a worker process that died (killed by
the kernel's OOM killer, say) or a lost Dask scheduler end the whole command
with :class:`RunAborted`, whose message says what happened; the runs
finished so far are stored, so the same command resumes.

Memory stays flat over any number of runs in one process: the engine
freezes the garbage collector during a run, so the cycles a finished run
leaves behind would otherwise pile up (about 0.5 MB per small run);
:func:`commsim.experiment.runner.simulate` (every run of an experiment and
of the Python API goes through it; warm-up pilots are few) collects them after runs
(:class:`_Collector`, here beside the executors that use it): at least
every 64 runs or 32 MB of growth, so a process holds at most about that much
garbage whatever the number of runs (2,000 small runs grew it by 1 GB
before).  A collection costs ~15-40 ms, so very small runs (~1 ms) pay up to
~0.5 ms each; runs of 0.3 s and more are collected after every run, at under
5 % of their time.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:  # multiprocessing is imported by the process pool only: a serial run needs none (issue 14)
    from concurrent.futures import ProcessPoolExecutor

#: Where a worker sends simulated-time progress: fn(job_index, now, end) or None.
_SIM_PROGRESS: Callable[[int, float, float], None] | None = None
#: Seconds between two simulated-time progress reports of one run.
SIM_PROGRESS_INTERVAL = 1.0


class RunAborted(RuntimeError):
    """The runs cannot go on (out of memory, a worker died, the Dask
    scheduler was lost); the message says what happened."""


def _rss_bytes() -> int:
    """This process's resident memory (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _Collector:
    """Collects the garbage of finished runs (see the module docstring).

    A full collection costs ~15 ms in a process holding pandas and
    matplotlib; it runs once the process grew ``max_growth`` bytes since the
    last one, or after ``max_runs`` runs, or once the runs since the last one
    took ``1/share`` times its cost (then it costs at most ``share`` of the
    run time).  Collecting never changes a run's results: runs do not depend
    on object identities.
    """

    def __init__(self, max_runs: int = 64, share: float = 0.05, max_growth: int = 32 << 20):
        self.max_runs = max_runs
        self.share = share
        self.max_growth = max_growth
        self.runs = 0
        self.busy = 0.0
        self.cost = 0.015
        self.rss = _rss_bytes()

    def after_run(self, wall_s: float) -> None:
        self.runs += 1
        self.busy += wall_s
        rss = _rss_bytes()
        if (self.runs >= self.max_runs or self.busy * self.share >= self.cost
                or rss - self.rss >= self.max_growth):
            t0 = time.perf_counter()
            gc.collect()
            self.cost = max(1e-4, time.perf_counter() - t0)
            self.runs, self.busy, self.rss = 0, 0.0, _rss_bytes()


_COLLECTOR = _Collector()


def collect_garbage(wall_s: float) -> None:
    """Called after every run (by :func:`commsim.experiment.runner.simulate`)."""
    _COLLECTOR.after_run(wall_s)


@dataclass(frozen=True)
class Job:
    """One run to compute: plain data, cheap to pickle."""

    index: int
    config: dict
    params: dict
    replication: int
    seed: int
    #: Per-operation records wanted: the swept keys' column types
    #: (:func:`commsim.experiment.records.column_types`), else None.
    records: dict | None = None
    #: Keep the run's side series for the figures (:mod:`commsim.figures.sidetables`).
    side: bool = False


class _Watch:
    """Reports a running simulation's clock from a background thread.

    Reading ``env.now`` from another thread needs no event in the
    simulation, so watching never changes a run's results (nor its
    ``events`` count) and costs nothing measurable.
    """

    def __init__(self, index: int, sink: Callable[[int, float, float], None]):
        self.index = index
        self.sink = sink
        self._stop = threading.Event()

    def __call__(self, sim):
        self.sim = sim
        return self

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True, name="commsim-watch")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def _loop(self) -> None:
        sim = self.sim
        while not self._stop.wait(SIM_PROGRESS_INTERVAL):
            try:
                self.sink(self.index, float(sim.env.now), float(sim.end))
            except Exception:  # progress must never break a run
                return


def execute(job: Job) -> dict:
    """Run one job; never raises for a model error (returns it as data)."""
    from commsim.experiment.runner import simulate

    t0 = time.perf_counter()
    sink = _SIM_PROGRESS
    watch = _Watch(job.index, sink) if sink is not None else None
    extra: dict = {}
    try:
        run = simulate(job.config, job.seed, watch=watch, records=job.records is not None)
        metrics = run.metrics
        # What only the finished run has, taken here, where it ran (no second
        # simulation): its records as Parquet bytes, its side series.
        if job.records is not None:
            from commsim.experiment.records import run_bytes

            extra["records"] = run_bytes(run.sim, job.params, job.replication, job.seed, job.records)
        if job.side:
            from commsim.figures.sidetables import of_run

            extra["side"] = of_run(run)
        del run
    except MemoryError:
        # Nothing else can run either: free what we can, and tell the
        # runner to stop everything (fatal) instead of going on.
        gc.collect()
        return {"index": job.index, "ok": False, "fatal": True, "pid": os.getpid(),
                "error": "MemoryError: the run ran out of memory", "wall_s": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - reported with the run's parameters
        return {"index": job.index, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(), "wall_s": time.perf_counter() - t0,
                "pid": os.getpid()}
    return {"index": job.index, "ok": True, "metrics": metrics, "wall_s": time.perf_counter() - t0,
            "pid": os.getpid(), **extra}


class SerialExecutor:
    """Runs jobs one after another in this process."""

    name = "serial"
    workers = 1

    def __init__(self, sim_progress: Callable[[int, float, float], None] | None = None):
        self.sim_progress = sim_progress

    def run(self, jobs: Iterable[Job], fn: Callable[[Job], dict] = None) -> Iterator[dict]:
        global _SIM_PROGRESS
        fn = fn or execute
        previous = _SIM_PROGRESS
        _SIM_PROGRESS = self.sim_progress
        try:
            for job in jobs:
                yield fn(job)
        finally:
            _SIM_PROGRESS = previous

    def close(self) -> None:
        pass


def _preload() -> None:
    """While the workers run the first jobs, load what this process needs
    once they are done (the tables' pandas, the figures' matplotlib): the
    import then overlaps the runs instead of following them."""
    try:
        import matplotlib.figure  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:  # pragma: no cover - both are dependencies
        pass


def _die_with_parent() -> None:
    """If the parent is killed outright (SIGKILL), end this worker too
    instead of leaving it blocked forever on the task pipe (Linux
    ``prctl(PR_SET_PDEATHSIG)``; elsewhere a no-op).  Stored runs survive and
    the next ``commsim run`` resumes from them."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(queue) -> None:
    global _SIM_PROGRESS
    import signal

    # Ctrl-C reaches the whole process group: let the parent handle it and
    # stop the pool, instead of every worker printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if queue is not None:
        _SIM_PROGRESS = lambda i, now, end: queue.put((i, now, end))  # noqa: E731


def _context():
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    # fork: workers start at once with commsim already imported (Linux).
    return mp.get_context("fork" if "fork" in methods else "spawn")


class ProcessExecutor:
    """A pool of ``jobs`` local worker processes."""

    name = "processes"

    def __init__(self, jobs: int, sim_progress: Callable[[int, float, float], None] | None = None):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.workers = jobs
        self.sim_progress = sim_progress
        self._pool: ProcessPoolExecutor | None = None
        self._queue = None
        self._drain: threading.Thread | None = None
        self._stop = threading.Event()

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            ctx = _context()
            if self.sim_progress is not None:
                self._queue = ctx.Queue()
                self._drain = threading.Thread(target=self._drain_loop, daemon=True)
                self._drain.start()
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                             initializer=_init_worker, initargs=(self._queue,))
        return self._pool

    def _drain_loop(self) -> None:
        import queue as _q

        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except (_q.Empty, OSError, EOFError, ValueError):
                continue
            try:
                self.sim_progress(*item)
            except Exception:  # pragma: no cover
                pass

    def run(self, jobs: Iterable[Job], fn: Callable[[Job], dict] = None) -> Iterator[dict]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        pool = self._start()
        pending = {pool.submit(fn or execute, job) for job in jobs}
        _preload()
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        raise RunAborted("a worker process died (killed by a signal, or by the "
                                         "system for lack of memory)") from None
                    except MemoryError:
                        raise RunAborted("out of memory while collecting a run's result") from None
                    yield out
        except BaseException:
            for fut in pending:
                fut.cancel()
            self.close(kill=True)
            raise

    def close(self, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            if kill:
                for proc in list(getattr(pool, "_processes", {}).values()):
                    if proc.is_alive():
                        proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
        self._stop.set()
        if self._drain is not None:
            self._drain.join(timeout=1)
            self._drain = None
        if self._queue is not None:
            self._queue.close()
            self._queue = None


DASK_MISSING = ("the dask executor needs the optional 'distributed' package: "
                "pip install 'commsim[dask]'")


class DaskExecutor:
    """Runs jobs on an existing Dask cluster.

    ``scheduler`` is the scheduler's address (``tcp://host:8786``) or an
    existing ``distributed.Client``.  Every worker must be able to import the
    same version of commsim (jobs carry only plain data and the function
    :func:`execute`, which workers import by name).
    """

    name = "dask"

    def __init__(self, scheduler: Any):
        try:
            import distributed
        except ImportError:
            from commsim.errors import ConfigError

            raise ConfigError("--executor", DASK_MISSING) from None
        self._own = not isinstance(scheduler, distributed.Client)
        self._lost = False
        self.address = scheduler if self._own else getattr(scheduler, "scheduler", None)
        if self._own:
            from commsim.errors import ConfigError

            if not isinstance(scheduler, str) or "\0" in scheduler:
                raise ConfigError("--scheduler", f"got {scheduler!r}; expected an address such as "
                                  "tcp://127.0.0.1:8786")
            try:
                self.client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError("--scheduler", f"cannot reach a Dask scheduler at {scheduler!r}: "
                                  f"{exc}") from None
            except (ValueError, TypeError) as exc:  # unknown scheme, malformed address
                raise ConfigError("--scheduler", f"got {scheduler!r}: {exc}; expected an address such "
                                  "as tcp://127.0.0.1:8786") from None
        else:
            self.client = scheduler
        info = self.client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def run(self, jobs: Iterable[Job], fn: Callable[[Job], dict] = None) -> Iterator[dict]:
        from distributed import as_completed

        jobs = list(jobs)
        if not jobs:
            return
        try:
            futures = self.client.map(fn or execute, jobs, pure=False)
        except Exception as exc:  # noqa: BLE001
            raise RunAborted(f"lost the Dask scheduler {self.address!r}: {type(exc).__name__}: {exc}") from None
        try:
            for fut in as_completed(futures):
                try:
                    out = fut.result()
                except Exception as exc:  # noqa: BLE001 - the cluster, not the run (execute never raises)
                    self._lost = True
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise RunAborted(f"lost the Dask scheduler {self.address!r} or its workers "
                                     f"({type(exc).__name__}: {why})") from None
                yield out
        except BaseException:
            try:
                self.client.cancel(futures)
            except Exception:  # noqa: BLE001 - the scheduler may be gone
                pass
            raise

    def close(self) -> None:
        if not self._own:
            return
        import logging

        # After a lost scheduler, closing cancels the client's reconnection
        # attempts, which distributed logs as tracebacks: we said it in one line.
        quiet = [logging.getLogger(n) for n in ("distributed.client", "distributed.utils")]
        levels = [lg.level for lg in quiet]
        if self._lost:
            for lg in quiet:
                lg.setLevel(logging.CRITICAL + 1)
        try:
            self.client.close(timeout=5)
        except Exception:  # noqa: BLE001 - the scheduler may be gone
            pass
        finally:
            for lg, level in zip(quiet, levels):
                lg.setLevel(level)


def make_executor(kind: str = "auto", jobs: int = 1, scheduler: Any = None,
                  sim_progress: Callable[[int, float, float], None] | None = None):
    """``serial``, ``processes`` (``jobs`` workers) or ``dask`` (``scheduler``);
    ``auto`` is serial for one job and processes for more."""
    from commsim.errors import ConfigError

    if kind == "dask":
        if scheduler is None:
            raise ConfigError("--scheduler", "the dask executor needs --scheduler ADDRESS "
                              "(e.g. tcp://127.0.0.1:8786)")
        return DaskExecutor(scheduler)
    if scheduler is not None:
        raise ConfigError("--scheduler", "is only used with --executor dask")
    if kind == "auto":
        kind = "serial" if jobs == 1 else "processes"
    if kind == "serial":
        return SerialExecutor(sim_progress)
    if kind == "processes":
        return ProcessExecutor(jobs, sim_progress)
    raise ConfigError("--executor", f"got {kind!r}; expected one of 'serial', 'processes', 'dask'")


def default_jobs() -> int:
    return os.cpu_count() or 1
