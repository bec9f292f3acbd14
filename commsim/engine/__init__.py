"""The simulation engine: one :class:`Simulation` context per run, the
scheduling primitives on bare events, and the run's :class:`Recorder`.
SimPy's private attributes are used only inside this package."""

from commsim.engine.events import call_at, call_later
from commsim.engine.recorder import Counter, Level, Recorder, Samples, Series
from commsim.engine.simulation import Simulation

__all__ = ["Simulation", "call_later", "call_at", "Recorder", "Counter", "Level", "Samples",
           "Series"]
