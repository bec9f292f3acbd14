"""The ``sidecar`` configuration section and its checks."""

from __future__ import annotations

from commsim.config.schema import Field, Section, register_section
from commsim.errors import ConfigError


def _check(cfg: dict, key: str) -> None:
    fs = cfg["fault_service"]
    if fs >= cfg["depth"] or fs < -cfg["depth"]:
        raise ConfigError(f"{key}.fault_service", f"got {fs}; expected a service index in "
                          f"[{-cfg['depth']}, {cfg['depth'] - 1}] (negative counts from the end)")
    if cfg["fault_instances"] > cfg["instances"]:
        raise ConfigError(f"{key}.fault_instances", f"got {cfg['fault_instances']}; expected at most "
                          f"{key}.instances = {cfg['instances']}")


SECTION = register_section(Section("sidecar", {
    "mode": Field("choice", "sidecar", "where the mesh features run: none (no features), library "
                  "(in-process) or sidecar (a proxy beside each instance)",
                  choices=("none", "library", "sidecar")),
    "depth": Field("int", 1, "services in the call chain (1: clients call one service)", min=1),
    "fan_out": Field("int", 1, "parallel calls each service makes to the next one", min=1),
    "instances": Field("int", 2, "instances of each service", min=1),
    "app_cores": Field("int", 2, "cores of each instance's application", min=1),
    "request_size": Field("size", "1KiB", "bytes of each call's request", min=0),
    "response_size": Field("size", "1KiB", "bytes of each call's response", min=0),
    "lb_policy": Field("choice", "round_robin", "how a caller spreads calls over instances",
                       choices=("round_robin", "least_connections", "random")),
    "proxy_workers": Field("int", 2, "worker threads (cores) of each sidecar proxy", min=1),
    "proxy_cpu": Field("dist:duration", "0.3ms", "proxy CPU per request through it (request and "
                       "response legs together), besides mTLS", min=0),
    "proxy_delay": Field("dist:duration", "0s", "time per leg inside the proxy without CPU "
                         "(buffering, wake-ups)", min=0),
    "loopback_latency": Field("dist:duration", "50us", "one-way app <-> proxy loopback latency", min=0),
    "library_cpu": Field("dist:duration", "50us", "in-process library CPU per request at each end "
                         "(library mode), besides mTLS", min=0),
    "mtls": Field("bool", True, "mutual TLS between proxies (sidecar) or libraries (library)"),
    "mtls_cpu": Field("duration", "50us", "CPU per request at each end for TLS record encryption", min=0),
    "mtls_handshake_cpu": Field("duration", "1ms", "CPU per TLS handshake at each end", min=0),
    "requests_per_connection": Field("int", None, "requests before a caller opens a new "
                                     "connection (null: connections persist)", min=1, nullable=True),
    "retries": Field("int", 2, "retries after a failed try (sidecar, library)", min=0),
    "timeout": Field("duration", None, "per-try timeout (null: none)", min=0, min_exclusive=True,
                     nullable=True),
    "backoff": Field("duration", "25ms", "base back-off before a retry (full jitter, doubling)", min=0),
    "breaker_errors": Field("int", 5, "consecutive failures that eject an instance (null: no "
                            "circuit breaking)", min=1, nullable=True),
    "breaker_open": Field("duration", "30s", "how long an ejected instance stays out", min=0),
    "fault_service": Field("int", -1, "service with faulty instances (negative: from the end)"),
    "fault_instances": Field("int", 0, "how many of its instances are faulty", min=0),
    "fault_error_rate": Field("fraction", 0.0, "fraction of requests a faulty instance fails"),
    "fault_slowdown": Field("number", 1.0, "service-time multiplier of a faulty instance", min=0,
                            min_exclusive=True),
}, doc="A call chain of services with or without sidecar proxies: mTLS, retries, circuit "
       "breaking, load balancing; faulty instances.", pattern="sidecar", check=_check))
