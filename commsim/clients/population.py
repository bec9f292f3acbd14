"""A population of request-making clients, sync (closed loop) or async (open loop).

Model and assumptions
---------------------
A pattern supplies ``start_op(client, done)``: begin one *operation* (a
request, or a whole chunked upload) for ``client`` and call ``done()`` when
the client has its response.  The population decides *when* operations start:

* ``sync`` (closed loop): each client starts an operation, blocks until it
  is done, thinks for ``clients.think_time`` and repeats.  Clients start
  after an initial think time, so they do not all fire at t = 0.  Blocked
  time is measured (clipped to the window; a client still blocked at the end
  counts up to the end).  Each client is a callback on its own re-armed
  wake-up, not a process: one event per think time; ``done`` records the
  operation and arms the next think time at once (no event to resume a
  process).  Think times are drawn in the order operations finish, as the
  process version drew them.
* ``async`` (open loop): each client issues operations as a Poisson stream at
  ``clients.rate`` whatever the responses.  The superposition of ``count``
  independent Poisson streams is one Poisson stream of rate
  ``count * rate`` whose operations belong to a uniformly chosen client, so
  one source generates them all (one pending event instead of ``count``).
  The source is a callback on one re-armed wake-up (no generator, no
  allocation per arrival): one heap event per operation.  Async clients
  never block.  A model that runs ahead of the clock takes the start times
  instead (``ahead=True``, :meth:`ClientPopulation.arrivals_before`): the same
  times from the same stream, no event.

Latency is recorded for operations started inside the window; throughput
counts operations completed inside it.
"""

from __future__ import annotations

from bisect import bisect_left
from functools import partial
from itertools import accumulate
from typing import Callable

from commsim.engine.events import Waker
from commsim.metrics.collect import Latencies


class ClientPopulation:
    def __init__(self, sim, start_op: Callable, section: dict | None = None, ahead: bool = False):
        cfg = section if section is not None else sim.config["clients"]
        self.sim = sim
        self.env = sim.env
        self.count = cfg["count"]
        self.mode = cfg["mode"]
        self.start_op = start_op
        self.latencies = Latencies(sim)
        self.blocked_s = 0.0
        if self.mode == "sync":
            self._think = sim.sampler(cfg["think_time"], "clients/think")
            self._blocked_since: list = [None] * self.count
            # one re-armed wake-up per client (its think time), no process
            self._clients = [_SyncClient(self, cid) for cid in range(self.count)]
            for client in self._clients:
                client.arm(self._think())
            sim.at_end(self._close)
        elif ahead:  # the start times are taken (arrivals_before), no source event
            gap = {"dist": "exponential", "mean": 1.0 / (self.count * cfg["rate"])}
            self._gaps = sim.block_sampler(gap, "clients/arrivals")
            self._times: list = []  # drawn start times; from _times[_i] on not yet taken
            self._i = 0
        else:
            rate = self.count * cfg["rate"]
            self._gap = sim.sampler({"dist": "exponential", "mean": 1.0 / rate}, "clients/arrivals")
            self._pick = sim.sampler({"dist": "uniform", "low": 0, "high": self.count},
                                     "clients/pick", kind="number")
            self._arrival = Waker(self.env, self._arrive)
            self._arrival.arm(self._gap())

    # ---------------------------------------------------------------- sync --
    def _sync_done(self, cid: int, t0: float) -> None:
        """Client ``cid``'s operation started at ``t0`` is done (now): record
        its latency and blocked time, then think before the next one."""
        self._blocked_since[cid] = None
        sim = self.sim
        now = self.env.now
        # Samples.record inlined (per request, hot), with the blocked time beside it:
        if t0 >= sim.start:  # started in the window: a latency sample, all of it blocked
            lat = self.latencies
            lat.completed += 1
            lat.values.append(now - t0)
            self.blocked_s += now - t0
        else:
            self.latencies.record(t0)
            self.blocked_s += sim.overlap(t0, now)
        self._clients[cid].arm(self._think())

    def _close(self) -> None:
        for t0 in self._blocked_since:
            if t0 is not None:
                self.blocked_s += self.sim.overlap(t0, self.sim.end)

    # --------------------------------------------------------------- async --
    #: Start times drawn at a time by arrivals_before.
    AHEAD_BLOCK = 4096

    def arrivals_before(self, until: float, most: int | None = None) -> list:
        """Run ahead (async clients built with ``ahead=True``): the start
        times of the operations before ``until`` not taken yet (at most
        ``most`` of them), in order.  They are the event-driven source's:
        the same gaps from the same stream, added one after another from 0
        as its wake-up adds them."""
        out: list = []
        while True:
            times, i = self._times, self._i
            j = bisect_left(times, until, i)
            if most is not None and j - i > most - len(out):
                j = i + most - len(out)
            out += times[i:j]
            self._i = j
            if j < len(times):
                return out
            self._draw()

    def next_arrival(self) -> float:
        """Run ahead: the start time of the first operation not taken yet."""
        if self._i == len(self._times):
            self._draw()
        return self._times[self._i]

    def _draw(self) -> None:
        last = self._times[-1] if self._times else 0.0
        self._times = list(accumulate(self._gaps(self.AHEAD_BLOCK), initial=last))[1:]
        self._i = 0

    def _arrive(self, _event) -> None:
        """One open-loop arrival: start its operation, then arm the next
        arrival (in this order, as the generator source did: events the
        operation schedules now come before the next arrival's)."""
        cid = int(self._pick())  # uniform on [0, count): count itself only by rounding
        # partial: a C-level callable (no Python frame of its own per operation)
        self.start_op(cid if cid < self.count else self.count - 1,
                      partial(self.latencies.record, self.env.now))
        self._arrival.arm(self._gap())


class _SyncClient:
    """One closed-loop client: its wake-up ends a think time and starts an
    operation, whose ``done`` records it and arms the next think time."""

    __slots__ = ("pop", "cid", "t0", "arm")

    def __init__(self, pop: ClientPopulation, cid: int):
        self.pop = pop
        self.cid = cid
        self.t0 = 0.0
        self.arm = Waker(pop.env, self._go).arm

    def _go(self, _event) -> None:
        pop = self.pop
        self.t0 = t0 = pop.env.now
        pop._blocked_since[self.cid] = t0
        pop.start_op(self.cid, self.done)

    def done(self, _value=None) -> None:
        """The operation is done (the pattern calls it once per operation)."""
        self.pop._sync_done(self.cid, self.t0)


def check_cycle_takes_time(cfg: dict, *parts: tuple[str, object]) -> None:
    """Refuse (at load time) sync clients whose request cycle takes no
    simulated time at all: think time, two one-way latencies and the other
    ``parts`` (``(key, distribution spec)``) all zero would loop forever at
    one instant."""
    from commsim.dists import make_distribution
    from commsim.errors import ConfigError

    if cfg["clients"]["mode"] != "sync":
        return
    specs = [("clients.think_time", cfg["clients"]["think_time"]),
             ("network.latency", cfg["network"]["latency"]), *parts]
    if all(make_distribution(spec, "duration", key).mean == 0 for key, spec in specs):
        raise ConfigError("clients.think_time", "sync clients would loop forever at one instant: "
                          f"{', '.join(k for k, _ in specs)} are all zero; give one of them a "
                          "positive value")
