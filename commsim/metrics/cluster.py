"""Metrics of a pattern composed behind a ``topology`` (commsim/nodes/cluster.py):
what a crash of an instance costs its clients and the survivors.  Reused
names: ``crashes`` (io), ``utilization_*``, ``imbalance``, ``servers_end``
(topology), ``handshake_cpu_s`` (websocket)."""

from __future__ import annotations

from commsim.metrics import define
from commsim.metrics import io as _io, topology as _topology, websocket as _ws  # noqa: F401

define("crash_resets", "1", "streams and connects reset by instance crashes in the window "
       "(each such client reconnects through the balancer)")
define("reconnect_rate_peak", "1/s", "most connection attempts (reconnects) in one "
       "topology.timeseries_bin inside the window, per second")
define("handshake_cpu_peak", "cores", "most TLS handshake CPU in one topology.timeseries_bin "
       "inside the window, over all instances, in cores (CPU-seconds per second)")
define("latency_storm_mean", "s", "mean latency of updates created in the topology.storm_window "
       "after the first crash in the window (delivered ones)")
define("latency_storm_p99", "s", "99th percentile latency of updates created in the "
       "topology.storm_window after the first crash in the window")
define("mesh_errors", "1", "503 answers of the mesh ingress in the window (topology.sidecar: no "
       "instance up, or a request's tries exhausted; the client sends it again)")
