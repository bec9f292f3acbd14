"""Server CPU per kind of work, and which patterns apply which (issue 13).

``server.service_time`` is the application's work per request; real servers
also pay per kind of protocol work, which the loopback testbed measures and
``commsim calibrate`` fits.  The ``server`` section's keys:

==========================  ==============================================
``cpu_per_request``         parsing one request (headers, routing)
``cpu_per_response``        sending one response (headers, write)
``cpu_per_update``          encoding one update for one client
``cpu_per_frame``           writing one event frame on a stream
``cpu_per_connection``      accepting one connection (with a handshake)
``cpu_per_kib``             per KiB of body received or sent
==========================  ==============================================

Each defaults to 0, so results are unchanged until set.  Costs are added to
the server job that does the work (a request's job for request-response).
A pattern that does not apply a key refuses a non-zero value at load time
(:func:`check`), so no key is accepted without effect.  Applied in:
``request_response`` (request, response, connection, KiB); the polling
patterns (per poll: request + response, per update in it, per KiB of it);
``sse`` and ``push`` (stream open: request + response; per frame: frame +
update + KiB).  ``cpu_per_connection`` is not applied in the notification
patterns (their connection set-up is not modelled per connection here) and
is refused there.
"""

from __future__ import annotations

from commsim.errors import ConfigError

KEYS = ("cpu_per_request", "cpu_per_response", "cpu_per_update", "cpu_per_frame",
        "cpu_per_connection", "cpu_per_kib")
#: pattern -> the keys it applies
_POLL = {"cpu_per_request", "cpu_per_response", "cpu_per_update", "cpu_per_kib"}
APPLIED = {
    "request_response": {"cpu_per_request", "cpu_per_response", "cpu_per_connection",
                         "cpu_per_kib"},
    "short_polling": _POLL,
    "long_polling": _POLL,
    "sse": _POLL | {"cpu_per_frame"},
    "push": _POLL | {"cpu_per_frame"},
}
#: network keys of the message-level wire model (commsim.accounting.bytes)
WIRE_KEYS = ("segment_overhead", "acks_per_message")
#: patterns whose links are segment-level and count their own packet headers
OWN_TRANSPORT = {"multiplexing": "multiplexing.segment_overhead"}


def check(cfg: dict) -> None:
    """Refuse work-cost and wire keys the configured pattern would ignore."""
    pattern = cfg.get("pattern")
    server = cfg.get("server") or {}
    applied = APPLIED.get(pattern, set())
    for key in KEYS:
        value = server.get(key, 0.0) or 0.0
        if value and key not in applied:
            where = ", ".join(p for p, keys in APPLIED.items() if key in keys) or "no pattern yet"
            raise ConfigError(f"server.{key}", f"got {value:g}s; pattern {pattern!r} does not "
                              f"apply it (applied in: {where}); remove it or set 0")
    net = cfg.get("network") or {}
    if pattern == "request_response" and server.get("cpu_per_connection") \
            and net.get("handshake", "none") == "none":
        raise ConfigError("server.cpu_per_connection", "needs connections: set "
                          "network.handshake (tcp, tls1.2, tls1.3); with none no connection "
                          "is modelled")
    if pattern in OWN_TRANSPORT:
        for key in WIRE_KEYS:
            if net.get(key):
                raise ConfigError(f"network.{key}", f"got {net[key]:g}; pattern {pattern!r} "
                                  f"models segments itself: use {OWN_TRANSPORT[pattern]}")
        from commsim.config.load import default_of

        if net.get("mss", default_of("network.mss")) != default_of("network.mss"):  # the one value accepted
            raise ConfigError("network.mss", f"got {net['mss']:g}B; pattern {pattern!r} models "
                              f"segments itself: use {pattern}.mss")


class WorkCosts:
    """The run's per-kind CPU costs (seconds), read once."""

    __slots__ = KEYS + ("any",)

    def __init__(self, server: dict):
        for key in KEYS:
            setattr(self, key, float(server.get(key, 0.0) or 0.0))
        self.any = any(getattr(self, k) for k in KEYS)

    def poll(self, items) -> float:
        """CPU of answering one poll carrying ``items`` (flat (created, size,
        uid) triples, or None: empty)."""
        if items is None:
            return self.cpu_per_request + self.cpu_per_response
        return (self.cpu_per_request + self.cpu_per_response
                + self.cpu_per_update * (len(items) // 3)
                + self.cpu_per_kib * sum(items[1::3]) / 1024.0)

    def stream_open(self) -> float:
        """CPU of accepting a stream's (re)connect request and its opening response."""
        return self.cpu_per_request + self.cpu_per_response

    def frame(self, size: float) -> float:
        """CPU of encoding one update and writing it as one frame."""
        return self.cpu_per_frame + self.cpu_per_update + self.cpu_per_kib * size / 1024.0

    def exchange(self, request_bytes: float, response_bytes: float, new_connection: bool) -> float:
        """CPU of one request parsed and its response sent."""
        return (self.cpu_per_request + self.cpu_per_response
                + (self.cpu_per_connection if new_connection else 0.0)
                + self.cpu_per_kib * (request_bytes + response_bytes) / 1024.0)
