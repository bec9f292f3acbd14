"""Helpers that turn the accounting objects into metric values.

Each metric of :mod:`commsim.metrics` is computed in exactly one function
here (or in a family module beside it); patterns call these rather than
computing a shared metric themselves.
"""

from __future__ import annotations

import math

import numpy as np

from commsim.engine.recorder import Level as _Level, Samples as _Samples


# The time-weighted level and the latency samples are the recorder's
# instruments (commsim/engine/recorder.py); re-exported under their old names.
Level = _Level
Latencies = _Samples


def percentiles(values, prefix: str, qs=(50, 95, 99), mean: bool = False) -> dict:
    """``{prefix_p50: .., ...}`` (and ``prefix_mean`` with ``mean=True``) of
    ``values``; NaN when there are none.  The one place sample percentiles
    are computed."""
    keys = ([f"{prefix}_mean"] if mean else []) + [f"{prefix}_p{q}" for q in qs]
    if len(values) == 0:
        return dict.fromkeys(keys, math.nan)
    arr = np.asarray(values, dtype=float)
    out = {f"{prefix}_mean": float(arr.mean())} if mean else {}
    out.update({f"{prefix}_p{q}": float(v) for q, v in zip(qs, np.percentile(arr, qs))})
    return out


#: Fewest latency samples for which :func:`trend` is computed.
TREND_MIN_SAMPLES = 40


def trend(values) -> float:
    """Mean of the later half of ``values`` (in the order recorded, i.e. of
    completion) over the mean of the earlier half; NaN below
    :data:`TREND_MIN_SAMPLES` samples or when the earlier mean is 0."""
    n = len(values)
    if n < TREND_MIN_SAMPLES:
        return math.nan
    arr = np.asarray(values, dtype=float)
    half = n // 2
    first = float(arr[:half].mean())
    return float(arr[n - half:].mean()) / first if first > 0 else math.nan


def latency_metrics(values) -> dict:
    out = percentiles(values, "latency", mean=True)
    out["latency_trend"] = trend(values)
    return out


def byte_metrics(sim) -> dict:
    b = sim.bytes
    return {
        "bytes_total": b.total, "bytes_header": b.header, "bytes_payload": b.payload,
        "bytes_framing": b.framing, "bytes_handshake": b.handshake,
        "bytes_retransmitted": b.retransmitted, "bandwidth": b.total / sim.duration,
    }


def ledger_metrics(sim, in_flight: int) -> dict:
    b = sim.bytes
    return {"sent": b.sent, "delivered": b.delivered, "dropped": b.dropped, "in_flight": in_flight}


def cpu_metrics(cpu) -> dict:
    """Server CPU metrics of a :class:`commsim.nodes.Cpu`."""
    return {
        "server_cpu_s": cpu.account.total,
        "server_cpu_wasted_s": cpu.account.wasted,
        "server_utilization": cpu.account.utilization(),
        "wait_mean": cpu.wait_mean,
        "server_jobs_mean": cpu.jobs_mean,
        "server_sojourn_mean": cpu.sojourn_mean,
    }


def blocked_metrics(sim, blocked_s: float, clients: int) -> dict:
    return {"client_blocked_s": blocked_s,
            "client_blocked_fraction": blocked_s / (clients * sim.duration)}


def engine_metrics(sim) -> dict:
    return {"events": sim.events_scheduled}


def client_server_metrics(sim, cpu, clients) -> dict:
    """The foundation metrics of a client/server pattern, in one call:
    throughput and latency of the clients' operations, the server CPU, the
    request/response counts and blocked time.  (Bytes, the message ledger and
    the event count are the standard metrics the runner adds from the
    recorder.)"""
    lat = clients.latencies
    out = {"throughput": lat.completed / sim.duration}
    out.update(latency_metrics(lat.values))
    out.update(cpu_metrics(cpu))
    out["requests"] = sim.bytes.messages("request")
    out["responses"] = sim.bytes.messages("response")
    out.update(blocked_metrics(sim, clients.blocked_s, clients.count))
    return out
