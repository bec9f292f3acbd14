"""Byte and message accounting: every byte put on the wire is counted here.

:class:`ByteCounter` is called by :class:`commsim.network.link.Link` once per
transmission of a message (a retransmission is a second transmission and is
counted again, and also under ``retransmitted``).  Bytes are split by category:

* ``header``: protocol headers of requests and responses;
* ``payload``: message bodies (after encoding);
* ``framing``: per-frame overhead of streams (SSE ``data:`` lines, WebSocket
  frame headers, HTTP/2 frame headers);
* ``handshake``: connection set-up (TCP SYN/SYN-ACK, TLS flights).

Bytes and per-kind message counts cover the measurement window only (a
transmission counts when it starts inside the window).  The message ledger
(``sent``, ``delivered``, ``dropped``) covers the whole run, so that
``sent == delivered + dropped + in_flight`` holds exactly at the end, where
``in_flight`` is read off the links' own queues.

``bytes_by_kind`` splits the same window's bytes by message kind (so a
pattern can tell, e.g., bytes into a broker from bytes out of it without
counting bytes itself).

**Bytes under the application** (``transport``; issue 13): the categories
above are application bytes.  With ``network.segment_overhead`` > 0 each
message-level transmission also counts ``ceil(size / network.mss)``
segments of that many TCP/IP header bytes, plus
``network.acks_per_message`` pure ACKs of the same size, under
``transport``; ``bytes_wire = total + transport``.  Assumptions: every
message starts a new segment (no coalescing of small messages; Nagle off, as
servers set it), ACKs are sent back but their latency is not modelled, and
the default (0) counts nothing, so today's results are unchanged.  The
segment-level transport (:mod:`commsim.network.transport`) counts its packet
headers per segment itself (under ``framing``), so these keys are refused
there (:mod:`commsim.accounting.work`).
"""

from __future__ import annotations

from commsim.metrics import wire as _wire_metrics  # noqa: F401  (defines bytes_wire, ...)

CATEGORIES = ("header", "payload", "framing", "handshake")


class ByteCounter:
    """Counts bytes by category, messages by kind, and the message ledger."""

    __slots__ = ("_sim", "header", "payload", "framing", "handshake", "retransmitted",
                 "_kinds", "sent", "delivered", "dropped", "transport", "segments", "acks",
                 "_seg", "_mss", "_acks")

    def __init__(self, sim):
        self._sim = sim
        self.header = 0
        self.payload = 0
        self.framing = 0
        self.handshake = 0
        self.retransmitted = 0
        # kind -> [messages first sent, bytes on the wire] inside the window
        self._kinds: dict[str, list] = {}
        self.sent = 0
        self.delivered = 0
        self.dropped = 0
        self.transport = 0.0  # TCP/IP header bytes (segments and pure ACKs), window only
        self.segments = 0.0
        self.acks = 0.0
        net = (getattr(sim, "config", None) or {}).get("network") or {}
        self._seg = float(net.get("segment_overhead", 0) or 0)
        self._mss = int(net.get("mss", 1460) or 1460)
        self._acks = float(net.get("acks_per_message", 0) or 0)

    def transmit(self, msg, retransmission: bool = False) -> None:
        """Count one transmission of ``msg`` (called by links only)."""
        sim = self._sim
        if sim.env.now < sim.start:  # by hand: this is the bytes instrument itself (per message)
            return
        h = msg.header
        p = msg.payload
        f = msg.framing
        s = msg.handshake
        self.header += h
        self.payload += p
        self.framing += f
        self.handshake += s
        size = h + p + f + s
        if self._seg:
            segs = -(-size // self._mss) or 1
            self.segments += segs
            self.acks += self._acks
            self.transport += (segs + self._acks) * self._seg
        stats = self._kinds.get(msg.kind)
        if stats is None:
            stats = self._kinds[msg.kind] = [0, 0]
        stats[1] += size
        if retransmission:
            self.retransmitted += size
        else:
            stats[0] += 1

    def transmit_many(self, kind: str, count: int, header: int, payload: int = 0,
                      framing: int = 0) -> None:
        """Count ``count`` first transmissions, all started inside the window,
        of messages of ``kind`` with these header and framing bytes each and
        ``payload`` bytes in all (a total over the ``count`` messages): one
        call for a batch of messages a model sends without :class:`Link`
        objects of their own (the run-ahead modes, commsim/engine/ahead.py).
        Not with ``network.segment_overhead`` (segments are counted per
        message)."""
        if self._seg:
            raise RuntimeError("transmit_many: segments are counted per message")
        head = count * header
        frames = count * framing
        self.header += head
        self.payload += payload
        self.framing += frames
        stats = self._kinds.get(kind)
        if stats is None:
            stats = self._kinds[kind] = [0, 0]
        stats[0] += count
        stats[1] += head + payload + frames

    def transmit_part(self, header: int = 0, payload: int = 0, framing: int = 0,
                      handshake: int = 0, retransmission: bool = False,
                      kind: str | None = None, message_kind: str | None = None) -> None:
        """Count one transmission of *part* of a message (a transport segment).

        For segment-level transports (:mod:`commsim.network.transport`), which
        split a message into segments and may retransmit one segment alone.
        ``kind`` is given with the first transmission of a message's first
        segment only, so per-kind counts stay counts of messages;
        ``message_kind`` is the kind of the message the segment belongs to,
        given with every segment, for the bytes per kind.
        """
        if self._sim.env.now >= self._sim.start:  # by hand: the bytes instrument itself
            self.header += header
            self.payload += payload
            self.framing += framing
            self.handshake += handshake
            size = header + payload + framing + handshake
            if message_kind is not None:
                self._stats(message_kind)[1] += size
            if retransmission:
                self.retransmitted += size
            if kind is not None:
                self._stats(kind)[0] += 1

    def _stats(self, kind: str) -> list:
        stats = self._kinds.get(kind)
        if stats is None:
            stats = self._kinds[kind] = [0, 0]
        return stats

    @property
    def total(self) -> int:
        return self.header + self.payload + self.framing + self.handshake

    @property
    def wire(self) -> float:
        """Application bytes plus the transport's own (segment headers, ACKs)."""
        return self.total + self.transport

    def bytes_of(self, *kinds: str) -> int:
        """Bytes (all categories, retransmissions included) of messages of
        these kinds put on the wire inside the window."""
        return sum(self._kinds[k][1] for k in kinds if k in self._kinds)

    def messages(self, kind: str) -> int:
        """Messages of ``kind`` first sent inside the window."""
        stats = self._kinds.get(kind)
        return stats[0] if stats is not None else 0
