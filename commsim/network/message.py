"""Messages: what travels on a link.

A message carries sizes, not content: ``header``, ``payload``, ``framing`` and
``handshake`` bytes (see :mod:`commsim.accounting.bytes` for what each means),
plus ``data``, an arbitrary object the receiver acts on (an event list, a
request record).  Its ``kind`` (``"request"``, ``"response"``, ``"event"``,
``"handshake"``, ...) is what the message counts are keyed by.
"""

from __future__ import annotations


class Message:
    __slots__ = ("kind", "src", "dst", "header", "payload", "framing", "handshake",
                 "created", "data", "label")

    def __init__(self, kind: str, src, dst, header: int = 0, payload: int = 0,
                 framing: int = 0, handshake: int = 0, created: float = 0.0,
                 data=None, label: str = ""):
        self.kind = kind
        self.src = src
        self.dst = dst
        self.header = header
        self.payload = payload
        self.framing = framing
        self.handshake = handshake
        self.created = created
        self.data = data
        self.label = label

    @property
    def size(self) -> int:
        return self.header + self.payload + self.framing + self.handshake

    def __repr__(self) -> str:
        return (f"Message({self.kind} {self.src}->{self.dst}, header={self.header}, "
                f"payload={self.payload}, framing={self.framing}, handshake={self.handshake})")
