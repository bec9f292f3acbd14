"""Clients: synchronicity is a client property (see :mod:`.population`)."""

from commsim.clients.population import ClientPopulation

__all__ = ["ClientPopulation"]
