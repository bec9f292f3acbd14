"""The simulation engine: one :class:`Simulation` context per run, the
scheduling primitives on bare events, and the run's :class:`Recorder`.
SimPy's private attributes are used only inside this package."""

from commsim.engine.events import Environment, Waker, call_at, call_later, clock, value_of
from commsim.engine.recorder import Counter, Level, Recorder, Samples, Series
from commsim.engine.simulation import Simulation

__all__ = ["Simulation", "Environment", "Waker", "call_later", "call_at", "clock", "value_of",
           "Recorder", "Counter", "Level", "Samples", "Series"]
