"""Declarative description of every configuration key.

A :class:`Field` says what one YAML key holds: its kind (which fixes the unit
grammar, see :mod:`commsim.units`), its default, its allowed range or choices
and a one-line doc.  Sections (``network``, ``server``, ``clients`` and one per
pattern) are plain ``{key: Field}`` mappings registered here; patterns add
their own with :func:`register_section`.  The loader, the resolved-config
writer and ``commsim patterns`` all read these declarations, so a parameter is
described in exactly one place.

Kinds
-----
``duration`` (s), ``size`` (bytes), ``rate`` (1/s), ``bandwidth`` (bit/s),
``number``, ``int``, ``bool``, ``str``, ``choice`` (one of ``choices``),
``fraction`` (a number in [0, 1]), ``dist:<kind>``, a distribution whose
values have the unit of ``<kind>`` (see :mod:`commsim.dists`), and
``list:<kind>``, a YAML list of values of ``<kind>`` (``min``/``max`` apply to
each element).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

UNITS = {
    "duration": "s",
    "size": "B",
    "rate": "1/s",
    "bandwidth": "bit/s",
}


@dataclass(frozen=True)
class Field:
    """One configuration key.

    ``default`` is written in the same form a user would write (units allowed)
    and is resolved like user input, so defaults are validated too.  A default
    of ``None`` with ``nullable=True`` means "off".
    """

    kind: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple = ()
    nullable: bool = False
    required: bool = False

    @property
    def unit(self) -> str:
        base = self.kind.split(":", 1)[-1]
        return UNITS.get(base, "")

    def describe_allowed(self) -> str:
        """Human description of what the key accepts, for error messages."""
        from commsim.units import UNIT_HELP

        base = self.kind.split(":", 1)[-1]
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "int":
            text = "an integer"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a string"
        elif self.kind == "fraction":
            text = "a number between 0 and 1"
        elif self.kind.startswith("list:"):
            text = f"a list of values, each {UNIT_HELP.get(base, 'a number')}"
        elif self.kind.startswith("dist:"):
            text = (f"{UNIT_HELP.get(base, 'a number')}, or a distribution mapping such as "
                    "{dist: exponential, mean: ...}")
        else:
            text = UNIT_HELP.get(base, "a number")
        bounds = []
        if self.min is not None:
            bounds.append((">" if self.min_exclusive else ">=") + f" {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        if bounds:
            text += " " + " and ".join(bounds)
        if self.nullable:
            text += " (or null for none)"
        return text


@dataclass
class Section:
    """A named group of keys, e.g. ``network`` or ``long_polling``."""

    name: str
    fields: dict[str, Field]
    doc: str = ""
    pattern: str | None = None  # owning pattern, if any
    check: Callable[[dict, str], None] | None = field(default=None, repr=False)


#: Keys at the top of an experiment file (besides the sections).
TOP_LEVEL: dict[str, Field] = {
    "name": Field("str", None, "experiment name; results go to results/<name>/ (default: the file's stem); one plain "
                  "folder name of at most 100 characters: no '/', '\\', control characters, "
                  "not '.' or '..'"),
    "seed": Field("int", 1, "base random seed; replication r uses a seed derived from (seed, r)", min=0),
    "duration": Field("duration", "60s", "measured simulated time, after the warm-up", min=0, min_exclusive=True),
    "warmup": Field("duration", "0s", "simulated time run before measuring starts (discarded)", min=0),
    "replications": Field("int", 1, "independent replications per sweep point", min=1),
    "pattern": Field("choice", None, "the communication pattern to simulate", required=True),
    "max_run_queue": Field("int", 1_000_000, "jobs waiting in one CPU's run queue (any node: "
                           "server, broker, proxy, store) at which the run stops and is "
                           "flagged unstable (its load exceeds capacity and its memory would "
                           "grow without bound); null: never", min=1, nullable=True),
}

#: Sections shared by the patterns.
SECTIONS: dict[str, Section] = {}


def register_section(section: Section) -> Section:
    """Register a section; re-registering the same object is a no-op."""
    existing = SECTIONS.get(section.name)
    if existing is not None and existing is not section:
        raise RuntimeError(f"configuration section {section.name!r} registered twice")
    SECTIONS[section.name] = section
    return section


register_section(Section("network", {
    "latency": Field("dist:duration", "0s", "one-way latency of every link", min=0),
    "bandwidth": Field("bandwidth", None, "capacity of the server's link in each direction; "
                       "null means no serialisation delay", min=0, min_exclusive=True, nullable=True),
    "loss": Field("fraction", 0.0, "probability that one transmission of a message is lost", max=0.99),
    "rto": Field("duration", "200ms", "retransmission timeout after a loss", min=0, min_exclusive=True),
    "max_retries": Field("int", 5, "retransmissions before a message is dropped", min=0),
    "handshake": Field("choice", "none", "connection set-up before a request: none, TCP (1 RTT), "
                       "TCP+TLS 1.2 (1+2 RTT) or TCP+TLS 1.3 (1+1 RTT)",
                       choices=("none", "tcp", "tls1.2", "tls1.3")),
    "keepalive": Field("bool", True, "reuse a client's connection for later requests "
                       "(false: a new connection, and handshake, per request)"),
    "tls_server_cpu": Field("duration", "0.5ms", "server CPU per TLS handshake "
                            "(key exchange and signature)", min=0),
    "idle_timeout": Field("duration", None, "the server closes a kept-alive connection unused "
                          "for longer than this; the next request pays a new handshake "
                          "(null: never)", min=0, min_exclusive=True, nullable=True),
    # Bytes on the wire under the application (commsim/accounting/bytes.py; issue 13).
    "segment_overhead": Field("size", "0B", "TCP/IP header bytes per segment, counted as "
                              "bytes_transport (52 on loopback with timestamps; 0: not counted)",
                              min=0),
    "mss": Field("size", "1460B", "largest segment payload (splits a message into segments)",
                 min=1),
    "acks_per_message": Field("number", 0.0, "pure ACK segments per message sent (the "
                              "receiver's; the testbed measures 0.8-1.0)", min=0),
}, doc="Links between clients and the server."))

register_section(Section("server", {
    "cores": Field("int", 1, "CPU cores (parallel servers of the queue)", min=1),
    "service_time": Field("dist:duration", {"dist": "exponential", "mean": "1ms"},
                          "CPU time of the application work per request", min=0),
    # Per kind of protocol work (commsim/accounting/work.py; issue 13): 0 = not modelled.
    "cpu_per_request": Field("duration", "0s", "CPU to parse one request", min=0),
    "cpu_per_response": Field("duration", "0s", "CPU to send one response", min=0),
    "cpu_per_update": Field("duration", "0s", "CPU to encode one update for one client", min=0),
    "cpu_per_frame": Field("duration", "0s", "CPU to write one event frame on a stream", min=0),
    "cpu_per_connection": Field("duration", "0s", "CPU to accept one connection", min=0),
    "cpu_per_kib": Field("duration", "0s", "CPU per KiB of body received or sent", min=0),
}, doc="The server node: a CPU with a FIFO run queue."))

register_section(Section("clients", {
    "count": Field("int", 100, "number of clients", min=1),
    "mode": Field("choice", "sync", "sync: send, block until the response, think, repeat "
                  "(closed loop); async: Poisson requests at `rate` regardless of responses "
                  "(open loop)", choices=("sync", "async")),
    "rate": Field("rate", "1/s", "requests per second per client (async mode)", min=0, min_exclusive=True),
    "think_time": Field("dist:duration", {"dist": "exponential", "mean": "1s"},
                        "pause between a response and the next request (sync mode)", min=0),
    "service_time": Field("dist:duration", "0s", "client processing time per received event "
                          "(notification patterns; 0: instant)", min=0),
    "buffer": Field("int", None, "events that may wait at a client beside the one being "
                    "processed; more are dropped (push; null: unbounded)", min=0, nullable=True),
}, doc="The client population."))

CORE_SECTIONS = ("network", "server", "clients")
