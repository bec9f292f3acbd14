"""Metrics of the topology patterns: stateful vs stateless servers behind a
load balancer (``pattern: stateful``) and the sidecar proxy
(``pattern: sidecar``).  Each is defined once here and computed by the
helpers at the bottom (or by the pattern module from its own counters)."""

from __future__ import annotations

import math


from commsim.metrics import define


# ----------------------------------------------------------------- stateful --
define("sessions_lost", "1", "sessions that lived on a server when it crashed (crashes in the window)")
define("relogins", "1", "logins forced because the session was not found (lost in a crash, or "
       "a request routed to a server that does not hold it); operations started in the window")
define("logins", "1", "all logins in the window (session starts plus relogins)")
define("failed_requests", "1", "operations started in the window that got an error "
       "(server crashed with the request, the balancer routed to a dead server, a connection "
       "was refused, or a message was given up on after network.max_retries)")
define("availability", "fraction", "fraction of operations started in the window that succeeded")
define("availability_crash", "fraction", "availability of operations started while a server was down "
       "(crash to restart, or to the end without restart); NaN if no server was down")
define("utilization_max", "fraction", "highest per-server CPU utilisation (busy time over the time the "
       "server existed in the window)")
define("utilization_min", "fraction", "lowest per-server CPU utilisation")
define("utilization_mean", "fraction", "mean per-server CPU utilisation")
define("imbalance", "1", "load imbalance: utilization_max / utilization_mean (1 = perfectly even)")
define("imbalance_end", "1", "max over mean of requests served per routable server over the last "
       "quarter of the window (how uneven load still is after a scale-out or a crash)")
define("servers_end", "1", "servers existing at the end of the run")
define("store_ops", "1", "operations the session store received in the window")
define("store_utilization", "fraction", "fraction of the session store's core-time busy")
define("store_wait_mean", "s", "mean time a store operation queued before service")
define("bytes_per_request", "B", "bytes_total over operations completed successfully in the window")

# ------------------------------------------------------------------ sidecar --
define("success_rate", "fraction", "fraction of client operations started in the window that succeeded")
define("hop_added_mean", "s", "mean latency the mesh layer adds to one service-to-service call "
       "(proxies, loopback, in-process library, retries and back-off; successful calls)")
define("hop_added_p50", "s", "median latency added per call (hop) by the mesh layer")
define("hop_added_p90", "s", "90th percentile of the latency added per call by the mesh layer")
define("hop_added_p99", "s", "99th percentile of the latency added per call by the mesh layer")
define("mesh_cpu_s", "s", "CPU-seconds spent on mesh features (proxies, or the in-process library)")
define("app_cpu_s", "s", "CPU-seconds spent by the applications' own work")
define("proxy_vcpu_per_krps", "vCPU per 1000/s", "proxy CPU per 1000 requests per second going through a proxy: "
       "(proxy CPU-s per s) / (proxy request passes per s / 1000), in vCPU")
define("mesh_vcpu_per_krps", "vCPU per 1000/s", "mesh CPU (proxy or library) per 1000 client requests per second")
define("proxy_utilization_max", "fraction", "highest utilisation of any sidecar proxy's workers")
define("calls", "1", "service-to-service calls made in the window (a call may take several attempts)")
define("attempts", "1", "attempts sent to an upstream instance in the window (first tries and retries)")
define("retry_amplification", "1", "attempts / calls: how much retries multiply the load downstream")
define("ejections", "1", "times a circuit breaker opened (an instance ejected) in the window")
define("timeouts", "1", "attempts abandoned because the per-try timeout expired")


# ----------------------------------------------------------------- helpers --
def imbalance(loads) -> float:
    """max / mean of a list of loads (NaN when empty or all zero)."""
    loads = [x for x in loads if not math.isnan(x)]
    if not loads:
        return math.nan
    mean = sum(loads) / len(loads)
    return max(loads) / mean if mean > 0 else math.nan
