"""A one-directional link: latency, optional bandwidth, optional loss.

Model and assumptions
---------------------
* **Latency**: each transmission takes a one-way latency drawn from the
  link's distribution (constant by default).
* **Bandwidth** (optional): the link is one FIFO transmitter; a message
  occupies it for ``size * 8 / bandwidth`` seconds (serialisation delay) and
  waits while earlier messages are being sent.  Latency is added after
  serialisation.  With no bandwidth, messages do not interact.
* **Loss** (optional): each transmission is lost independently with
  probability ``loss``; the sender retransmits after ``rto`` and gives up
  after ``max_retries`` retransmissions (the message is then *dropped*).  A
  retransmission puts all the message's bytes on the wire again.  Losses are
  drawn when the message is sent, so the whole delivery is scheduled at once.

Speed: when the latency is constant and there is no loss, arrivals leave in
the order they were sent, so the link is a FIFO delay line with a single
pending wake-up however many messages are in flight.  Otherwise each message
has its own scheduled arrival.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from simpy.core import NORMAL
from simpy.events import Event

from commsim.engine.simulation import call_at, call_later


class Link:
    """One direction of a network path.

    Parameters
    ----------
    sim:
        The run's :class:`~commsim.engine.Simulation`.
    name:
        Used for random-stream names (``latency/<name>``, ``loss/<name>``)
        and traces.
    latency:
        A resolved distribution spec of the one-way latency (seconds).
    bandwidth:
        Bits per second, or ``None`` for no serialisation delay.
    loss, rto, max_retries:
        Loss probability per transmission, retransmission timeout and
        retransmissions before giving up.
    """

    def __init__(self, sim, name: str, latency, bandwidth: float | None = None,
                 loss: float = 0.0, rto: float = 0.2, max_retries: int = 5):
        self.sim = sim
        self.env = sim.env
        self.name = name
        dist = sim.distribution(latency, "duration", f"{name}.latency")
        self.constant_latency = dist.mean if dist.is_constant else None
        self._latency = dist.sampler(sim.streams.generator(f"latency/{name}"))
        self.bandwidth = bandwidth
        self.loss = loss
        self.rto = rto
        self.max_retries = max_retries
        if loss > 0:
            rng = sim.streams.generator(f"loss/{name}")
            from commsim.dists import make_distribution
            self._uniform = make_distribution({"dist": "uniform", "low": 0, "high": 1},
                                              "number", name).sampler(rng)
        self._busy_until = 0.0
        self._line: deque = deque()  # FIFO delay line: (arrival, msg, deliver)
        self._armed = False
        self.in_flight = 0
        # Optional ``on_drop(msg)``: called when a message is given up on
        # (after max_retries), so a model can react as its protocol would.
        self.on_drop: Callable | None = None
        self._fifo = self.constant_latency is not None and loss == 0
        self._waker = Event(sim.env)
        self._waker._ok = True
        self._waker._value = None
        self._wake_callbacks = [self._wake]

    # ------------------------------------------------------------------
    def send(self, msg, deliver: Callable) -> None:
        """Put ``msg`` on the link; ``deliver(msg)`` runs when it arrives."""
        sim = self.sim
        now = self.env._now
        counter = sim.bytes
        counter.sent += 1
        counter.transmit(msg)
        if sim.tracer is not None:
            sim.tracer.sent(self, msg)
        self.in_flight += 1
        if self.bandwidth is None:
            depart = now
        else:
            start = self._busy_until if self._busy_until > now else now
            depart = start + msg.size * 8.0 / self.bandwidth
            self._busy_until = depart
        if self._fifo:
            arrive = depart + self.constant_latency
            self._line.append((arrive, msg, deliver))
            if not self._armed:
                self._armed = True
                self._arm(arrive - now)
            return
        if self.loss == 0:
            call_at(self.env, depart + self._latency(), self._arrive, (msg, deliver))
            return
        # Lossy: decide the fate of every transmission now.
        delay = depart - now
        tries = 0
        while self._uniform() < self.loss:
            if tries == self.max_retries:
                call_later(self.env, delay + self.rto, self._drop, msg)
                return
            tries += 1
            delay += self.rto
            call_later(self.env, delay, self._retransmit, msg)
        call_later(self.env, delay + self._latency(), self._arrive, (msg, deliver))

    # ------------------------------------------------------------------
    def _arm(self, delay: float) -> None:
        # The delay line's single wake-up event is reused: SimPy leaves a
        # processed event alone, so re-arming it only resets its callbacks.
        # Its callbacks list is never mutated by SimPy (only replaced by
        # None once processed), so one list object serves every wake-up.
        ev = self._waker
        ev.callbacks = self._wake_callbacks
        self.env.schedule(ev, NORMAL, delay if delay > 0 else 0.0)

    def _wake(self, _event) -> None:
        line = self._line
        now = self.env._now
        counter = self.sim.bytes
        traced = self.sim.tracer is not None
        # The head is due (its wake-up was scheduled for it); deliver every
        # other entry due by now too, then re-arm for the next one.
        while True:
            _, msg, deliver = line.popleft()
            self.in_flight -= 1
            counter.delivered += 1
            if traced:
                self.sim.tracer.arrived(self, msg)
            deliver(msg)
            if not line or line[0][0] > now:
                break
        if line:
            self._arm(line[0][0] - now)
        else:
            self._armed = False

    def _arrive(self, event) -> None:
        msg, deliver = event._value
        self._deliver(msg, deliver)

    def _deliver(self, msg, deliver) -> None:
        self.in_flight -= 1
        self.sim.bytes.delivered += 1
        if self.sim.tracer is not None:
            self.sim.tracer.arrived(self, msg)
        deliver(msg)

    def _retransmit(self, event) -> None:
        self.sim.bytes.transmit(event._value, retransmission=True)
        if self.sim.tracer is not None:
            self.sim.tracer.retransmitted(self, event._value)

    def _drop(self, event) -> None:
        self.in_flight -= 1
        self.sim.bytes.dropped += 1
        if self.sim.tracer is not None:
            self.sim.tracer.dropped(self, event._value)
        if self.on_drop is not None:
            self.on_drop(event._value)

    def pending(self) -> int:
        """Messages on the link now (read off the delay line or the counter)."""
        return len(self._line) if self._fifo else self.in_flight
