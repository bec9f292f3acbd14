"""Shared ``network`` keys that take effect only together with another key.

A retransmission timeout means nothing without loss, a TLS handshake's CPU
nothing without TLS, segment sizes and pure ACKs nothing without segment
headers to count.  Set to anything but its default (or 0, which agrees
with the need's absence) while no run of the experiment has what it needs,
such a key would be accepted and do nothing, so the loader refuses it
(:func:`check`), naming the key, its value and the key to set.  One run
that has what it needs is enough: a sweep of ``network.handshake: [none,
tls1.3]`` with ``tls_server_cpu`` set is fine.  Keys only an included preset
sets are not checked (a calibration preset serves any experiment).

Keys a pattern never reads are its ``Pattern.ignores``
(:mod:`commsim.patterns.base`); per-run rules across keys are the patterns'
``check`` functions (e.g. :func:`commsim.network.connection.check_idle_timeout`).
"""

from __future__ import annotations

from typing import Callable

from commsim.errors import ConfigError, describe


def _lossy(net: dict) -> bool:
    return net["loss"] > 0


def _tls(net: dict) -> bool:
    return str(net["handshake"]).startswith("tls")


def _connections(net: dict) -> bool:
    return net["handshake"] != "none"


def _segments(net: dict) -> bool:
    return net["segment_overhead"] > 0


#: network key -> (what it needs, as a test of a run's network section; the text)
NEEDS: dict[str, tuple[Callable[[dict], bool], str]] = {
    "rto": (_lossy, "network.loss > 0 (the timeout is of a lost transmission)"),
    "max_retries": (_lossy, "network.loss > 0 (the retransmissions are of lost transmissions)"),
    "tls_server_cpu": (_tls, "network.handshake tls1.2 or tls1.3 (it is the CPU of a TLS "
                             "handshake)"),
    "keepalive": (_connections, "network.handshake tcp, tls1.2 or tls1.3 (with none a new "
                                "connection costs nothing, kept alive or not)"),
    "mss": (_segments, "network.segment_overhead > 0 (segments are counted only with their "
                       "header bytes)"),
    "acks_per_message": (_segments, "network.segment_overhead > 0 (an ACK is counted as "
                                    "segment header bytes)"),
}


def _zero(value) -> bool:
    """A number 0 (no TLS CPU, no retries, no ACKs) agrees with the need's
    absence, so it is never refused."""
    return not isinstance(value, bool) and value == 0


def check(given: dict, defaults: dict, points) -> None:
    """Refuse a key of :data:`NEEDS` that ``given`` (dotted key -> (value as
    written, where: the key or ``sweep.<key>``)) sets to other than its
    default in some run while no run of ``points`` has what it needs."""
    for dotted, (value, where) in given.items():
        head, _, key = dotted.partition(".")
        if head != "network" or key not in NEEDS:
            continue
        test, text = NEEDS[key]
        nets = [p.config["network"] for p in points]
        if not any(net[key] != defaults[dotted] and not _zero(net[key]) for net in nets):
            continue  # its default, written out (as in a config.resolved.yaml), or 0: none of it
        if not any(test(net) for net in nets):
            raise ConfigError(where, f"got {describe(value)}; it takes effect only with {text}, "
                              "which no run of this experiment has: set that, or remove it")
