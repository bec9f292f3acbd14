"""Benchmark: C short-polling clients, once a second, for D simulated seconds.

Compares (a) commsim's ``short_polling`` pattern and (b) a plain, hand-written
SimPy model of the same polling loop (one process per client, a Resource as
the server, timeouts for latency and service), measured the same way:

* wall time and process CPU time of set-up + run (model building included,
  interpreter start not); on a shared machine CPU time is the fair measure;
* simulation events per CPU second (SimPy's event counter);
* polls per CPU second;
* peak RSS per client: (peak RSS of the process - RSS before building the
  model) / C, read from ``resource.getrusage`` (``ru_maxrss``) and
  ``/proc/self/statm``.

Each model runs in its own fresh subprocess, so the peak RSS of one does not
hide the other, and each subprocess leaves with ``os._exit`` after printing,
so the plain model's teardown of 100k suspended processes (see
../shared notes: 80-125 s) is not timed.

Same workload in both: latency 20 ms each way (constant), server service time
exponential with mean 1 ms on ``cores = ceil(C * 1ms / 1s / 0.25)`` cores
(~25 % utilisation), no updates (``workload.event_rate: 0``), poll phases
uniform in [0, 1 s).

Usage::

    python benchmarks/bench_polling.py                 # 10,000 clients, 60 s
    python benchmarks/bench_polling.py --clients 100000
    python benchmarks/bench_polling.py --only commsim --clients 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENCY = 0.020
SERVICE_MEAN = 0.001
INTERVAL = 1.0


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cores(clients: int, service: float = SERVICE_MEAN) -> int:
    """Cores that put the server at ~25 % utilisation."""
    return max(1, math.ceil(clients * service / INTERVAL / 0.25))


def run_commsim(clients: int, duration: float, event_rate: float, service: float, cores: int) -> dict:
    sys.path.insert(0, ROOT)
    from commsim.config import load
    from commsim.engine import Simulation
    from commsim.patterns import registry

    cfg = {
        "pattern": "short_polling", "duration": duration, "seed": 1,
        "clients": {"count": clients},
        "network": {"latency": LATENCY},
        "server": {"cores": cores, "service_time": {"dist": "exponential", "mean": service}},
        "short_polling": {"interval": INTERVAL},
        "workload": {"event_rate": event_rate},
    }
    config = load(cfg).points[0].config
    rss0 = _rss_now()
    c0 = time.process_time()
    t0 = time.perf_counter()
    sim = Simulation(config, 1)
    model = registry()["short_polling"].model(sim)
    t_built = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    metrics = model.metrics()
    return {"model": "commsim", "clients": clients, "duration": duration, "wall_s": wall, "cpu_s": cpu,
            "setup_s": t_built - t0, "events": sim.events_scheduled,
            "polls": metrics["requests"], "bytes": metrics["bytes_total"],
            "utilization": metrics["server_utilization"], "rss0": rss0}


def run_plain(clients: int, duration: float, service: float, cores: int) -> dict:
    import gc

    import numpy as np
    import simpy

    rng = np.random.default_rng(1)
    phases = rng.uniform(0.0, INTERVAL, clients).tolist()
    service = rng.exponential(service, 4096).tolist()
    state = {"polls": 0, "bytes": 0, "k": 0}

    def svc() -> float:
        k = state["k"]
        state["k"] = (k + 1) % 4096
        return service[k]

    def client(env, server, phase):
        yield env.timeout(phase)
        nxt = phase
        while True:
            state["polls"] += 1
            state["bytes"] += 600
            yield env.timeout(LATENCY)
            with server.request() as req:
                yield req
                yield env.timeout(svc())
            state["bytes"] += 271
            yield env.timeout(LATENCY)
            nxt += INTERVAL
            yield env.timeout(nxt - env.now)

    rss0 = _rss_now()
    c0 = time.process_time()
    t0 = time.perf_counter()
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=cores)
    for c in range(clients):
        env.process(client(env, server, phases[c]))
    t_built = time.perf_counter()
    gc.collect()
    gc.freeze()  # the same GC treatment commsim's Simulation.run applies
    env.run(until=duration)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    events = int(repr(env._eid)[6:-1])
    return {"model": "plain_simpy", "clients": clients, "duration": duration, "wall_s": wall, "cpu_s": cpu,
            "setup_s": t_built - t0, "events": events, "polls": state["polls"],
            "bytes": state["bytes"], "utilization": float("nan"), "rss0": rss0}


def _child(args) -> None:
    if args.child == "commsim":
        out = run_commsim(args.clients, args.duration, args.event_rate, args.service, args.cores)
    else:
        out = run_plain(args.clients, args.duration, args.service, args.cores)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["peak_rss"] = peak
    out["bytes_per_client"] = (peak - out.pop("rss0")) / args.clients
    print(json.dumps(out), flush=True)
    os._exit(0)  # skip teardown of the model (not part of the measurement)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--event-rate", type=float, default=0.0,
                   help="updates per second per client for commsim (the plain model has none)")
    p.add_argument("--service", type=float, default=SERVICE_MEAN,
                   help="mean server service time in seconds (exponential)")
    p.add_argument("--cores", type=int, default=None,
                   help="server cores (default: ~25 %% utilisation)")
    p.add_argument("--only", choices=("commsim", "plain"), default=None)
    p.add_argument("--child", choices=("commsim", "plain"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cores is None:
        args.cores = _cores(args.clients, args.service)
    if args.child:
        _child(args)
        return 0
    which = [args.only] if args.only else ["commsim", "plain"]
    rows = []
    for name in which:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name,
               "--clients", str(args.clients), "--duration", str(args.duration),
               "--event-rate", str(args.event_rate), "--service", repr(args.service),
               "--cores", str(args.cores)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"{args.clients} clients polling every {INTERVAL:g}s for {args.duration:g} simulated s "
          f"(latency {LATENCY * 1e3:g} ms, service exp {args.service * 1e6:g} µs, "
          f"{args.cores} cores, {args.event_rate:g} updates/s per client)")
    print("rates are per second of process CPU time (the machine is shared: wall time "
          "includes waiting for a core)")
    print(f"{'model':12} {'wall s':>8} {'cpu s':>8} {'setup s':>8} {'events':>11} {'events/s':>10} "
          f"{'polls':>10} {'polls/s':>9} {'B/client':>9} {'peak MB':>8}")
    for r in rows:
        print(f"{r['model']:12} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['setup_s']:8.2f} "
              f"{r['events']:11,d} {r['events'] / r['cpu_s']:10,.0f} {r['polls']:10,d} "
              f"{r['polls'] / r['cpu_s']:9,.0f} {r['bytes_per_client']:9,.0f} "
              f"{r['peak_rss'] / 1e6:8,.0f}")
    if len(rows) == 2:
        print(f"speed-up of commsim over plain SimPy: {rows[1]['cpu_s'] / rows[0]['cpu_s']:.2f}x (CPU), "
              f"{rows[1]['wall_s'] / rows[0]['wall_s']:.2f}x (wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
