"""Keys that take effect only together with another key.

A retransmission timeout means nothing without loss, a TLS handshake's CPU
nothing without TLS, segment sizes and pure ACKs nothing without segment
headers to count; a pull consumer's fetch keys nothing under push
delivery, a thread pool's size nothing with an event loop.  Set to anything
but its default (or 0, which agrees with the need's absence) while no run
of the experiment has what it needs, such a key would be accepted and do
nothing, so the loader refuses it (:func:`check`), naming the key, its value
and the key to set.  One run
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


def _lossy(cfg: dict) -> bool:
    return cfg["network"]["loss"] > 0


def _tls(cfg: dict) -> bool:
    return str(cfg["network"]["handshake"]).startswith("tls")


def _connections(cfg: dict) -> bool:
    return cfg["network"]["handshake"] != "none"


def _segments(cfg: dict) -> bool:
    return cfg["network"]["segment_overhead"] > 0


#: dotted key -> (what it needs, as a test of a resolved run config; the text)
NEEDS: dict[str, tuple[Callable[[dict], bool], str]] = {
    "network.rto": (_lossy, "network.loss > 0 (the timeout is of a lost transmission)"),
    "network.max_retries": (_lossy, "network.loss > 0 (the retransmissions are of lost "
                                    "transmissions)"),
    "network.tls_server_cpu": (_tls, "network.handshake tls1.2 or tls1.3 (it is the CPU of a "
                                     "TLS handshake)"),
    "network.keepalive": (_connections, "network.handshake tcp, tls1.2 or tls1.3 (with none a "
                                        "new connection costs nothing, kept alive or not)"),
    "network.mss": (_segments, "network.segment_overhead > 0 (segments are counted only with "
                               "their header bytes)"),
    "network.acks_per_message": (_segments, "network.segment_overhead > 0 (an ACK is counted "
                                            "as segment header bytes)"),
}


def _when(section: str, key: str, *values) -> Callable[[dict], bool]:
    """``cfg[section][key]`` is one of ``values``."""
    return lambda cfg: cfg[section][key] in values


def _set(section: str, key: str) -> Callable[[dict], bool]:
    """``cfg[section][key]`` is set (not null, not empty, not 0)."""
    return lambda cfg: bool(cfg[section][key])


def _rules(keys, test, text: str) -> dict:
    return {k: (test, text) for k in keys}


# Pattern-section keys read only where another key selects their mode (each
# read of each key checked in the code: the model, its cluster and mesh
# variants; figures and labels do not count).
_PULL = _when("pubsub", "delivery", "pull")
NEEDS.update({
    **_rules(("pubsub.fetch_min_bytes", "pubsub.fetch_max_wait", "pubsub.max_poll_records",
              "pubsub.partitions", "pubsub.commit"), _PULL,
             "pubsub.delivery: pull (it is a fetch's or a commit's)"),
    "pubsub.commit_interval": (lambda c: _PULL(c) and c["pubsub"]["commit"] == "periodic",
                               "pubsub.delivery: pull and pubsub.commit: periodic"),
    "pubsub.prefetch": (_when("pubsub", "delivery", "push"), "pubsub.delivery: push (the unacked "
                                                             "messages the broker pushes)"),
    "pubsub.direct_buffer": (_when("pubsub", "delivery", "direct"), "pubsub.delivery: direct"),
    **_rules(("pubsub.slow_factor", "pubsub.slow_from", "pubsub.slow_for"),
             _set("pubsub", "slow_consumers"), "pubsub.slow_consumers > 0"),
    "pubsub.restart_after": (_set("pubsub", "crash_at"), "pubsub.crash_at (a consumer crash to "
                                                         "restart after)"),
    "pubsub.broker_downtime": (lambda c: c["pubsub"]["broker_restart_at"] is not None
                               and c["pubsub"]["delivery"] != "direct",
                               "pubsub.broker_restart_at, with a broker (delivery push or pull)"),
    **_rules(("pubsub.broker_restart_at", "pubsub.persistence"),
             _when("pubsub", "delivery", "push", "pull"),
             "a broker: pubsub.delivery push or pull (direct has none)"),
    "pubsub.fsync_time": (lambda c: c["pubsub"]["persistence"] and c["pubsub"]["delivery"] != "direct",
                          "pubsub.persistence: true, with a broker (delivery push or pull)"),
    "sync_async.threads": (_when("sync_async", "io_model", "thread_pool"),
                           "sync_async.io_model: thread_pool (the pool's size)"),
    "sync_async.readiness_cpu": (_when("sync_async", "io_model", "event_loop"),
                                 "sync_async.io_model: event_loop"),
    "sync_async.completion_cpu": (_when("sync_async", "io_model", "io_uring"),
                                  "sync_async.io_model: io_uring"),
    "sync_async.thread_spawn_cpu": (_when("sync_async", "io_model", "thread_per_call"),
                                    "sync_async.io_model: thread_per_call"),
    "sync_async.fsync_time": (_when("sync_async", "commit", "sync", "async"),
                              "sync_async.commit: sync or async"),
    "sync_async.flush_interval": (_when("sync_async", "commit", "async"), "sync_async.commit: async"),
    "sync_async.restart_time": (lambda c: bool(c["sync_async"]["crash_at"])
                                or c["sync_async"]["crash_mtbf"] is not None,
                                "sync_async.crash_at or crash_mtbf (a crash to restart after)"),
    **_rules(("multiplexing.connections_per_host", "multiplexing.pipelining"),
             _when("multiplexing", "protocol", "http1"), "multiplexing.protocol: http1"),
    **_rules(("multiplexing.backend_protocol", "multiplexing.backend_connections",
              "multiplexing.backend_latency", "multiplexing.proxy_cores",
              "multiplexing.proxy_cpu_per_message"),
             _when("multiplexing", "proxy", "mux", "demux"), "multiplexing.proxy: mux or demux"),
    **_rules(("multiplexing.objects", "multiplexing.dependency", "multiplexing.warm_connections"),
             _when("multiplexing", "workload", "page"), "multiplexing.workload: page"),
    "sidecar.library_cpu": (_when("sidecar", "mode", "library"), "sidecar.mode: library"),
    "sidecar.fan_out": (lambda c: c["sidecar"]["depth"] >= 2, "sidecar.depth >= 2 (a service "
                                                              "that calls the next)"),
    "stateful.stateless_state": (_when("stateful", "mode", "stateless"), "stateful.mode: stateless"),
    **_rules(("stateful.store_latency", "stateful.store_service_time", "stateful.store_cores",
              "stateful.session_size"),
             lambda c: c["stateful"]["mode"] == "stateless" and c["stateful"]["stateless_state"] == "store",
             "stateful.mode: stateless with stateless_state: store"),
    **_rules(("stateful.token_size", "stateful.token_sign_cpu", "stateful.token_verify_cpu"),
             lambda c: c["stateful"]["mode"] == "stateless" and c["stateful"]["stateless_state"] == "token",
             "stateful.mode: stateless with stateless_state: token"),
    "workload.offline_time": (lambda c: c["workload"]["online_time"] is not None,
                              "workload.online_time (the online periods it alternates with)"),
    **_rules(("workload.job_duration", "workload.job_request"), _set("workload", "job_rate"),
             "workload.job_rate > 0"),
})


def _zero(value) -> bool:
    """A number 0 (no TLS CPU, no retries, no ACKs) agrees with the need's
    absence, so it is never refused."""
    return not isinstance(value, bool) and value == 0


def check(given: dict, defaults: dict, points) -> None:
    """Refuse a key of :data:`NEEDS` that ``given`` (dotted key -> (value as
    written, where: the key or ``sweep.<key>``)) sets to other than its
    default in some run while no run of ``points`` has what it needs (runs
    whose pattern has no such section do not count)."""
    for dotted, (value, where) in given.items():
        if dotted not in NEEDS:
            continue
        test, text = NEEDS[dotted]
        head, _, key = dotted.partition(".")
        cfgs = [p.config for p in points if head in p.config]
        if not any(c[head][key] != defaults[dotted] and not _zero(c[head][key]) for c in cfgs):
            continue  # its default, written out (as in a config.resolved.yaml), or 0: none of it
        if not any(test(c) for c in cfgs):
            raise ConfigError(where, f"got {describe(value)}; it takes effect only with {text}, "
                              "which no run of this experiment has: set that, or remove it")
