"""What a pattern provides to the runner.

A :class:`Pattern` names its config sections (registered in
:mod:`commsim.config.schema`) and a ``model`` factory: ``model(sim)`` builds
the pattern's nodes and processes on a fresh
:class:`~commsim.engine.Simulation`; after ``sim.run()`` the runner calls
``model.metrics()``, which returns ``{metric_name: value}`` using only names
defined in :mod:`commsim.metrics`.  ``figures(result, out_dir)`` optionally
draws the pattern's standard figures from a finished experiment.
``check(config)`` optionally rejects, with a
:class:`~commsim.errors.ConfigError`, a resolved run config the pattern cannot
model (a combination of keys across sections); it runs at load time, so the
error comes before anything runs or is written.
``network`` says, per group of ``network`` keys (:data:`NETWORK_GROUPS`),
what those keys do in this pattern, or that (and why) they are refused;
``docs/patterns.md`` shows it, and a test requires every group of every
pattern, so no network key is accepted without saying what it does.
``ignores`` names the ``clients``, ``server`` and ``network`` keys the
pattern does not read (dotted, e.g. ``"clients.rate"``), each with what to
use instead (keys that need another key are :mod:`commsim.config.needs`); the
loader refuses one the user sets to anything but its default
(:func:`commsim.config.load.load`), unless another pattern of the same run
reads it or only an included preset sets it (tests/test_keys_read.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


#: The ``network`` keys, grouped as a pattern describes their effect.
NETWORK_GROUPS: dict[str, tuple[str, ...]] = {
    "latency": ("latency",),
    "bandwidth": ("bandwidth",),
    "loss": ("loss", "rto", "max_retries"),
    "connections": ("handshake", "keepalive", "tls_server_cpu"),
    "idle_close": ("idle_timeout",),
    "wire": ("segment_overhead", "mss", "acks_per_message"),
}

IDLE_CLOSE = ("the server closes a kept-alive connection idle for idle_timeout; the client's "
              "next request pays a new handshake (connections_idle_closed counts them); "
              "refused with handshake: none or keepalive: false")

WIRE_COUNTED = ("TCP/IP header bytes per segment and pure ACKs are counted as bytes_transport "
         "(bytes_wire = bytes_total + bytes_transport)")


@dataclass(frozen=True)
class Pattern:
    name: str
    summary: str
    model: Callable[[Any], Any]
    sections: tuple[str, ...] = ()
    figures: Callable | None = field(default=None, compare=False)
    check: Callable[[dict], None] | None = field(default=None, compare=False)
    network: dict = field(default_factory=dict, compare=False)
    ignores: dict = field(default_factory=dict, compare=False)


#: ``Pattern.ignores`` of the patterns without the request-response client
#: population (commsim/clients/population.py reads these three).
NO_POPULATION = ("clients.mode", "clients.rate", "clients.think_time")
#: the streaming patterns' client queue (commsim/patterns/notifications/streaming.py)
CLIENT_QUEUE = ("clients.service_time", "clients.buffer")
CLIENT_QUEUE_WHY = ("client processing is modelled only where updates arrive unasked: "
                    "sse, push and websocket")


def ignoring(keys, why: str) -> dict:
    """``{key: why}`` for each of ``keys`` (a ``Pattern.ignores`` part)."""
    return {k: why for k in keys}
