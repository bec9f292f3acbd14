"""The recorder of one run: every measurement a model takes goes through it.

One :class:`Recorder` lives on each :class:`~commsim.engine.Simulation`
(``sim.recorder``).  It hands out measuring instruments that know the
measurement window ``[warmup, warmup + duration)``, so no model writes
``now >= sim.start`` by hand:

* :class:`Counter`: events counted inside the window (``add``), or
  unconditionally for whole-run ledgers (``add_always``).
* :class:`Level`: a quantity that changes at instants (threads in use,
  connections open, a queue's depth): its time integral, time average and
  **peak over the window** (a value held when the window opens counts; one
  reached only in the warm-up does not).
* :class:`Samples`: values of operations that started inside the window and
  ended inside it (latencies), plus the count completed in the window.
* :class:`Series`: a quantity sampled every ``every`` seconds over the whole
  run (figures' time series).
* :class:`Operations`: one record per operation (kind, start, end) in
  compact arrays, from which metrics are derived (Ciw's style).

The standard metrics every pattern reports (bytes, the message ledger, the
engine's event count) are taken from the recorder by the runner
(:meth:`Recorder.standard_metrics`), not added by each pattern.

Cost: instruments are created at set-up; recording is an attribute update
and one comparison (no allocation per event beyond an array append for
samples and operations).
"""

from __future__ import annotations

from array import array

from commsim.engine.events import call_at, call_later


class Counter:
    """Events counted inside the measurement window."""

    __slots__ = ("env", "start", "n")

    def __init__(self, sim):
        self.env = sim.env
        self.start = sim.start
        self.n = 0

    def add(self, k: int = 1) -> None:
        """Count ``k`` events now if now is inside the window."""
        if self.env._now >= self.start:
            self.n += k

    def add_if(self, t: float, k: int = 1) -> None:
        """Count ``k`` events that happened (or started) at ``t`` if ``t`` is in the window."""
        if t >= self.start:
            self.n += k

    def __int__(self) -> int:
        return self.n


class Level:
    """A quantity that changes at instants: its time integral and its
    maximum over the measurement window."""

    __slots__ = ("sim", "value", "area", "last", "peak")

    def __init__(self, sim, value: float = 0):
        self.sim = sim
        self.value = value
        self.area = 0.0
        self.last = 0.0
        self.peak = 0
        sim.at_end(self._close)

    def set(self, value) -> None:
        sim = self.sim
        now = sim.env._now
        start = sim.start
        if now >= start:
            last = self.last
            old = self.value
            self.area += old * (now - (last if last > start else start))
            if old > self.peak:  # the old value was held at some instant of the window
                self.peak = old
            if value > self.peak:
                self.peak = value
        self.last = now
        self.value = value

    def add(self, delta) -> None:
        # set(value + delta), inlined: this runs twice per CPU job.
        sim = self.sim
        now = sim.env._now
        start = sim.start
        old = self.value
        new = old + delta
        if now >= start:
            last = self.last
            self.area += old * (now - (last if last > start else start))
            peak = self.peak
            if old > peak:
                peak = old
            if new > peak:
                peak = new
            self.peak = peak
        self.last = now
        self.value = new

    def _close(self) -> None:
        self.set(self.value)

    @property
    def mean(self) -> float:
        return self.area / self.sim.duration


class Samples:
    """Values (latencies) of operations started inside the window and
    finished before its end; ``completed`` counts every operation finished
    inside the window, whenever it started."""

    __slots__ = ("sim", "values", "completed")

    def __init__(self, sim):
        self.sim = sim
        self.values: list[float] = []
        self.completed = 0

    def record(self, t0: float) -> None:
        """An operation started at ``t0`` completes now."""
        sim = self.sim
        now = sim.env._now
        if now >= sim.start:
            self.completed += 1
            if t0 >= sim.start:
                self.values.append(now - t0)

    def add(self, value: float) -> None:
        """Record a sample directly (the caller checked the window)."""
        self.values.append(value)


class Series:
    """``fn()`` sampled every ``every`` seconds from time 0 (``t``, ``values``)."""

    __slots__ = ("env", "fn", "every", "t", "values")

    def __init__(self, sim, fn, every: float):
        self.env = sim.env
        self.fn = fn
        self.every = every
        self.t: list[float] = []
        self.values: list = []
        call_at(sim.env, 0.0, self._sample)

    def _sample(self, _event) -> None:
        self.t.append(self.env._now)
        self.values.append(self.fn())
        call_later(self.env, self.every, self._sample)


#: Operation kinds and outcomes of :class:`Operations` (their small-int codes
#: are the indices); commsim.experiment.records writes them as text.
OP_KINDS = ("request", "update")
OUTCOMES = ("ok", "unfinished", "delivered", "missed")
REQUEST, UPDATE = 0, 1
OK, UNFINISHED, DELIVERED, MISSED = 0, 1, 2, 3
# pubsub: a publish (to its confirm) and a message copy's delivery to a
# subscriber's consumer; a repeat processing of a copy is a duplicate.
OP_KINDS += ("publish", "delivery")
OUTCOMES += ("duplicate",)
PUBLISH, DELIVERY = 2, 3
DUPLICATE = 4
# stateful (login: began with a login; relogin: a forced login after a 401)
# and sidecar (call: a client's end-to-end call; try: one try of any call in
# the mesh); stateful's failures by the answer that ended them (reset, 503,
# 401, lost: the link gave up), sidecar's failed calls and tries (error).
OP_KINDS += ("login", "relogin", "call", "try")
OUTCOMES += ("reset", "503", "401", "lost", "error")
LOGIN, RELOGIN, CALL, TRY = (OP_KINDS.index(k) for k in ("login", "relogin", "call", "try"))
RESET, UNAVAILABLE, UNAUTHORIZED, LOST, ERROR = (OUTCOMES.index(k) for k in
                                                 ("reset", "503", "401", "lost", "error"))
# sync_async and multiplexing (issue 12 item 10): a page load of multiplexing's
# page workload; a request answered only after it was sent again (retried),
# and one whose acknowledged write a later crash lost (acked_lost).
OP_KINDS += ("page",)
OUTCOMES += ("retried", "acked_lost")
PAGE = OP_KINDS.index("page")
RETRIED, ACKED_LOST = OUTCOMES.index("retried"), OUTCOMES.index("acked_lost")


class Operations:
    """One record per operation in compact arrays (no Python object per
    operation): kind and outcome (small ints), client, start and end time,
    bytes.  ``end`` is NaN for an operation that never completed; ``client``
    and ``size`` are -1 where the model does not know them."""

    __slots__ = ("kind", "start", "end", "client", "size", "outcome")

    def __init__(self):
        self.kind = array("b")
        self.start = array("d")
        self.end = array("d")
        self.client = array("q")
        self.size = array("q")
        self.outcome = array("b")

    def record(self, kind: int, t0: float, t1: float, client: int = -1, size: int = -1,
               outcome: int = 0) -> None:
        self.kind.append(kind)
        self.start.append(t0)
        self.end.append(t1)
        self.client.append(client)
        self.size.append(size)
        self.outcome.append(outcome)

    def __len__(self) -> int:
        return len(self.start)


class Recorder:
    """The instruments of one run (see the module docstring)."""

    #: Per-operation records wanted (``commsim run --records``): models that
    #: record take their :class:`Operations` at set-up only when this is true,
    #: so a run without records pays one attribute test per operation at most.
    records = False

    def __init__(self, sim):
        self.sim = sim
        self.counters: dict[str, Counter] = {}
        self.levels: dict[str, Level] = {}
        self.samples: dict[str, Samples] = {}
        self.series: dict[str, Series] = {}
        self.operations: dict[str, Operations] = {}

    def counter(self, name: str) -> Counter:
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = Counter(self.sim)
        return c

    def level(self, name: str, value: float = 0) -> Level:
        """A new time-weighted level (``name`` must be unique in the run)."""
        if name in self.levels:
            raise ValueError(f"level {name!r} exists already")
        lv = self.levels[name] = Level(self.sim, value)
        return lv

    def sample(self, name: str) -> Samples:
        s = self.samples.get(name)
        if s is None:
            s = self.samples[name] = Samples(self.sim)
        return s

    def every(self, name: str, every: float, fn) -> Series:
        """Sample ``fn()`` every ``every`` seconds from time 0."""
        s = self.series[name] = Series(self.sim, fn, every)
        return s

    def ops(self, name: str) -> Operations:
        o = self.operations.get(name)
        if o is None:
            o = self.operations[name] = Operations()
        return o

    # ----------------------------------------------------------- metrics --
    def standard_metrics(self, in_flight: int) -> dict:
        """Bytes, the message ledger and the engine's event count: the
        metrics every pattern reports, taken by the runner.  ``in_flight``
        is the model's count of messages still on its links (its own
        measurement, so the ledger's balance is a check, not an identity)."""
        from commsim.metrics.collect import byte_metrics, engine_metrics, ledger_metrics

        sim = self.sim
        out = byte_metrics(sim)
        out.update(ledger_metrics(sim, in_flight))
        out.update(engine_metrics(sim))
        return out
