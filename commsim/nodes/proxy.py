"""A sidecar proxy (e.g. Envoy in a service mesh) beside one application instance.

Model and assumptions
---------------------
* All of the instance's inbound and outbound traffic passes through the
  proxy.  The application and the proxy talk over loopback: two links
  (``<name>/lo_in``: proxy to app, ``<name>/lo_out``: app to proxy) with the
  latency ``loopback`` (kernel loopback plus the iptables redirect), so their
  bytes are counted like any other traffic.
* The proxy is a :class:`~commsim.nodes.Cpu` with ``workers`` cores (Envoy's
  worker threads) and a FIFO queue.  Each request going through it is two
  *legs* (the request, then its response); ``cpu`` is the CPU of one whole
  request (one draw per leg, each leg costing half a draw), plus whatever
  the caller adds per leg (mutual-TLS record encryption).
* ``delay`` (optional) is time a leg spends in the proxy *without* using its
  CPU (buffering, event-loop wake-ups, syscalls): it adds latency but no
  CPU and does not hold a worker.
* ``passes`` counts requests (request legs) processed inside the window:
  the denominator of "vCPU per 1000 requests per second through the proxy".
"""

from __future__ import annotations

from commsim.engine.simulation import call_later
from commsim.network import Link
from commsim.nodes.cpu import Cpu


class SidecarProxy:
    def __init__(self, sim, name: str, workers: int, cpu, delay, loopback):
        self.sim = sim
        self.env = sim.env
        self.name = name
        self.cpu = Cpu(sim, name, workers)
        self._cpu = sim.sampler(cpu, f"{name}/cpu")
        dist = sim.distribution(delay)
        self._delay = None if (dist.is_constant and dist.mean == 0) else sim.sampler(delay, f"{name}/delay")
        self.lo_in = Link(sim, f"{name}/lo_in", loopback)
        self.lo_out = Link(sim, f"{name}/lo_out", loopback)
        self._passes = sim.recorder.counter(f"{name}/passes")

    @property
    def passes(self) -> int:
        return self._passes.n

    def leg(self, request: bool, extra_cpu: float, done, token) -> None:
        """Process one leg; ``done(token)`` runs when it leaves the proxy."""
        if request:
            self._passes.add()
        self.cpu.submit(0.5 * self._cpu() + extra_cpu, "proxy", self._after_cpu, (done, token))

    def _after_cpu(self, pair, _wait) -> None:
        if self._delay is None:
            pair[0](pair[1])
        else:
            call_later(self.env, self._delay(), self._after_delay, pair)

    @staticmethod
    def _after_delay(event) -> None:
        done, token = event.value
        done(token)

    def in_flight(self) -> int:
        return self.lo_in.pending() + self.lo_out.pending()
