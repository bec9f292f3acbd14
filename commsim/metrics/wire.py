"""Metrics of the bytes under the application: TCP/IP headers and ACKs, and
the loopback testbed's own measurements (:mod:`commsim.testbed`).

``bytes_total`` and its categories are application bytes (what HTTP, SSE and
WebSocket put into the byte stream).  ``bytes_wire`` adds what the transport
puts around them: an IP + TCP header on every segment, pure ACKs included
(``bytes_transport``).  Imported by :mod:`commsim.accounting.bytes`, the
owner of bytes, so the names are defined wherever bytes are counted.
"""

from __future__ import annotations

from commsim.metrics import define

define("bytes_transport", "B", "TCP/IP header bytes of every segment in the window, pure ACKs "
       "included (testbed: segments counted by the kernel, TCP_INFO)")
define("bytes_wire", "B", "bytes on the wire in the window: bytes_total + bytes_transport")
define("bandwidth_wire", "B/s", "bytes_wire per second of the window (bandwidth counts "
       "application bytes only)")
define("segments", "1", "TCP segments in the window, both directions, pure ACKs included")
define("acks", "1", "pure ACKs (segments without data) in the window, both directions")
define("bytes_up", "B", "application bytes client -> server in the window")
define("bytes_down", "B", "application bytes server -> client in the window")
define("frames", "1", "event frames (SSE events, WebSocket messages) the server wrote in the window")
define("loopback_rtt", "s", "testbed: mean smoothed round-trip time the kernel measured on the "
       "client connections (TCP_INFO tcpi_min_rtt, free of delayed-ACK waits) at the window's end")
define("client_errors", "1", "testbed: client requests or streams that failed (connection "
       "errors, timeouts) in the whole run")
define("client_lag", "s", "testbed: mean lateness of the client process's timers in the window "
       "(how far behind the one client process ran; large values mean the clients, not the "
       "server, limited the run)")
