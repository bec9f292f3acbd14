"""The ``workload`` section: what a server has to tell its clients.

Shared by the notification patterns (``short_polling``, ``long_polling``,
``sse``, ``push``) and meant for any later pattern that delivers server-side
updates (pub/sub).  Everything here is generated from named random streams
that do not depend on the pattern, so a sweep over ``pattern`` compares the
patterns on identical updates (common random numbers).

Model and assumptions
---------------------
* **Updates.**  Each client has its own Poisson stream of updates at
  ``workload.event_rate``.  The superposition of ``clients.count`` such
  streams is one Poisson stream of rate ``count * event_rate`` whose updates
  belong to a uniformly chosen client; :class:`EventFeed` draws it in blocks
  with numpy (streams ``workload/event_gaps``, ``workload/event_client``,
  ``workload/event_size``) so the k-th update has the same time, client and
  size in every pattern.
* **Broadcasts** (optional): a Poisson stream at ``workload.broadcast_rate``
  (for the whole server, not per client) of updates every client must get.
* **Jobs** (optional): each client submits jobs as a Poisson stream at
  ``workload.job_rate``; the server answers at once with a handle and the job
  runs for ``workload.job_duration``; its completion is an update for that
  client (a *job notice*).
* **Availability** (optional): with ``workload.online_time`` set, each client
  alternates online and offline periods (an alternating renewal process,
  streams ``workload/online`` and ``workload/offline``).  At t = 0 a client is
  online with the stationary probability E[on] / (E[on] + E[off]) and its
  first period is a fresh draw (exact for exponential periods, whose
  residual life has the same law; an approximation otherwise).  All clients'
  transitions are driven by one heap and one pending event.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left

from commsim.config.schema import Field, Section, register_section
from commsim.engine import Counter, Waker, call_at

SECTION = register_section(Section("workload", {
    "event_rate": Field("rate", "1/s", "updates per second for each client (Poisson); 0: none", min=0),
    "event_size": Field("dist:size", "200B", "payload size of one update", min=0),
    "broadcast_rate": Field("rate", "0/s", "updates per second that every client must receive "
                            "(Poisson, for the whole server); 0: none", min=0),
    "broadcast_size": Field("dist:size", "200B", "payload size of one broadcast update", min=0),
    "job_rate": Field("rate", "0/s", "long-running jobs submitted per second by each client "
                      "(Poisson); 0: none", min=0),
    "job_duration": Field("dist:duration", {"dist": "exponential", "mean": "30s"},
                          "how long the server works on one job", min=0),
    "job_request": Field("size", "1KiB", "body of a job submission (the handle response has none)",
                         min=0),
    "online_time": Field("dist:duration", None, "length of a client's online periods "
                         "(null: always online)", min=0, min_exclusive=True, nullable=True),
    "offline_time": Field("dist:duration", {"dist": "exponential", "mean": "10s"},
                          "length of a client's offline periods (used with online_time)", min=0),
}, doc="Server-side updates, jobs and client availability, shared by the notification patterns."))

BLOCK = 8192


class EventFeed:
    """The per-client update stream, in time order, identical for every pattern.

    Two ways to consume it:

    * ``drain(until, publish)``: call ``publish(client, created, size)`` for
      every update created at or before ``until`` (lazy: no simulation event
      at all; used by short polling, which only needs the updates when a
      poll arrives);
    * ``start(publish)``: call ``publish`` at each update's creation time
      (one re-armed simulation event; ``publish`` must not drain the feed).
    """

    def __init__(self, sim, clients: int, cfg: dict):
        self.sim = sim
        self.clients = clients
        rate = cfg["event_rate"] * clients
        self.rate = rate
        self._times: list = []
        self._who: list = []
        self._sizes: list = []
        self._i = 0
        self._t = 0.0
        if rate > 0:
            self._gap_rng = sim.streams.generator("workload/event_gaps")
            self._client_rng = sim.streams.generator("workload/event_client")
            self._size_dist = sim.distribution(cfg["event_size"], "size", "workload.event_size")
            self._size_rng = sim.streams.generator("workload/event_size")
            self._refill()
        self.next_time = self._times[0] if self._times else float("inf")
        self._publish = None
        self._back = None  # updates put back by a model running ahead (put_back)

    def _refill(self) -> None:
        import numpy as np

        gaps = self._gap_rng.exponential(1.0 / self.rate, BLOCK)
        times = self._t + np.cumsum(gaps)
        self._t = float(times[-1])
        self._times = times.tolist()
        self._who = self._client_rng.integers(0, self.clients, BLOCK).tolist()
        self._sizes = np.rint(self._size_dist.sample(self._size_rng, BLOCK)).astype(np.int64).tolist()
        self._i = 0

    def drain(self, until: float, publish) -> None:
        times = self._times
        i = self._i
        while self.next_time <= until:
            publish(self._who[i], times[i], self._sizes[i])
            i += 1
            if i == BLOCK:
                self._refill()
                times = self._times
                i = 0
            self._i = i
            self.next_time = times[i]

    def take_before(self, until: float, most: int | None = None) -> tuple[list, list, list]:
        """Every update created before ``until`` (not yet taken or drained;
        at most ``most`` of them), as three lists in creation order: times,
        clients, sizes (no event; for models that run ahead of the clock)."""
        times_out: list = []
        who_out: list = []
        sizes_out: list = []
        back = self._back
        if back is not None:  # updates put back come first
            bt, bw, bs = back
            j = bisect_left(bt, until)
            if most is not None and j > most:
                j = most
            times_out, who_out, sizes_out = bt[:j], bw[:j], bs[:j]
            if j < len(bt):
                self._back = (bt[j:], bw[j:], bs[j:])
                self.next_time = bt[j]
                return times_out, who_out, sizes_out
            self._back = None
            self.next_time = self._times[self._i]
            if most is not None:
                most -= j
        while self.next_time < until and (most is None or most > 0):
            i = self._i
            j = bisect_left(self._times, until, i)
            if most is not None and j - i > most:
                j = i + most
            times_out += self._times[i:j]
            who_out += self._who[i:j]
            sizes_out += self._sizes[i:j]
            if most is not None:
                most -= j - i
            if j == BLOCK:
                self._refill()
                j = 0
            self._i = j
            self.next_time = self._times[j]
        return times_out, who_out, sizes_out

    def put_back(self, times: list, who: list, sizes: list) -> None:
        """Run ahead: updates taken (:meth:`take_before`) but not handled,
        the earliest ones, become the feed's next ones again."""
        if not times:
            return
        if self._back is not None:
            bt, bw, bs = self._back
            times, who, sizes = times + bt, who + bw, sizes + bs
        self._back = (times, who, sizes)
        self.next_time = times[0]

    def start(self, publish) -> None:
        self._publish = publish
        if self.rate > 0:
            # One event object re-armed for every update (no allocation per
            # update; the same event order as a call_at chain).
            self._waker = Waker(self.sim.env, self._fire)
            self._waker.arm_at(self.next_time)

    def _fire(self, _event) -> None:
        # drain(now, publish) written out: the head is due (its wake-up was
        # armed for it), then every other update due by now.
        now = self.sim.env.now
        publish = self._publish
        times = self._times
        i = self._i
        while True:
            publish(self._who[i], times[i], self._sizes[i])
            i += 1
            if i == BLOCK:
                self._refill()
                times = self._times
                i = 0
            t = times[i]
            if t > now:
                break
        self._i = i
        self.next_time = t
        self._waker.arm_at(t)


class PoissonCalendar:
    """Calls ``fire(index)`` at the times of a Poisson stream of rate ``rate``
    (``index`` counts from 0), one pending event at a time."""

    def __init__(self, sim, rate: float, stream: str, fire):
        self.sim = sim
        self.fire = fire
        self.n = 0
        if rate > 0:
            self._gap = sim.sampler({"dist": "exponential", "mean": 1.0 / rate}, stream)
            call_at(sim.env, self._gap(), self._tick)

    def _tick(self, _event) -> None:
        self.fire(self.n)
        self.n += 1
        call_at(self.sim.env, self.sim.env.now + self._gap(), self._tick)


class Availability:
    """Online/offline periods of every client, driven by one heap.

    ``online`` is a bytearray (1 = online).  ``on_change(client, online)`` is
    called at each transition.  With ``workload.online_time`` null every
    client is always online and nothing is scheduled.
    """

    def __init__(self, sim, clients: int, cfg: dict, on_change):
        self.sim = sim
        self.online = bytearray(b"\x01") * clients
        self.on_change = on_change
        self.enabled = cfg["online_time"] is not None
        self._transitions = Counter(sim)  # on/off changes inside the window
        if not self.enabled:
            return
        self._on = sim.sampler(cfg["online_time"], "workload/online")
        self._off = sim.sampler(cfg["offline_time"], "workload/offline")
        mean_on = sim.distribution(cfg["online_time"]).mean
        mean_off = sim.distribution(cfg["offline_time"]).mean
        p_on = mean_on / (mean_on + mean_off) if mean_on + mean_off > 0 else 1.0
        u = sim.streams.generator("workload/initial").random(clients).tolist()
        heap = []
        for c in range(clients):
            if u[c] < p_on:
                heap.append((self._on(), c))
            else:
                self.online[c] = 0
                heap.append((self._off(), c))
        heapq.heapify(heap)
        self._heap = heap
        call_at(sim.env, heap[0][0], self._tick)

    def _tick(self, _event) -> None:
        heap = self._heap
        now = self.sim.env.now
        online = self.online
        transitions = self._transitions
        while heap and heap[0][0] <= now:
            _, c = heap[0]
            if online[c]:
                online[c] = 0
                heapq.heapreplace(heap, (now + self._off(), c))
                self.on_change(c, False)
            else:
                online[c] = 1
                heapq.heapreplace(heap, (now + self._on(), c))
                self.on_change(c, True)
            transitions.add()
        call_at(self.sim.env, heap[0][0], self._tick)

    @property
    def transitions(self) -> int:
        """Clients going on- or offline inside the measurement window."""
        return self._transitions.n
