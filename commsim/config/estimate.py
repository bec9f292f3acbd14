"""Estimate an experiment's work before running it, and refuse the absurd.

A config can ask for far more than a machine can do (``replications:
1000000``, ``duration: 1e308``, a poll every nanosecond, 10^8 clients) and
would otherwise start without a word, then run for days or exhaust memory.
:func:`estimate` predicts, from the resolved configs alone (nothing is
simulated):

* **runs**: sweep points x replications (with a precision target: up to its
  ``max_replications``);
* **operations** per run: the rate at which the pattern's model acts
  (requests, polls, updates, messages; :func:`ops_rate`) x simulated time
  (warm-up + duration);
* **events** per run: operations x the pattern's SimPy events per operation;
* **CPU time**: events x seconds per event + clients x set-up seconds per
  client, summed over runs;
* **memory** per run: clients x bytes per client + operations x bytes per
  recorded operation (samples are kept until the run ends).

The constants (:data:`EVENTS_PER_OP`, :data:`BYTES_PER_CLIENT`, ...) were
measured by ``benchmarks/calibrate_estimate.py`` on the development machine
(CPython 3.11, SimPy 4.1); an estimate is meant to be right within a factor
of a few, which is enough to tell a minute from a month.  Operation rates
are upper bounds where the model has a cap we do not compute (a closed
loop bounded by the server's capacity is bounded here too, see
:func:`_client_rate`).

Limits (:data:`LIMITS`): a run beyond any of them is refused with a
:class:`~commsim.errors.ConfigError` stating the estimate; ``--allow-large``
(``commsim run``) or ``allow_large=True`` (``commsim.load`` /
``commsim.run``) runs it anyway.  Estimates above :data:`REPORT_CPU_S` of CPU
or :data:`REPORT_MEMORY_B` of memory are printed before a run starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from commsim.errors import ConfigError

# Measured by benchmarks/calibrate_estimate.py --quick on the shared 2-core
# development machine (8 helpers busy; 2026-12-01), then checked against one
# sweep point of each committed experiment at its own size and adjusted so
# that the estimates fell within 0.4x-1.7x of the events counted, 0.55x-1.9x of
# the CPU time and 0.9x-2.3x of the peak memory (docs/experiments.md):
#: SimPy events per operation, by pattern (websocket: the constants of push,
#: checked on experiments/websocket.yaml: 1.3x-1.6x the events counted; SSE
#: and push: 2.07 per update since their frames are posted (issue 14);
#: short polling, long polling, SSE, push and request-response: the
#: event-driven paths', their run-ahead modes have their own below).
EVENTS_PER_OP: dict[str, float] = {
    "request_response": 2.0, "sync_async": 12.0, "stateful": 7.0, "sidecar": 2.0,
    "multiplexing": 3.0, "short_polling": 4.0, "long_polling": 1.0, "sse": 2.1, "push": 2.1,
    "pubsub": 3.0, "websocket": 4.1,
}
#: SimPy events per client that do not grow with time (connects, set-up).
EVENTS_PER_CLIENT: dict[str, float] = {
    "request_response": 2.6, "sync_async": 0.5, "stateful": 2.9, "sidecar": 0.4,
    "multiplexing": 5.5, "short_polling": 1.0, "long_polling": 2.0, "sse": 3.9, "push": 3.9,
    "pubsub": 1.0, "websocket": 3.9,
}
#: Defaults for a pattern not listed (the largest measured, to err on the safe side).
DEFAULT_EVENTS_PER_OP = 12.0
DEFAULT_EVENTS_PER_CLIENT = 5.5
#: CPU seconds per SimPy event (measured: 1.5-4.1 us, median 2.8 us).
SECONDS_PER_EVENT = 3.0e-6
#: CPU seconds per client of set-up and teardown beyond its events (measured:
#: request_response with 200,000 clients, 1 s: 10.2 s of CPU for 0.53 M events;
#: the notification patterns' clients cost nothing measurable beyond their events).
SECONDS_PER_CLIENT: dict[str, float] = {
    "short_polling": 0.0, "long_polling": 0.0, "sse": 0.0, "push": 0.0, "websocket": 0.0,
}
DEFAULT_SECONDS_PER_CLIENT = 40e-6
#: Memory per client (or pub/sub subscriber), by pattern, in bytes (measured;
#: at least 200 B where the measurement was lost in noise).
BYTES_PER_CLIENT: dict[str, float] = {
    "request_response": 1400.0, "sync_async": 1000.0, "stateful": 1300.0, "sidecar": 1000.0,
    "multiplexing": 15000.0, "short_polling": 200.0, "long_polling": 250.0, "sse": 200.0,
    "push": 200.0, "pubsub": 1000.0, "websocket": 200.0,
}
DEFAULT_BYTES_PER_CLIENT = 15000.0
#: Memory per operation kept until the run ends (latency samples, records);
#: measured 0-1000 B, typically 25-150 B.
BYTES_PER_OP = 150.0
#: Memory of an empty run (interpreter, numpy, SimPy, the model's code): 77 MB measured.
BASE_BYTES = 80e6

#: Documented limits; beyond any, a run needs ``--allow-large``.
LIMITS = {
    "runs": 100_000,               # sweep points x replications
    "cpu_s": 24 * 3600.0,          # estimated CPU time of the whole experiment
    "events_per_run": 5e9,         # one run's SimPy events (about 4 hours)
    "memory_per_run": 8e9,         # one run's memory, bytes
}
REPORT_CPU_S = 600.0
REPORT_MEMORY_B = 1e9

HOW_TO_ALLOW = ("run it anyway with `commsim run --allow-large` (Python: allow_large=True "
                "in commsim.run() or commsim.load())")


@dataclass
class Estimate:
    """The predicted work of an experiment (see the module doc)."""

    runs: int
    cpu_s: float
    max_events: float             # of the largest run
    max_memory: float             # bytes, of the largest run
    worst: dict[str, Any] = field(default_factory=dict)   # params of the largest run

    @property
    def big(self) -> bool:
        return self.cpu_s > REPORT_CPU_S or self.max_memory > REPORT_MEMORY_B

    def text(self) -> str:
        return (f"estimated work: {self.runs:,} run(s), about {_duration(self.cpu_s)} of CPU in all; "
                f"the largest run about {_count(self.max_events)} events and "
                f"{_bytes(self.max_memory)} of memory")

    def over_limits(self) -> list[str]:
        out = []
        if self.runs > LIMITS["runs"]:
            out.append(f"{self.runs:,} runs (limit {LIMITS['runs']:,})")
        if self.cpu_s > LIMITS["cpu_s"]:
            out.append(f"{_duration(self.cpu_s)} of CPU (limit {_duration(LIMITS['cpu_s'])})")
        if self.max_events > LIMITS["events_per_run"]:
            out.append(f"{_count(self.max_events)} events in one run (limit "
                       f"{_count(LIMITS['events_per_run'])})")
        if self.max_memory > LIMITS["memory_per_run"]:
            out.append(f"{_bytes(self.max_memory)} of memory in one run (limit "
                       f"{_bytes(LIMITS['memory_per_run'])})")
        return out


# ------------------------------------------------------------- formatting --

def _duration(s: float) -> str:
    if not math.isfinite(s) or s > 1e12:
        return "forever (more than 30,000 years)"
    for unit, size in (("years", 365.25 * 86400), ("days", 2 * 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / (86400 if unit == 'days' else size):.3g} {unit}"
    return f"{s:.2g} s"


def _count(n: float) -> str:
    if not math.isfinite(n) or n > 1e18:
        return "more than 1e18"
    return f"{n:.2g}"


def _bytes(b: float) -> str:
    if not math.isfinite(b) or b > 1e18:
        return "more than 1 EB"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


# -------------------------------------------------------------- the model --

def _mean(spec: Any, kind: str = "duration") -> float:
    """Mean of a resolved value or distribution mapping (0 if unknown)."""
    if spec is None:
        return 0.0
    if isinstance(spec, (int, float)):
        return float(spec)
    from commsim.dists import make_distribution

    try:
        return float(make_distribution(spec, kind, "estimate").mean)
    except Exception:  # noqa: BLE001 - an estimate never fails a valid config
        return 0.0


def _rate(x: float) -> float:
    """1/x, infinite for x == 0 (a timer of zero length would spin)."""
    return math.inf if x <= 0 else 1.0 / x


def _servers(cfg: dict) -> float:
    """Server instances whose CPUs share the clients' requests."""
    p = cfg["pattern"]
    if p == "stateful":
        s = cfg["stateful"]
        return float(s["servers"]) + float(s["scale_out_servers"] if s.get("scale_out_at") is not None else 0)
    if p == "sidecar":
        return float(cfg["sidecar"]["instances"])
    return 1.0


def _client_rate(cfg: dict) -> float:
    """Requests per second of the ``clients`` section: open loop ``count x
    rate``; closed loop ``count / (think + RTT + service)``, at most the
    server's capacity ``cores / service`` (a closed loop cannot outrun it)."""
    c = cfg["clients"]
    n = float(c["count"])
    if c.get("mode") == "async":
        return n * float(c["rate"])
    service = _mean(cfg["server"]["service_time"])
    loop = _mean(c.get("think_time")) + 2 * _mean(cfg["network"].get("latency")) + service
    rate = n * _rate(loop)
    if service > 0:
        rate = min(rate, _servers(cfg) * cfg["server"]["cores"] / service)
    return rate


def _updates(cfg: dict) -> float:
    w = cfg.get("workload") or {}
    n = float(cfg["clients"]["count"])
    return n * (float(w.get("event_rate") or 0) + float(w.get("broadcast_rate") or 0)
                + float(w.get("job_rate") or 0))


def ops_rate(cfg: dict) -> float:
    """Operations per simulated second of one resolved run config."""
    p = cfg["pattern"]
    n = float(cfg["clients"]["count"])
    if p == "short_polling":
        return n * _rate(cfg["short_polling"]["interval"]) + _updates(cfg)
    if p == "long_polling":
        return n * _rate(cfg["long_polling"]["timeout"]) + 2 * _updates(cfg)
    if p == "websocket":   # pings (both ways) + updates + reconnects
        ping = cfg["websocket"].get("ping_interval")
        return 2 * n * (_rate(float(ping)) if ping else 0.0) + _updates(cfg) + n * 0.01
    if p in ("sse", "push"):
        return _updates(cfg) + n * 0.01   # plus connects/reconnects
    if p == "pubsub":
        s = cfg["pubsub"]
        publish = float(s["publishers"]) * float(s["topics"]) * float(s["publish_rate"])
        return publish * (1 + float(s["subscribers"]))
    if p == "sidecar":
        s = cfg["sidecar"]
        calls = 1 + float(s["depth"]) * float(s["fan_out"])
        return _client_rate(cfg) * calls * (1 + float(s["retries"]) * float(s["fault_error_rate"]))
    if p == "multiplexing":
        s = cfg["multiplexing"]
        segments = max(1.0, _mean(s["object_size"], "size") / float(s["mss"]))
        return _client_rate(cfg) * float(s["objects"]) * segments
    return _client_rate(cfg)


#: MSER-5 needs at least this many observations (commsim.experiment.warmup).
MSER_MIN_OBSERVATIONS = 20


def observations(cfg: dict) -> float:
    """Upper estimate of the samples one run records in its ``duration``
    (latencies of requests; of updates for the notification patterns)."""
    notification = cfg["pattern"] in ("short_polling", "long_polling", "sse", "push", "websocket")
    rate = _safe(_updates if notification else ops_rate, cfg, math.inf)  # unknown: never refuse
    with _no_overflow():
        return _finite(rate * float(cfg["duration"]))
    return math.inf


def check_warmup_auto(points) -> None:
    """``warmup: auto`` on a run too short to detect anything fails at load,
    not after pilot runs (and a created folder)."""
    for p in points:
        n = observations(p.config)
        if n < MSER_MIN_OBSERVATIONS:
            where = ", ".join(f"{k}={v}" for k, v in p.params.items()) or "the base config"
            raise ConfigError("warmup", f"'auto' needs at least {MSER_MIN_OBSERVATIONS} observations per "
                              f"pilot run (MSER-5), but duration {p.config['duration']:g} s gives about "
                              f"{n:.3g} at {where}; lengthen duration or set warmup to a fixed time")


def _safe(fn, cfg: dict, fallback):
    """An estimate never breaks loading: a pattern whose keys changed (or
    that the formulas do not know) falls back to a generic formula."""
    try:
        return fn(cfg)
    except (KeyError, TypeError, ValueError, AttributeError):
        return fallback(cfg) if callable(fallback) else fallback


def _clients(cfg: dict) -> float:
    if cfg["pattern"] == "pubsub":
        return float(cfg["pubsub"]["subscribers"]) + float(cfg["pubsub"]["publishers"])
    return float(cfg["clients"]["count"])


#: Short polling's run-ahead mode (commsim/patterns/notifications/polling.py):
#: CPU seconds per poll and per update (measured at 1,000,000 clients with
#: 0.1 updates per poll: 1.1-1.2 us per poll on a quiet machine, 1.6-2.3 us at
#: load 3-4; 2 us errs on the safe side), one event per
#: millisecond of simulated time (at most one per poll), and memory kept per
#: update only.
AHEAD_SECONDS_PER_OP = 2.0e-6
AHEAD_EVENTS_PER_S = 1000.0


def _ahead_cost(cfg: dict, span: float, clients: float) -> tuple[float, float, float]:
    ops = ops_rate(cfg) * span
    polls = clients * _rate(cfg["short_polling"]["interval"]) * span
    events = min(polls, span * AHEAD_EVENTS_PER_S) + 10.0  # a wake-up per batch of polls
    memory = BASE_BYTES + clients * BYTES_PER_CLIENT["short_polling"] + _updates(cfg) * span * BYTES_PER_OP
    return events, ops * AHEAD_SECONDS_PER_OP, memory


#: The run-ahead modes of SSE, push (commsim/patterns/notifications/streaming.py),
#: long polling (long_polling.py) and request-response (request_response.py):
#: CPU seconds per operation (measured at 100,000 clients x 10 s, 1 update/s,
#: quiet machine: 1.4 us per update for SSE, 1.0 us for push, 3.7 us per
#: update for long polling, i.e. 1.8 us per operation (an update and a
#: poll); 0.8 us per M/M/1 request; 2.5 us errs on the safe side), per client
#: (its connect or first poll, handled one by one: about 3 us) and one event
#: per batch (5 ms at most; request-response: 2,048 requests' worth).
BATCHED_SECONDS_PER_OP = 2.5e-6
BATCHED_SECONDS_PER_CLIENT = 5.0e-6
BATCHED_EVENTS_PER_S = 200.0


def _batched_cost(cfg: dict, span: float, clients: float, ops: float,
                  batch: float = 1.0 / BATCHED_EVENTS_PER_S) -> tuple[float, float, float]:
    events = min(ops + clients, span / batch) + 10.0
    cpu = ops * BATCHED_SECONDS_PER_OP + clients * BATCHED_SECONDS_PER_CLIENT
    memory = BASE_BYTES + clients * BYTES_PER_CLIENT[cfg["pattern"]] + ops * BYTES_PER_OP
    return events, cpu, memory


def run_cost(cfg: dict) -> tuple[float, float, float]:
    """(SimPy events, CPU seconds, bytes of memory) of one run."""
    p = cfg["pattern"]
    span = float(cfg["warmup"]) + float(cfg["duration"])
    if p == "short_polling":
        from commsim.patterns.notifications.polling import runs_ahead

        if _safe(runs_ahead, cfg, False):
            with _no_overflow():
                return tuple(_finite(x) for x in _ahead_cost(cfg, span, float(cfg["clients"]["count"])))
    if p == "request_response":
        from commsim.patterns.request_response import RequestResponse, exchanges_ahead

        if _safe(exchanges_ahead, cfg, False):
            with _no_overflow():
                rate = ops_rate(cfg)
                batch = max(RequestResponse.AHEAD_BATCH,
                            RequestResponse.AHEAD_REQUESTS / rate if rate > 0 else math.inf)
                return tuple(_finite(x) for x in _batched_cost(cfg, span, 0.0, rate * span, batch))
    if p in ("sse", "push", "long_polling"):
        from commsim.patterns.notifications.long_polling import polls_ahead
        from commsim.patterns.notifications.streaming import streams_ahead

        if _safe(polls_ahead if p == "long_polling" else streams_ahead, cfg, False):
            with _no_overflow():
                ops = (ops_rate(cfg) if p == "long_polling" else _updates(cfg)) * span
                return tuple(_finite(x) for x in _batched_cost(
                    cfg, span, float(cfg["clients"]["count"]), ops))
    with _no_overflow():
        clients = _safe(_clients, cfg, lambda c: float(c["clients"]["count"]))
        ops = _safe(ops_rate, cfg, lambda c: _safe(_client_rate, c, clients)) * span
        events = (ops * EVENTS_PER_OP.get(p, DEFAULT_EVENTS_PER_OP)
                  + clients * EVENTS_PER_CLIENT.get(p, DEFAULT_EVENTS_PER_CLIENT))
        memory = BASE_BYTES + clients * BYTES_PER_CLIENT.get(p, DEFAULT_BYTES_PER_CLIENT) + ops * BYTES_PER_OP
        cpu = events * SECONDS_PER_EVENT + clients * SECONDS_PER_CLIENT.get(p, DEFAULT_SECONDS_PER_CLIENT)
    return _finite(events), _finite(cpu), _finite(memory)


class _no_overflow:
    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        return typ is OverflowError   # floats overflow to inf; ints may raise


def _finite(x) -> float:
    try:
        x = float(x)
    except (OverflowError, TypeError):
        return math.inf
    return math.inf if math.isnan(x) else x


def estimate(points, replications: int, precision: dict | None = None) -> Estimate:
    """The estimate of an experiment whose sweep points have these configs."""
    reps = replications
    if precision:
        reps = max(reps, int(precision.get("max_replications") or reps))
    total = 0.0
    worst_events, worst_memory, worst = 0.0, 0.0, {}
    for p in points:
        events, cpu, memory = run_cost(p.config)
        total += cpu * reps
        if events > worst_events or memory > worst_memory:
            worst = dict(p.params)
        worst_events, worst_memory = max(worst_events, events), max(worst_memory, memory)
    return Estimate(runs=len(points) * reps, cpu_s=_finite(total),
                    max_events=worst_events, max_memory=worst_memory, worst=worst)


def check_runs(n_points: int, replications: int) -> None:
    """Refuse a run count beyond the limit before any point is resolved (a
    531,441-point sweep would otherwise take minutes just to load)."""
    runs = n_points * replications
    if runs > LIMITS["runs"]:
        raise ConfigError("replications" if n_points == 1 else "sweep",
                          f"{n_points:,} sweep point(s) x {replications:,} replication(s) = "
                          f"{runs:,} runs, beyond the limit of {LIMITS['runs']:,}; "
                          f"reduce the sweep or the replications, or {HOW_TO_ALLOW}")


def check(est: Estimate) -> None:
    over = est.over_limits()
    if over:
        where = f" (largest at {', '.join(f'{k}={v}' for k, v in est.worst.items())})" if est.worst else ""
        raise ConfigError("", f"this experiment is too large: {'; '.join(over)}. {est.text()}{where}. "
                          f"Shorten duration, lower clients.count or rates, reduce the sweep; or "
                          f"{HOW_TO_ALLOW}")
