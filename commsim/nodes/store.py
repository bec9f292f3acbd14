"""A shared key-value store node (e.g. a session store such as Redis).

Model and assumptions
---------------------
* The store is one node with ``cores`` cores serving a FIFO run queue
  (:class:`~commsim.nodes.Cpu`); each operation (read, write, delete)
  costs one draw of ``service_time`` of CPU.  It never crashes and never
  loses data (replication and persistence are out of scope).
* Each caller (an application server) reaches the store over its own pair
  of links with latency ``latency`` (created on first use, named
  ``store/<caller>/req`` and ``store/<caller>/resp``), so the store's bytes
  are counted like any other traffic.  They are datacentre hops configured
  explicitly (:func:`~commsim.network.network_link` with that latency only):
  the ``network`` section's bandwidth and loss do not apply to them.  A
  request message carries ``request_size`` bytes of header; a read's answer carries the value's
  size, other answers ``ack_size`` bytes.
* The store keeps ``{key: size}``; values are sizes only.

A store round trip therefore costs 2 x latency + queueing + service: the
price of statelessness through a shared store.
"""

from __future__ import annotations

from commsim.network import Link, Message, network_link
from commsim.nodes.cpu import Cpu


class _StoreOp:
    __slots__ = ("kind", "key", "size", "caller", "done", "token", "found")

    def __init__(self, kind, key, size, caller, done, token):
        self.kind = kind
        self.key = key
        self.size = size
        self.caller = caller
        self.done = done
        self.token = token
        self.found = False


class Store:
    """A key-value store node reached over links."""

    def __init__(self, sim, name: str, cores: int, service_time, latency,
                 request_size: int = 100, ack_size: int = 50):
        self.sim = sim
        self.name = name
        self.cpu = Cpu(sim, name, cores)
        self._service = sim.sampler(service_time, f"{name}/service")
        self.latency = latency
        self._hop = {"latency": latency}  # a datacentre hop: this latency, no bandwidth, no loss
        self.request_size = request_size
        self.ack_size = ack_size
        self.data: dict = {}
        self._links: dict = {}
        self._ops = sim.recorder.counter(f"{name}/ops")  # received inside the window

    @property
    def ops(self) -> int:
        return self._ops.n

    def links(self, caller: str) -> tuple[Link, Link]:
        pair = self._links.get(caller)
        if pair is None:
            pair = self._links[caller] = (
                network_link(self.sim, f"{self.name}/{caller}/req", self._hop),
                network_link(self.sim, f"{self.name}/{caller}/resp", self._hop))
        return pair

    def call(self, caller: str, kind: str, key, done, token=None, size: int = 0) -> None:
        """Send a ``read``/``write``/``delete`` of ``key`` from ``caller``;
        ``done(token, found)`` runs when the answer is back at the caller
        (``found``: the key existed, for reads)."""
        op = _StoreOp(kind, key, size, caller, done, token)
        payload = size if kind == "write" else 0
        msg = Message("store_request", caller, self.name, header=self.request_size,
                      payload=payload, created=self.sim.now, data=op, label=f"store {kind}")
        self.links(caller)[0].send(msg, self._receive)

    def _receive(self, msg) -> None:
        self._ops.add()
        self.cpu.submit(self._service(), "store", self._answer, msg.data)

    def _answer(self, op: _StoreOp, _wait) -> None:
        data = self.data
        size = 0
        if op.kind == "read":
            size = data.get(op.key, 0)
            op.found = op.key in data
        elif op.kind == "write":
            data[op.key] = op.size
        else:
            data.pop(op.key, None)
        msg = Message("store_response", self.name, op.caller, header=self.ack_size, payload=size,
                      created=self.sim.now, data=op, label=f"store {op.kind} reply")
        self.links(op.caller)[1].send(msg, self._back)

    @staticmethod
    def _back(msg) -> None:
        op = msg.data
        op.done(op.token, op.found)

    def in_flight(self) -> int:
        return sum(a.pending() + b.pending() for a, b in self._links.values())
