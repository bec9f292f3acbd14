"""The simulation engine: one :class:`Simulation` context per run."""

from commsim.engine.simulation import Simulation, call_at, call_later

__all__ = ["Simulation", "call_later", "call_at"]
