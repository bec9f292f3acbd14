"""The network between clients and servers: links, messages, connections.

:class:`Network` builds the two links of the common client/server topology from
the ``network`` config section: ``up`` (clients to server) and ``down``
(server to clients).  Assumption: ``network.bandwidth`` is the capacity of the
server's access link in each direction, shared by all clients; client access
links are not a bottleneck.
"""

from __future__ import annotations

from commsim.network.link import Link
from commsim.network.message import Message


class Network:
    """The ``up`` and ``down`` links of a client/server topology."""

    def __init__(self, sim, section: dict | None = None, name: str = ""):
        cfg = section if section is not None else sim.config["network"]
        prefix = f"{name}/" if name else ""
        kw = dict(bandwidth=cfg["bandwidth"], loss=cfg["loss"], rto=cfg["rto"],
                  max_retries=cfg["max_retries"])
        self.sim = sim
        self.config = cfg
        self.up = Link(sim, prefix + "up", cfg["latency"], **kw)
        self.down = Link(sim, prefix + "down", cfg["latency"], **kw)
        self.links = [self.up, self.down]

    def in_flight(self) -> int:
        return sum(link.pending() for link in self.links)


__all__ = ["Network", "Link", "Message"]
