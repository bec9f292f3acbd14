"""The network between clients and servers: links, messages, connections.

:class:`Network` builds the two links of the common client/server topology from
the ``network`` config section: ``up`` (clients to server) and ``down``
(server to clients).  Assumption: ``network.bandwidth`` is the capacity of the
server's access link in each direction, shared by all clients; client access
links are not a bottleneck.
"""

from __future__ import annotations

from commsim.network.link import Link, loopback_link, network_link
from commsim.network.message import Message


class Network:
    """The ``up`` and ``down`` links of a client/server topology."""

    def __init__(self, sim, section: dict | None = None, name: str = ""):
        cfg = section if section is not None else sim.config["network"]
        prefix = f"{name}/" if name else ""
        self.sim = sim
        self.config = cfg
        self.up = network_link(sim, prefix + "up", cfg if section is not None else None)
        self.down = network_link(sim, prefix + "down", cfg if section is not None else None)
        self.links = [self.up, self.down]

    def in_flight(self) -> int:
        return sum(link.pending() for link in self.links)


__all__ = ["Network", "Link", "Message", "network_link", "loopback_link"]
