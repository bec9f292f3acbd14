"""Metrics of the connection module (:mod:`commsim.network.connection`),
reported by every pattern that sets connections up through it."""

from __future__ import annotations

from commsim.metrics import define

define("connections_idle_closed", "1", "kept-alive connections the server closed in the window "
       "because they were unused for longer than network.idle_timeout (reported only when it "
       "is set); each costs its client a new handshake on its next request")
