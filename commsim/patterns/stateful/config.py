"""The ``stateful`` configuration section and its checks."""

from __future__ import annotations

from commsim.config.schema import Field, Section, register_section
from commsim.errors import ConfigError


def _check(cfg: dict, key: str) -> None:
    if cfg["crash_at"] is not None and cfg["crash_server"] >= cfg["servers"]:
        raise ConfigError(f"{key}.crash_server", f"got {cfg['crash_server']}; expected a server "
                          f"index below {key}.servers = {cfg['servers']}")


SECTION = register_section(Section("stateful", {
    "mode": Field("choice", "stateful", "stateful: sessions live in the server that created them; "
                  "stateless: any server can serve any request", choices=("stateful", "stateless")),
    "stateless_state": Field("choice", "store", "where the state lives in stateless mode: a shared "
                             "store node, or a signed token sent with every request",
                             choices=("store", "token")),
    "servers": Field("int", 4, "application servers behind the balancer at the start", min=1),
    "balancer": Field("choice", "sticky", "load-balancing policy",
                      choices=("round_robin", "least_connections", "consistent_hash", "sticky")),
    "login_cpu": Field("dist:duration", "10ms", "server CPU per login (password check, session set-up)",
                       min=0),
    "requests_per_session": Field("number", 20, "mean requests per session (geometric); the last "
                                  "one logs out", min=1),
    "backend_latency": Field("dist:duration", "0.2ms", "one-way latency balancer <-> server", min=0),
    "request_header": Field("size", "400B", "header bytes of each request", min=0),
    "request_body": Field("size", "200B", "body bytes of each request (and of a login)", min=0),
    "response_header": Field("size", "300B", "header bytes of each response", min=0),
    "response_body": Field("size", "1KiB", "body bytes of each successful response", min=0),
    "session_size": Field("size", "2KiB", "size of one session's state (store value)", min=0),
    "store_latency": Field("dist:duration", "0.25ms", "one-way latency server <-> store", min=0),
    "store_service_time": Field("dist:duration", {"dist": "exponential", "mean": "0.1ms"},
                                "store CPU per operation", min=0),
    "store_cores": Field("int", 1, "cores of the store node", min=1),
    "token_size": Field("size", "1KiB", "bytes of the session token every request carries "
                        "(stateless token mode)", min=0),
    "token_sign_cpu": Field("duration", "50us", "server CPU to sign a token at login", min=0),
    "token_verify_cpu": Field("duration", "50us", "server CPU to verify the token of a request", min=0),
    "crash_at": Field("duration", None, "time of a scheduled crash of server `crash_server` "
                      "(null: none)", min=0, nullable=True),
    "crash_server": Field("int", 0, "index of the server killed at crash_at", min=0),
    "mtbf": Field("dist:duration", None, "up-time of every server between failures: a bare "
                  "value is the mean of exponential up-times, a mapping any distribution "
                  "(null: no random crashes)", min=0, min_exclusive=True, nullable=True),
    "mttr": Field("dist:duration", "30s", "time a crashed server takes to restart "
                  "(null: never restarts)", min=0, nullable=True),
    "detect_time": Field("duration", "2s", "delay before the balancer's health checks notice "
                         "a crash or a restart", min=0),
    "scale_out_at": Field("duration", None, "time new servers are added (null: never)", min=0,
                          nullable=True),
    "scale_out_servers": Field("int", 2, "servers added at scale_out_at", min=1),
    "timeseries_bin": Field("duration", "1s", "bin width of the time series drawn in figures",
                            min=0, min_exclusive=True),
}, doc="Servers behind a load balancer with session state in the server, a store or a token; "
       "crashes and scale-out.", pattern="stateful", check=_check))
