"""Metrics of the multiplexing pattern (HTTP/1.1 pools, HTTP/2, HTTP/3, proxies)."""

from __future__ import annotations

from commsim.metrics import define

define("page_load_time", "s", "mean time from the start of a page load to the delivery of its "
       "last object (page workload; pages started in the window)")
define("object_latency_mean", "s", "mean time from a request being issued by the client "
       "(queued for a connection) to its whole response being delivered")
define("hol_blocked_s", "s", "message-seconds spent head-of-line blocked: complete at the "
       "receiver but waiting behind another message's missing segment on the same TCP "
       "connection (always 0 over QUIC)")
define("header_bytes_per_request", "B", "request + response header bytes per completed "
       "request, as encoded (compressed after the first on a connection where the protocol "
       "compresses), client tier")
define("client_connections_opened", "1", "connections opened by clients (to the server or "
       "the proxy) in the window")
define("backend_connections_opened", "1", "connections opened by the proxy to the backend "
       "in the window")
define("client_connections_peak", "1", "most client connections open at once")
define("backend_connections_peak", "1", "most proxy-to-backend connections open at once")
define("proxy_utilization", "fraction", "fraction of the proxy's core-time busy in the window")
define("proxy_added_mean", "s", "mean time a request spent in the proxy beyond the backend "
       "exchange: proxy CPU queueing and work both ways, waiting for a backend "
       "connection or stream")
define("retransmissions", "1", "segment retransmissions in the whole run")
define("rto_timeouts", "1", "losses recovered by a retransmission timeout rather than "
       "fast retransmit, in the whole run")
