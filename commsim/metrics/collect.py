"""Helpers that turn the accounting objects into metric values.

Each metric of :mod:`commsim.metrics` is computed in exactly one function
here (or in a family module beside it); patterns call these rather than
computing a shared metric themselves.
"""

from __future__ import annotations

import math

import numpy as np


class Level:
    """A quantity that changes at instants (threads in use, threads blocked,
    server down): its time integral and maximum over the measurement window."""

    __slots__ = ("sim", "value", "area", "last", "peak")

    def __init__(self, sim, value: float = 0):
        self.sim = sim
        self.value = value
        self.area = 0.0
        self.last = 0.0
        self.peak = 0
        sim.at_end(self._close)

    def set(self, value) -> None:
        sim = self.sim
        now = sim.env._now
        start = sim.start
        if now >= start:
            last = self.last
            old = self.value
            self.area += old * (now - (last if last > start else start))
            if old > self.peak:  # the old value was held at some instant of the window
                self.peak = old
            if value > self.peak:
                self.peak = value
        self.last = now
        self.value = value

    def add(self, delta) -> None:
        # set(value + delta), inlined: this runs twice per CPU job.
        sim = self.sim
        now = sim.env._now
        start = sim.start
        old = self.value
        new = old + delta
        if now >= start:
            last = self.last
            self.area += old * (now - (last if last > start else start))
            peak = self.peak
            if old > peak:
                peak = old
            if new > peak:
                peak = new
            self.peak = peak
        self.last = now
        self.value = new

    def _close(self) -> None:
        self.set(self.value)

    @property
    def mean(self) -> float:
        return self.area / self.sim.duration


class Latencies:
    """Latency samples of operations started inside the window."""

    __slots__ = ("sim", "values", "completed")

    def __init__(self, sim):
        self.sim = sim
        self.values: list[float] = []
        self.completed = 0  # operations completed inside the window (any start)

    def record(self, t0: float) -> None:
        """An operation started at ``t0`` completes now."""
        sim = self.sim
        now = sim.env._now
        if now >= sim.start:
            self.completed += 1
            if t0 >= sim.start:
                self.values.append(now - t0)

    def add(self, value: float) -> None:
        """Record a latency sample directly (caller checks the window)."""
        self.values.append(value)


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


def latency_metrics(values) -> dict:
    return percentiles(values, "latency", mean=True)


def byte_metrics(sim) -> dict:
    b = sim.bytes
    return {
        "bytes_total": b.total, "bytes_header": b.header, "bytes_payload": b.payload,
        "bytes_framing": b.framing, "bytes_handshake": b.handshake,
        "bytes_retransmitted": b.retransmitted, "bandwidth": b.total / sim.duration,
        # Under the application (issue 13): 0 unless network.segment_overhead is set.
        "bytes_transport": b.transport, "bytes_wire": b.wire,
        "bandwidth_wire": b.wire / sim.duration,
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


def client_server_metrics(sim, cpu, clients, network) -> dict:
    """The foundation metrics of a client/server pattern, in one call:
    throughput and latency of the clients' operations, the server CPU, the
    request/response counts, bytes, blocked time and the message ledger."""
    lat = clients.latencies
    out = {"throughput": lat.completed / sim.duration}
    out.update(latency_metrics(lat.values))
    out.update(cpu_metrics(cpu))
    out["requests"] = sim.bytes.messages("request")
    out["responses"] = sim.bytes.messages("response")
    out.update(byte_metrics(sim))
    out.update(blocked_metrics(sim, clients.blocked_s, clients.count))
    out.update(ledger_metrics(sim, network.in_flight()))
    return out
