"""A segment-level transport: TCP-like ordered byte streams or QUIC-like streams.

Model and assumptions
---------------------
* A **message** handed to a connection (``send``) is split into segments of
  at most ``mss`` bytes of message data; every transmission of a segment also
  carries ``overhead`` bytes of packet headers (IP + TCP, or IP + UDP + QUIC),
  counted as ``framing``.  Message bytes are laid out in the order handshake,
  framing, header, payload, and each segment's bytes are split by category
  accordingly, so the categories of a message add up exactly.
* A **path** is one direction between two nodes: an optional FIFO
  transmitter of ``bandwidth`` shared by every connection on it (a segment
  occupies it for ``size * 8 / bandwidth``), then a one-way latency (a
  random latency never reorders a connection's segments: a segment arrives
  no earlier than the one sent before it).
* **Loss**: each transmission is lost independently with probability
  ``loss``, drawn when it leaves.  A lost segment is recovered by *fast
  retransmit* when three later segments of the same connection direction
  arrive (three duplicate ACKs, RFC 5681; QUIC's packet threshold, RFC 9002):
  the sender learns it one one-way latency after the third arrival.  If fewer
  than three arrive, the *retransmission timeout* ``rto`` (counted from the
  lost transmission) fires instead.  Retransmissions go before new data and
  may be lost again; the transport never gives up (a connection failure is
  not modelled), so ``dropped`` stays 0.
* **Ordering**: ``ordered=True`` (TCP) delivers a connection direction's
  segments in sequence order: bytes behind a missing segment wait for it,
  whatever stream they belong to (head-of-line blocking).  ``ordered=False``
  (QUIC) delivers each stream on its own: a message completes when all of
  its own segments have arrived.
* **Head-of-line blocked time** of a message: ``delivery - last arrival of
  its own segments``, i.e. the time it waited only because of some *other*
  message's missing segment.  It is 0 for QUIC by construction and for a
  TCP connection carrying one message at a time.
* **Congestion control** (``slow_start=True``): per connection direction, at
  most ``cwnd`` bytes of message data are unacknowledged (a segment may
  start while fewer are); ``cwnd`` starts at ``initial_window`` segments of
  ``mss`` bytes (RFC 6928: 10), grows by the bytes acknowledged below
  ``ssthresh`` (slow start) and by ``mss * acked / cwnd`` above it, is halved
  once per window of data on a fast retransmit and falls to one ``mss`` on a
  timeout (Reno with byte counting, RFC 5681 / RFC 3465).  Counting bytes
  rather than segments keeps small messages, each in its own segment here,
  from using up the window as if they were full segments.  The TCP
  handshake does not grow the window (RFC 5681 section 3.1: "the SYN/ACK and
  the acknowledgment of the SYN/ACK MUST NOT increase the size of the
  congestion window"; RFC 3390, RFC 6928): on an ordered connection the
  first message of each direction, if it is a ``handshake`` message (SYN,
  SYN-ACK), and the client's ACK of the SYN-ACK (the first ``TCP_ACK``
  handshake bytes sent after it, riding with the next message) are
  acknowledged without credit to ``cwnd``, so a response that follows a
  handshake starts with exactly ``initial_window`` segments.  TLS flights are
  TCP data and do grow it (QUIC's handshake packets, ``ordered=False``, are
  congestion-controlled data too, RFC 9002).  ACKs
  are one per segment, travel back in one mean one-way latency, are never
  lost and carry no counted bytes.  With ``slow_start=False`` segments are
  released as soon as they are sent.
* Streams of one connection share it round robin, one segment at a time
  (HTTP/2 and HTTP/3 interleave frames); retransmissions go first.

Ledger: a message counts as ``sent`` when handed to the connection, as
``delivered`` when its receiver has all of it; messages in between (queued
behind the congestion window, on the wire, waiting for a retransmission)
are ``in_flight``.  Bytes are counted through
:meth:`commsim.accounting.bytes.ByteCounter.transmit_part`, once per
segment transmission, retransmissions also under ``retransmitted``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

from commsim.engine.simulation import call_at, call_later

DUPACK_THRESHOLD = 3
TCP_ACK = 52  # the client's ACK of the SYN-ACK (commsim.network.connection.TCP_LAST)


class Path:
    """One direction between two nodes: shared FIFO transmitter, latency, loss."""

    def __init__(self, sim, name: str, latency, bandwidth: float | None, loss: float):
        self.sim = sim
        self.name = name
        dist = sim.distribution(latency, "duration", f"{name}.latency")
        self.latency_mean = dist.mean
        self.constant = dist.mean if dist.is_constant else None
        self._latency = dist.sampler(sim.streams.generator(f"latency/{name}"))
        self.bandwidth = bandwidth
        self.loss = loss
        self._uniform = None
        if loss > 0:
            from commsim.dists import make_distribution
            self._uniform = make_distribution({"dist": "uniform", "low": 0, "high": 1},
                                              "number", name).sampler(
                sim.streams.generator(f"loss/{name}"))
        self.busy_until = 0.0


class _Transfer:
    """One message on its way: its segments, arrivals and receiver callback."""

    __slots__ = ("msg", "deliver", "nsegs", "got", "max_arrival")

    def __init__(self, msg, deliver, nsegs):
        self.msg = msg
        self.deliver = deliver
        self.nsegs = nsegs
        self.got = 0
        self.max_arrival = 0.0


class _Segment:
    __slots__ = ("half", "tr", "seq", "header", "payload", "framing", "handshake", "size",
                 "tx", "lost_tx", "first", "kind", "control")

    def __init__(self, half, tr, header, payload, framing, handshake, kind, control=0):
        self.half = half
        self.tr = tr
        self.seq = -1
        self.header = header
        self.payload = payload
        self.framing = framing
        self.handshake = handshake
        self.size = header + payload + framing + handshake
        self.tx = -1
        self.lost_tx = -1
        self.kind = kind  # message kind on the first segment, else None
        self.control = control  # TCP control bytes (SYN, SYN-ACK, their ACK): no cwnd credit


class Half:
    """One direction of one connection: sender queues and window, receiver order."""

    def __init__(self, transport, path: Path, ordered: bool, ack_delay: float,
                 client_side: bool = False):
        self.t = transport
        self.path = path
        self.ordered = ordered
        self.ack_delay = ack_delay
        self.next_seq = 0
        self.rcv_next = 0
        self.ooo: dict[int, _Segment] = {}
        self.streams: dict = {}
        self.active: deque = deque()
        self.rtx: deque = deque()
        cc = transport.slow_start
        self.mss = transport.mss
        self.cwnd = float(transport.initial_window * self.mss) if cc else math.inf
        self.ssthresh = math.inf
        self.pipe = 0
        self.tx = 0
        self.recover = -1
        self.last_arrival = 0.0
        self.lost: list = []
        # TCP control bytes still to come: the SYN (or SYN-ACK) if the first
        # message is a handshake; on the client side then its ACK.
        self.syn_pending = ordered and cc
        self.ack_pending = TCP_ACK if (ordered and cc and client_side) else 0

    # ------------------------------------------------------------ sender --
    def send(self, msg, stream, deliver: Callable, unordered: bool = False) -> None:
        """Hand ``msg`` to this direction; ``deliver(msg)`` runs at the receiver
        once all of it has been delivered (in order for TCP).  ``unordered``:
        the message takes no place in the byte stream (a bare TCP ACK), so
        nothing waits for it and it waits for nothing."""
        t = self.t
        sim = t.sim
        sim.bytes.sent += 1
        t.in_flight += 1
        if sim.tracer is not None:
            sim.tracer.sent(self.path, msg)
        mss = t.mss
        size = msg.size
        nsegs = max(1, -(-size // mss))
        tr = _Transfer(msg, deliver, nsegs)
        q = self.streams.get(stream)
        if q is None:
            q = self.streams[stream] = deque()
        was_empty = not q
        # Split the layout [handshake | framing | header | payload] into segments.
        parts = [msg.handshake, msg.framing, msg.header, msg.payload]
        cat = 0
        left = parts[0]
        kind = msg.kind
        control = 0
        if self.syn_pending:
            self.syn_pending = False
            if kind == "handshake":
                control = msg.handshake
            else:
                self.ack_pending = 0  # no handshake on this connection
        elif self.ack_pending and msg.handshake:
            control = min(self.ack_pending, msg.handshake)
            self.ack_pending = 0
        overhead = t.overhead
        for i in range(nsegs):
            room = mss if i < nsegs - 1 else size - mss * (nsegs - 1)
            got = [0, 0, 0, 0]
            while room > 0:
                while left == 0:
                    cat += 1
                    left = parts[cat]
                take = left if left < room else room
                got[cat] += take
                left -= take
                room -= take
            c = control if control < got[0] else got[0]
            control -= c
            seg = _Segment(self, tr, got[2], got[3], got[1] + overhead, got[0], kind, c)
            if unordered:
                seg.seq = -2
            q.append(seg)
            kind = None
        if was_empty:
            self.active.append(q)
        self.release()

    def release(self) -> None:
        active = self.active
        rtx = self.rtx
        while self.pipe < self.cwnd:
            if rtx:
                self._transmit(rtx.popleft(), True)
                continue
            if not active:
                return
            q = active[0]
            seg = q.popleft()
            if q:
                active.rotate(-1)
            else:
                active.popleft()
            if seg.seq == -1:
                seg.seq = self.next_seq
                self.next_seq += 1
            self._transmit(seg, False)

    def _transmit(self, seg: _Segment, retx: bool) -> None:
        t = self.t
        sim = t.sim
        env = t.env
        now = env.now
        sim.bytes.transmit_part(seg.header, seg.payload, seg.framing, seg.handshake, retx,
                                None if retx else seg.kind, seg.tr.msg.kind)
        t.transmissions += 1
        if retx:
            t.retransmissions += 1
            if sim.tracer is not None:
                sim.tracer.retransmitted(self.path, seg.tr.msg)
        self.pipe += seg.size - t.overhead
        self.tx += 1
        seg.tx = self.tx
        path = self.path
        if path.bandwidth is None:
            depart = now
        else:
            start = path.busy_until if path.busy_until > now else now
            depart = start + seg.size * 8.0 / path.bandwidth
            path.busy_until = depart
        if path._uniform is not None and path._uniform() < path.loss:
            seg.lost_tx = seg.tx
            self.lost.append([seg, 0])
            call_later(env, depart - now + t.rto, self._timeout, (seg, seg.tx))
            return
        lat = path.constant if path.constant is not None else path._latency()
        arrive = depart + lat
        if arrive < self.last_arrival:
            arrive = self.last_arrival
        self.last_arrival = arrive
        call_at(env, arrive, t._arrive, seg)

    # ------------------------------------------------------ loss recovery --
    def _timeout(self, event) -> None:
        seg, tx = event.value
        if seg.lost_tx != tx:
            return  # already recovered by fast retransmit
        seg.lost_tx = -1
        lost = self.lost
        for i, entry in enumerate(lost):
            if entry[0] is seg:
                del lost[i]
                break
        self.t.timeouts += 1
        data = seg.size - self.t.overhead
        self.pipe -= data
        if self.cwnd != math.inf:
            self.ssthresh = max(self.pipe / 2.0, 2.0 * self.mss)
            self.cwnd = float(self.mss)
            self.recover = self.tx
        self.rtx.append(seg)
        self.release()

    def _fast(self, event) -> None:
        seg, tx = event.value
        if seg.lost_tx != tx:
            return  # the timeout got there first
        seg.lost_tx = -1
        self.t.fast_retransmits += 1
        if self.cwnd != math.inf and tx > self.recover:
            self.ssthresh = max(self.cwnd / 2.0, 2.0 * self.mss)
            self.cwnd = self.ssthresh
            self.recover = self.tx
        self.pipe -= seg.size - self.t.overhead
        self.rtx.append(seg)
        self.release()

    def _ack(self, event) -> None:
        seg = event.value
        acked = seg.size - self.t.overhead
        self.pipe -= acked
        acked -= seg.control
        if acked <= 0:
            self.release()
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += acked
        else:
            self.cwnd += self.mss * acked / self.cwnd
        self.release()


class TransportConnection:
    """A connection between two nodes: ``up`` and ``down`` directions."""

    __slots__ = ("up", "down", "ordered")

    def __init__(self, transport, up: Path, down: Path, ordered: bool):
        self.ordered = ordered
        self.up = Half(transport, up, ordered, down.latency_mean, client_side=True)
        self.down = Half(transport, down, ordered, up.latency_mean)


class Transport:
    """Shared settings and counters of every transport connection of a run."""

    def __init__(self, sim, mss: int = 1460, overhead: int = 40, rto: float = 0.2,
                 slow_start: bool = True, initial_window: int = 10):
        self.sim = sim
        self.env = sim.env
        self.mss = int(mss)
        self.overhead = int(overhead)
        self.rto = rto
        self.slow_start = slow_start
        self.initial_window = initial_window
        self.in_flight = 0         # messages sent, not yet delivered
        self.transmissions = 0     # segment transmissions (whole run)
        self.retransmissions = 0
        self.fast_retransmits = 0
        self.timeouts = 0
        self.hol_blocked_s = 0.0   # in the window

    def connect(self, up: Path, down: Path, ordered: bool) -> TransportConnection:
        return TransportConnection(self, up, down, ordered)

    # ----------------------------------------------------------- receiver --
    def _arrive(self, event) -> None:
        seg = event.value
        half = seg.half
        now = self.env.now
        tr = seg.tr
        if now > tr.max_arrival:
            tr.max_arrival = now
        lost = half.lost
        if lost:
            tx = seg.tx
            i = 0
            while i < len(lost):
                entry = lost[i]
                if entry[0].lost_tx < tx:
                    entry[1] += 1
                    if entry[1] == DUPACK_THRESHOLD:
                        del lost[i]
                        s = entry[0]
                        call_later(self.env, half.ack_delay, half._fast, (s, s.lost_tx))
                        continue
                i += 1
        if half.cwnd != math.inf:
            call_later(self.env, half.ack_delay, half._ack, seg)
        if not half.ordered or seg.seq < 0:
            tr.got += 1
            if tr.got == tr.nsegs:
                self._complete(tr, now, half)
            return
        if seg.seq != half.rcv_next:
            half.ooo[seg.seq] = seg
            return
        self._consume(seg, now)
        half.rcv_next += 1
        ooo = half.ooo
        while ooo and half.rcv_next in ooo:
            self._consume(ooo.pop(half.rcv_next), now)
            half.rcv_next += 1

    def _consume(self, seg, now) -> None:
        tr = seg.tr
        tr.got += 1
        if tr.got == tr.nsegs:
            self._complete(tr, now, seg.half)

    def _complete(self, tr: _Transfer, now: float, half: Half) -> None:
        sim = self.sim
        self.in_flight -= 1
        sim.bytes.delivered += 1
        if now > tr.max_arrival:
            self.hol_blocked_s += sim.overlap(tr.max_arrival, now)
        if sim.tracer is not None:
            sim.tracer.arrived(half.path, tr.msg)
        tr.deliver(tr.msg)
