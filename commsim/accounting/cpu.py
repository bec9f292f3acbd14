"""CPU accounting: every CPU-second a node spends is counted here.

A :class:`CpuAccount` adds up busy core-time by purpose (``"request"``,
``"parse"``, ``"handshake"``, ``"poll"``, ...) and separately the part that was
*wasted*: work that delivered nothing new to anyone (an empty poll answer, a
context switch, a retried request).  Only the part of each busy interval that
falls inside the measurement window counts.
"""

from __future__ import annotations


class CpuAccount:
    """Busy core-seconds of one node, by purpose and useful vs wasted."""

    __slots__ = ("_sim", "name", "cores", "by_purpose", "wasted")

    def __init__(self, sim, name: str, cores: int):
        self._sim = sim
        self.name = name
        self.cores = cores
        self.by_purpose: dict[str, float] = {}
        self.wasted = 0.0

    def add(self, t0: float, t1: float, purpose: str, wasted: bool = False) -> None:
        """Account a core busy from ``t0`` to ``t1``."""
        sim = self._sim
        if t0 >= sim.start and t1 <= sim.end:  # by hand: the CPU instrument itself (interval clip)
            used = t1 - t0  # the common case: wholly inside the window
        else:
            used = sim.overlap(t0, t1)
            if used <= 0.0:
                return
        self.by_purpose[purpose] = self.by_purpose.get(purpose, 0.0) + used
        if wasted:
            self.wasted += used

    @property
    def total(self) -> float:
        return sum(self.by_purpose.values())

    def utilization(self) -> float:
        """Mean fraction of the cores busy during the window."""
        return self.total / (self.cores * self._sim.duration)
