"""The context every model component of one run shares.

A :class:`Simulation` owns the SimPy environment, the run's random streams,
the measurement window (``[warmup, warmup + duration)``) and the accounting
objects: the byte counter and message ledger (:mod:`commsim.accounting.bytes`).
Components find each other through it; nothing is global, so runs can execute
side by side in one process.

Speed notes (see ``../shared/notes``): hot paths schedule bare SimPy events
with a callback (:func:`call_later`) instead of resuming a generator, and keep
the number of pending events small.  The cyclic garbage collector is frozen
after set-up (:meth:`Simulation.run`) because it otherwise re-walks every
long-lived model object.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

from commsim.accounting.bytes import ByteCounter
from commsim.engine.events import Environment, events_scheduled
from commsim.engine.events import call_at, call_later  # noqa: F401  (re-exported)
from commsim.engine.recorder import Recorder
from commsim.dists import make_distribution
from commsim.rng import Streams


class Overloaded(Exception):
    """Raised by a node whose queue reached the run's ``max_run_queue``:
    :meth:`Simulation.run` ends the run there (``stopped_at``), the metrics
    are collected as usual and the stability check flags the run."""


class Simulation:
    """One run: environment, random streams, window and accounting.

    Parameters
    ----------
    config:
        A resolved run configuration (see :func:`commsim.config.resolve_run`).
    run_seed:
        The seed of this replication (see :func:`commsim.rng.derive_run_seed`).
    """

    def __init__(self, config: dict, run_seed: int):
        self.config = config
        self.seed = run_seed
        self.env = Environment()
        self.streams = Streams(run_seed)
        self.start: float = config["warmup"]
        self.duration: float = config["duration"]
        self.end: float = self.start + self.duration
        self.bytes = ByteCounter(self)
        self.recorder = Recorder(self)
        self.tracer = None  # set by commsim.experiment.trace
        self._finalizers: list[Callable[[], None]] = []
        self._ran = False
        # Overload guard (max_run_queue): a CPU whose run queue reaches it stops the run.
        limit = config.get("max_run_queue")
        self.max_run_queue: float = float("inf") if limit is None else limit
        self.stopped = False  # a queue reached max_run_queue: the run ended there
        self.stop_reason = ""

    # ----------------------------------------------------------- helpers --
    @property
    def now(self) -> float:
        return self.env.now

    def overlap(self, t0: float, t1: float) -> float:
        """Length of ``[t0, t1]`` inside the measurement window."""
        lo = t0 if t0 > self.start else self.start
        hi = t1 if t1 < self.end else self.end
        return hi - lo if hi > lo else 0.0

    def distribution(self, spec, kind: str = "duration", key: str = ""):
        return make_distribution(spec, kind, key)

    def sampler(self, spec, stream: str, kind: str = "duration") -> Callable[[], float]:
        """A fast sampler of a resolved distribution spec on a named stream."""
        return make_distribution(spec, kind, stream).sampler(self.streams.generator(stream))

    def block_sampler(self, spec, stream: str, kind: str = "duration") -> Callable[[int], list]:
        """:meth:`sampler`'s values ``k`` at a time (``take(k)`` -> list)."""
        return make_distribution(spec, kind, stream).block_sampler(self.streams.generator(stream))

    def at_end(self, fn: Callable[[], None]) -> None:
        """Register ``fn`` to run once when the measured window closes
        (to account intervals still open, e.g. a core still busy)."""
        self._finalizers.append(fn)

    # --------------------------------------------------------------- run --
    def run(self) -> None:
        """Run until the end of the window, then close open intervals."""
        if self._ran:
            raise RuntimeError("a Simulation runs once")
        self._ran = True
        # Freeze (no collection first: a full collection costs 30-100 ms in a
        # process holding pandas and matplotlib, more than a short run).
        gc.freeze()
        try:
            self.env.run(until=self.end)
        except Overloaded as stop:
            # The window ends here: rates are per second of the run that
            # happened, and what is closed at the end is closed now.
            self.stopped = True
            self.stop_reason = str(stop)
            now = self.env.now
            if now > self.start:
                self.end = now
                self.duration = now - self.start
        finally:
            gc.unfreeze()
        for fn in self._finalizers:
            fn()

    @property
    def events_scheduled(self) -> int:
        """Events scheduled so far (SimPy's event id counter)."""
        return events_scheduled(self.env)
