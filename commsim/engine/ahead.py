"""What the run-ahead modes share: results found ahead of the clock.

A model in a run-ahead mode (short polling, long polling, SSE, push,
request-response) works out a batch of jobs at once, including what they
send later.  Two things keep its results those of the event-driven path:

* :class:`Unsettled`: what a batch sent is counted once the clock has passed
  its last arrival, or at the end against the run's end, so a run stopped
  early (``max_run_queue``) counts nothing that leaves after its stop;
* :class:`ArrivalOrder`: samples (latencies) go into the results in order of
  arrival, as the event-driven path records them;

and :func:`ends_at_the_window` makes a run continued past its window fail.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from typing import Callable

from commsim.engine.events import call_at


def ends_at_the_window(sim, who: str, off: str) -> None:
    """A run-ahead mode stops at the end of the window (what it cuts off is
    counted in flight, never delivered): a run continued past it with
    ``env.run`` would silently stand still, so it fails instead (the
    runner's stop comes first at that instant).  ``who`` names the model,
    ``off`` how to keep the event-driven path."""
    def refuse(_event) -> None:
        raise RuntimeError(f"{who} ran ahead to the end of the window, so it cannot go on past "
                           f"it; to continue a run past its window, keep the event-driven path "
                           f"({off})")

    call_at(sim.env, sim.end, refuse)


class Unsettled:
    """Batches of messages sent ahead of the clock, not yet counted.

    ``add(first, last, *data)`` keeps one batch whose messages arrive from
    ``first`` to ``last``; ``settle(now)`` calls ``count(*data)`` for the
    batches whose ``last`` is before ``now`` (so before the run's end,
    wherever it stops), in the order they were added (a batch waits for
    those before it: sums are added in one order), and drops them;
    ``settle_all()`` counts the rest (at the end: ``count`` checks each
    message against the run's end)."""

    def __init__(self, count: Callable):
        self.count = count
        self.batches: deque = deque()

    def add(self, first: float, last: float, *data) -> None:
        self.batches.append((first, last, data))

    def settle(self, now: float) -> None:
        batches = self.batches
        count = self.count
        while batches and batches[0][1] < now:
            count(*batches.popleft()[2])

    def settle_all(self, *extra) -> None:
        """Count every batch left, in order (``count(*data, *extra)``)."""
        batches, self.batches = self.batches, deque()
        for batch in batches:
            self.count(*batch[2], *extra)

    def __len__(self) -> int:
        return len(self.batches)

    def data(self):
        """The batches not yet counted (their ``data``), in order."""
        return (batch[2] for batch in self.batches)

    def first(self) -> float:
        """The earliest arrival of anything not yet counted (inf: none)."""
        return min((b[0] for b in self.batches), default=math.inf)


class ArrivalOrder:
    """Samples found ahead of the clock (the run-ahead modes), put into the
    samples in order of arrival, as the event-driven paths record them.

    ``add(r, values)`` holds samples arriving at ``r`` (sequences of equal
    length); ``emit(horizon)`` moves those arriving before ``horizon`` to
    every target (an ``array("d")`` or a list), sorted by arrival, ties in
    the order added (a stable sort): the caller guarantees that nothing
    added later arrives before ``horizon``."""

    def __init__(self, *targets):
        self.targets = targets
        self.r: list = []
        self.values: list = []

    def add(self, r, values) -> None:
        self.r += r
        self.values += values

    def emit(self, horizon: float) -> None:
        if not self.r:
            return
        import numpy as np

        r = np.array(self.r)
        values = np.array(self.values, dtype=np.float64)
        order = np.argsort(r, kind="stable")
        r = r[order]
        values = values[order]
        cut = int(np.searchsorted(r, horizon, "left"))
        if cut:
            out = values[:cut]
            raw = out.tobytes()
            for target in self.targets:
                if isinstance(target, array):
                    target.frombytes(raw)
                else:
                    target += out.tolist()
        self.r = r[cut:].tolist()
        self.values = values[cut:].tolist()


