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
  A dropped message is reported to ``on_drop(msg)``; with ``resend_dropped``
  the link also sends it again at once (the sender's retry: a new send in the
  ledger, to the same receiver and stream).

Ordered streams (:meth:`Link.send_ordered`): messages of one connection are
delivered in the order sent; a retransmitted one delays those behind it
(head-of-line blocking), as TCP's in-order delivery does.

Build links with :func:`network_link` (the ``network`` section, or explicit
keys for a hop configured otherwise) or :func:`loopback_link`; constructing
:class:`Link` directly stays possible for hops with fully explicit keys.

Speed: when the latency is constant and there is no loss, arrivals leave in
the order they were sent, so the link is a FIFO delay line with a single
pending wake-up however many messages are in flight.  Otherwise each message
has its own scheduled arrival.

Zero-time hops (opt-in, :meth:`Link.deliver_at_once`): a hop with a constant
zero latency, no bandwidth limit and no loss can deliver inside
:meth:`Link.send` itself, with no wake-up event.  Arrival times are the same
(now); what changes is the order among events of the same instant: the
receiver runs before ``send`` returns, not after the events already due now.
So the sender's code after ``send`` runs *after* the whole receiving chain
(re-entrancy): a model opts in only for hops whose every sender calls
``send`` last, with its own state already consistent.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from commsim.engine.events import Waker, call_at, call_later


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
        self._stream_last: dict = {}  # ordered stream -> its last scheduled arrival
        self._armed = False
        self.in_flight = 0
        # Optional ``on_drop(msg)``: called when a message is given up on
        # (after max_retries), so a model can react as its protocol would.
        self.on_drop: Callable | None = None
        # ``resend_dropped``: the sender sends a message the link gave up on
        # again at once, to the same receiver (and stream): a new send in the
        # ledger, so a message is never lost for good (the patterns whose
        # protocol retries, e.g. the notification patterns, set it).
        self.resend_dropped = False
        self._fifo = self.constant_latency is not None and loss == 0
        self._immediate = False  # deliver inside send() (deliver_at_once)
        self._waker = Waker(sim.env, self._wake)  # the delay line's one wake-up

    def deliver_at_once(self) -> bool:
        """Opt in to synchronous delivery where the hop takes no time at all
        (constant zero latency, no bandwidth, no loss): :meth:`send` then
        counts the message sent and delivered and calls ``deliver(msg)``
        before it returns, with no event.  Only for hops whose senders call
        ``send`` as their last step (see the module docstring).  Returns
        whether it applies (else the hop stays as it was)."""
        self._immediate = self._fifo and self.constant_latency == 0 and self.bandwidth is None
        return self._immediate

    # ------------------------------------------------------------------
    def send(self, msg, deliver: Callable) -> None:
        """Put ``msg`` on the link; ``deliver(msg)`` runs when it arrives."""
        # The hot path: _enter's work written out (one call fewer per message).
        sim = self.sim
        counter = sim.bytes
        counter.sent += 1
        counter.transmit(msg)
        if sim.tracer is not None:
            sim.tracer.sent(self, msg)
        if self._immediate:  # a zero-time hop (deliver_at_once): no event, never in flight
            counter.delivered += 1
            if sim.tracer is not None:
                sim.tracer.arrived(self, msg)
            deliver(msg)
            return
        now = self.env.now
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
                self._waker.arm(arrive - now)
            return
        if self.loss == 0:
            call_at(self.env, depart + self._latency(), self._arrive, (msg, deliver))
            return
        # Lossy: decide the fate of every transmission now.
        delay = self._fate(msg, deliver, None, depart - now)
        if delay is not None:
            call_later(self.env, delay + self._latency(), self._arrive, (msg, deliver))

    def _enter(self, msg, now: float) -> float:
        """Count ``msg`` as sent (ledger, bytes, trace) and return when its
        last bit leaves: at once without a bandwidth limit, else after the
        messages queued before it and its own serialisation time."""
        sim = self.sim
        counter = sim.bytes
        counter.sent += 1
        counter.transmit(msg)
        if sim.tracer is not None:
            sim.tracer.sent(self, msg)
        self.in_flight += 1
        if self.bandwidth is None:
            return now
        start = self._busy_until if self._busy_until > now else now
        depart = start + msg.size * 8.0 / self.bandwidth
        self._busy_until = depart
        return depart

    def _fate(self, msg, deliver, stream, delay: float):
        """Draw the losses of ``msg`` (first transmission ``delay`` from now):
        schedule its retransmissions; return the delay of the transmission
        that gets through, or None when the link gives up (drop scheduled)."""
        tries = 0
        while self._uniform() < self.loss:
            if tries == self.max_retries:
                call_later(self.env, delay + self.rto, self._drop, (msg, deliver, stream))
                return None
            tries += 1
            delay += self.rto
            call_later(self.env, delay, self._retransmit, msg)
        return delay

    def send_ordered(self, msg, deliver: Callable, stream) -> None:
        """Like :meth:`send`, for a message on an ordered byte stream (one TCP
        connection, named by the hashable ``stream``): it is delivered no
        earlier than the message sent before it on the same stream, so a
        lost and retransmitted message holds back the ones behind it
        (head-of-line blocking).  Without loss and with a constant latency
        every message keeps its order anyway and this is :meth:`send`.
        A message the link gives up on (after ``max_retries``) does not hold
        back later ones (its sender is told through ``on_drop``)."""
        if self._fifo:
            self.send(msg, deliver)
            return
        now = self.env.now
        depart = self._enter(msg, now)
        delay = self._fate(msg, deliver, stream, depart - now) if self.loss > 0 else depart - now
        if delay is None:
            return
        arrive = now + delay + self._latency()
        last = self._stream_last.get(stream, 0.0)
        if arrive < last:
            arrive = last
        self._stream_last[stream] = arrive
        call_at(self.env, arrive, self._arrive, (msg, deliver))

    def forget_stream(self, stream) -> None:
        """The connection ``stream`` closed: drop its ordering state."""
        self._stream_last.pop(stream, None)

    # ------------------------------------------------------------------
    def _wake(self, _event) -> None:
        line = self._line
        now = self.env.now
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
            self._waker.arm(line[0][0] - now)
        else:
            self._armed = False

    def _arrive(self, event) -> None:
        msg, deliver = event.value
        self._deliver(msg, deliver)

    def _deliver(self, msg, deliver) -> None:
        self.in_flight -= 1
        self.sim.bytes.delivered += 1
        if self.sim.tracer is not None:
            self.sim.tracer.arrived(self, msg)
        deliver(msg)

    def _retransmit(self, event) -> None:
        self.sim.bytes.transmit(event.value, retransmission=True)
        if self.sim.tracer is not None:
            self.sim.tracer.retransmitted(self, event.value)

    def _drop(self, event) -> None:
        msg, deliver, stream = event.value
        self.in_flight -= 1
        self.sim.bytes.dropped += 1
        if self.sim.tracer is not None:
            self.sim.tracer.dropped(self, msg)
        if self.on_drop is not None:
            self.on_drop(msg)
        if self.resend_dropped:
            if stream is None:
                self.send(msg, deliver)
            else:
                self.send_ordered(msg, deliver, stream)

    def pending(self) -> int:
        """Messages on the link now (read off the delay line or the counter)."""
        n = len(self._line) if self._fifo else self.in_flight
        return n + self._posted_pending() if self._posted else n

    # -- issue 14 (p-stream): a send whose arrival nobody waits for ---------
    _posted: deque | None = None  # arrival times of posted messages, in order

    def can_post(self) -> bool:
        """Whether :meth:`post` is allowed: a FIFO delay line (constant
        latency, no loss) without a bandwidth limit and without a tracer."""
        return self._fifo and self.bandwidth is None and self.sim.tracer is None

    def post(self, msg, leaves: float | None = None) -> float:
        """Send ``msg`` whose arrival no model acts on; return its arrival time.

        Counted as :meth:`send` counts it (ledger ``sent`` and the bytes, now),
        but no event is scheduled: its delivery is counted in the ledger once
        its arrival time has passed (read off a FIFO of arrival times, settled
        here and in :meth:`pending`), so ``sent == delivered + dropped +
        in_flight`` holds whenever the in-flight count is read through
        :meth:`pending`.  Only where :meth:`can_post`.

        * The arrival time is ``now + latency``: the time a :meth:`send` of
          the same message is delivered at whenever ``now >= latency`` (its
          wake-up's arming arithmetic is then exact); one arriving exactly at
          the end of the run is, as with :meth:`send`, still in flight.
        * ``leaves`` (> now): the message leaves then (a reply its receiver
          sends at once on getting a posted message) and arrives at ``leaves
          + latency``; it is counted now, so the measurement window's start
          must not fall in ``(now, leaves]`` (bytes count by which side of it
          a message leaves on): ``ValueError`` if it does.
        * Arrival times must not decrease from one post to the next on a link
          (true when every post on it is made the same way).
        * ``msg`` is not kept (a caller may reuse one object).
        """
        now = self.env.now
        sim = self.sim
        counter = sim.bytes
        if leaves is None:
            arrive = now + self.constant_latency
        else:
            if (now < sim.start) != (leaves < sim.start):
                raise ValueError("Link.post: the window starts before the message leaves")
            arrive = leaves + self.constant_latency
        posted = self._posted
        if posted is None:
            posted = self._posted = deque()
        elif posted and arrive < posted[-1]:
            raise ValueError("Link.post: arrival times must not decrease")
        counter.sent += 1
        counter.transmit(msg)
        while posted and posted[0] < now:
            posted.popleft()
            counter.delivered += 1
        posted.append(arrive)
        return arrive

    def _posted_pending(self) -> int:
        posted = self._posted
        now = self.env.now
        counter = self.sim.bytes
        while posted and posted[0] < now:
            posted.popleft()
            counter.delivered += 1
        return len(posted)


#: The ``network`` keys a hop is built from.
HOP_KEYS = ("latency", "bandwidth", "loss", "rto", "max_retries")


def network_link(sim, name: str, section: dict | None = None, **override) -> Link:
    """THE factory for a hop: a :class:`Link` that applies a network section.

    Contract
    --------
    * By default the hop applies the run's whole ``network`` section:
      ``latency`` (any duration distribution, drawn per transmission from
      stream ``latency/<name>``), ``bandwidth`` (the FIFO transmitter of
      that direction; null: none), ``loss`` (per transmission, stream
      ``loss/<name>``), ``rto`` (wait before each retransmission) and
      ``max_retries`` (retransmissions before the message is dropped and
      ``on_drop`` is called).  Every pattern's client-server hop is built
      this way, so every ``network`` key means the same on every such hop.
    * A hop configured otherwise says so explicitly: ``section`` is another
      mapping with the same keys (a datacentre hop's own section; missing
      keys are *not* taken from ``network``: bandwidth/loss default to none),
      and keyword ``override`` replaces single keys (``latency=...``).
      Unknown keys are a programming error (``TypeError``).
    * Random streams depend only on ``name``, so two hops never share one and
      a hop's draws do not depend on the other hops.
    """
    bad = set(override) - set(HOP_KEYS)
    if bad:
        raise TypeError(f"network_link: unknown hop keys {sorted(bad)}; allowed: {HOP_KEYS}")
    if section is None:
        cfg = dict(sim.config["network"])
    else:
        cfg = {"latency": 0.0, "bandwidth": None, "loss": 0.0, "rto": 0.2, "max_retries": 5}
        cfg.update({k: section[k] for k in HOP_KEYS if k in section})
    cfg.update(override)
    return Link(sim, name, cfg["latency"], bandwidth=cfg["bandwidth"], loss=cfg["loss"],
                rto=cfg["rto"], max_retries=cfg["max_retries"])


def loopback_link(sim, name: str, latency=0.0) -> Link:
    """A hop inside one host (a sidecar's loopback): the given latency
    (default 0), no bandwidth limit, no loss; the ``network`` section does
    not apply to it."""
    return Link(sim, name, latency)
