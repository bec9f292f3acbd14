"""M/M/1 per customer: commsim's simulation alone vs a bare SimPy script.

The commsim side is the M/M/1 point of experiments/precision_demo.yaml
(request_response, zero latency, zero header and body, 100 async Poisson
clients, 1 core, exponential 1 ms service) at ``clients.rate`` (default 8:
lambda = 800/s, rho = 0.8), with ``duration`` and ``warmup`` set here.  Only
``Simulation.run()`` is timed: building the model before and collecting the
metrics after are not (start-up is benchmarks/bench_startup.py's business).

The bare side is the usual SimPy M/M/1 script: a generator source with
``env.timeout`` interarrivals, a ``simpy.Resource(capacity=1)``, and a
customer process per arrival that requests, times out its service, releases
and records its wait; stdlib ``random.expovariate`` draws (cheaper than
numpy one value at a time, so this favours the bare side).  It runs for the
same simulated time, so both see about the same customers and pending events.

CPU time (``time.process_time``), not wall time; the two alternate
``--repeat`` times (interleaved pairs, so drift in the machine's speed hits
both) and the ratio printed is the median of the pairwise ratios of CPU per
customer (bare / commsim: above 1 means commsim is cheaper).  /proc/loadavg is
printed before and after.

Customers: for commsim, arrivals over the whole run (requests sent: over
zero-latency hops, ``sent = requests + responses`` and ``requests =
responses + jobs still at the server``); for bare SimPy, the source's count.

    python benchmarks/bench_mm1.py [--duration 320] [--repeat 5] [--rate 8]
                                   [--bare-gc-freeze]

This is a benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from pathlib import Path

import simpy

from commsim.config import load
from commsim.engine import Simulation
from commsim.patterns import registry

EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "precision_demo.yaml"
MEAN_SERVICE = 1e-3  # precision_demo.yaml's server.service_time mean
CLIENTS = 100        # ... and clients.count


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def mm1_config(rate: float, duration: float, warmup: float) -> dict:
    """The resolved config of precision_demo.yaml's point ``clients.rate = rate``."""
    exp = load(EXPERIMENT, [f"duration={duration}s", f"warmup={warmup}s", "replications=1"])
    for point in exp.points:
        if point.params.get("clients.rate") == rate:
            return point.config
    raise SystemExit(f"precision_demo.yaml has no point clients.rate = {rate}")


def run_commsim(cfg: dict, seed: int = 1) -> tuple[float, int, int, float]:
    """(CPU seconds of sim.run(), customers, events scheduled, mean wait)."""
    sim = Simulation(cfg, seed)
    model = registry()[cfg["pattern"]].model(sim)
    t0 = time.process_time()
    sim.run()
    cpu = time.process_time() - t0
    customers = (sim.bytes.sent + model.cpu.present.value) // 2
    return cpu, int(customers), sim.events_scheduled, model.cpu.wait_mean


def run_bare(lam: float, mu: float, until: float, seed: int = 1,
             freeze: bool = False) -> tuple[float, int, int, float]:
    """The usual SimPy M/M/1 script; (CPU seconds of env.run, customers,
    events scheduled, mean wait)."""
    rng = random.Random(seed)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    waits = []
    arrivals = 0

    def customer():
        t0 = env.now
        req = server.request()
        yield req
        waits.append(env.now - t0)
        yield env.timeout(rng.expovariate(mu))
        server.release(req)

    def source():
        nonlocal arrivals
        while True:
            yield env.timeout(rng.expovariate(lam))
            arrivals += 1
            env.process(customer())

    env.process(source())
    if freeze:
        gc.freeze()
    t0 = time.process_time()
    env.run(until=until)
    cpu = time.process_time() - t0
    if freeze:
        gc.unfreeze()
    return cpu, arrivals, int(repr(env._eid)[6:-1]), sum(waits) / len(waits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=320.0, help="simulated seconds measured")
    ap.add_argument("--warmup", type=float, default=10.0, help="simulated seconds of warm-up")
    ap.add_argument("--rate", type=float, default=8.0, help="clients.rate (per client, 1/s)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved pairs")
    ap.add_argument("--bare-gc-freeze", action="store_true",
                    help="freeze the garbage collector in the bare script too (commsim does)")
    args = ap.parse_args()
    cfg = mm1_config(args.rate, args.duration, args.warmup)
    lam, mu = CLIENTS * args.rate, 1.0 / MEAN_SERVICE
    until = args.warmup + args.duration
    print(f"loadavg before: {loadavg()}")
    run_commsim(mm1_config(args.rate, 5.0, 0.0))  # warm caches and imports
    run_bare(lam, mu, 5.0)
    pairs = []
    for _ in range(args.repeat):
        c = run_commsim(cfg)
        b = run_bare(lam, mu, until, freeze=args.bare_gc_freeze)
        pairs.append((c, b))
    print(f"loadavg after : {loadavg()}")
    rho = lam / mu
    print(f"M/M/1: lambda {lam:g}/s, mu {mu:g}/s, rho {rho:g}, {until:g} simulated s; "
          f"theory mean wait rho/(mu-lambda) = {rho / (mu - lam) * 1e3:.3f} ms")
    for name, i in (("commsim", 0), ("bare SimPy", 1)):
        us = [p[i][0] / p[i][1] * 1e6 for p in pairs]
        c = pairs[-1][i]
        print(f"{name:11s}: {c[1]:>8,d} customers, {c[2] / c[1]:5.2f} events/customer, "
              f"mean wait {c[3] * 1e3:.3f} ms; CPU/customer median {statistics.median(us):6.2f} us "
              f"(runs: {', '.join(f'{u:.2f}' for u in us)})")
    ratios = [(b[0] / b[1]) / (c[0] / c[1]) for c, b in pairs]
    print(f"ratio bare/commsim CPU per customer, median of {len(ratios)} interleaved pairs: "
          f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
          f"{'  [bare with gc.freeze]' if args.bare_gc_freeze else ''}")


if __name__ == "__main__":
    main()
