"""Engine speed: commsim's request-response model vs a bare SimPy loop.

Runs a fixed request-response workload (sync clients, 10 ms links, a 4-core
server at ~60% load), counts the SimPy events it scheduled, then runs a bare
SimPy loop that schedules the same number of events (the same number of
processes, each yielding timeouts with pre-drawn exponential delays, so the
number of pending events is comparable) and prints both event rates and
their ratio.  Model and bare runs alternate ``--repeat`` times; the ratio is the median
of the pairwise ratios, which holds when the machine's speed drifts.

CPU time (``time.process_time``) of the simulation alone: the model's
``Simulation.run()`` (not building it, collecting metrics or the garbage
collection after a run) against the bare loop's ``env.run()``.  Each of the
model's events carries model work (bytes, CPU accounting, latency samples)
that the bare loop's do not, so a ratio below 1 is expected; the model's
own cost per action is benchmarks/bench_mm1.py's business.  /proc/loadavg is
printed before and after.

    python benchmarks/bench_core.py [--clients 2000] [--duration 30] [--repeat 3]

This is a benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import simpy

from commsim.config import load
from commsim.engine import Simulation
from commsim.patterns import registry


def workload(clients: int, duration: float) -> dict:
    return load({
        "pattern": "request_response", "duration": duration, "warmup": 1.0,
        "network": {"latency": "10ms"},
        "server": {"cores": 4, "service_time": {"dist": "exponential", "mean": "1ms"}},
        "clients": {"count": clients, "mode": "sync",
                    "think_time": {"dist": "exponential", "mean": f"{clients / 2400:.6f}s"}},
    }).points[0].config


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def run_model(cfg: dict) -> tuple[float, int, int]:
    """(CPU seconds of sim.run(), events scheduled, exchanges: messages sent / 2)."""
    sim = Simulation(cfg, 12345)
    registry()[cfg["pattern"]].model(sim)
    t0 = time.process_time()
    sim.run()
    return time.process_time() - t0, sim.events_scheduled, sim.bytes.sent / 2


def run_bare(processes: int, events: int) -> tuple[float, int]:
    rng = np.random.default_rng(1)
    per = events // processes + 1
    delays = rng.exponential(1.0, size=(processes, per)).tolist()
    env = simpy.Environment()

    def proc(ds):
        for d in ds:
            yield env.timeout(d)

    for ds in delays:
        env.process(proc(ds))
    t0 = time.process_time()
    env.run()
    return time.process_time() - t0, int(repr(env._eid)[6:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = workload(args.clients, args.duration)
    print(f"loadavg before: {loadavg()}")
    _, events, requests = run_model(cfg)  # warm-up run, and the event count to match
    model, bare, ratios = [], [], []
    for _ in range(args.repeat):  # interleaved, so drift in machine speed hits both sides
        m_t, _, _ = run_model(cfg)
        b_t, b_events = run_bare(args.clients, events)
        model.append(m_t)
        bare.append(b_t)
        ratios.append((events / m_t) / (b_events / b_t))
    m_t, b_t = statistics.median(model), statistics.median(bare)
    print(f"loadavg after : {loadavg()}")
    print(f"workload: request_response, {args.clients} sync clients, {args.duration:g} s simulated")
    print(f"commsim model : {events:>10,d} events, median {m_t:7.3f} s CPU = "
          f"{events / m_t / 1e3:8.1f} k events/s ({events / requests:.2f} events and "
          f"{m_t / requests * 1e6:.2f} us CPU per request-response)")
    print(f"bare SimPy    : {b_events:>10,d} events, median {b_t:7.3f} s CPU = {b_events / b_t / 1e3:8.1f} k events/s")
    print(f"ratio (model / bare events per second), median of {args.repeat} interleaved pairs: "
          f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
