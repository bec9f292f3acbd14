"""Benchmark: long polling, SSE and push at C clients x D simulated s, 1 update/s each.

The issue-14 goal: at 100,000 clients x 60 s and 1 update per second per
client (``workload.event_rate`` is per client), halve the CPU per
client-second.  Measured the same way for every pattern:

* process CPU time of building the model + running it (``time.process_time``;
  interpreter start and imports not included); on a shared machine CPU time
  is the fair measure, wall time includes waiting for a core;
* CPU per client-second = CPU / (clients x simulated seconds), in µs;
* simulation events (SimPy's event counter) per update created and per
  client-second;
* peak RSS of the child (``ru_maxrss``);
* ``/proc/loadavg`` before and after each run.

Each run is a fresh subprocess that imports commsim from ``--root`` (default:
this checkout) and leaves with ``os._exit`` after printing (the teardown is
not part of the measurement).

Workload (same for every pattern): constant latency 20 ms each way, server
service time exponential with mean ``--service`` (1 ms) on
``ceil(C x rate x service / 0.25)`` cores (about 25 % utilisation),
``workload.event_rate`` = ``--rate`` (1/s), default sizes, no availability
changes, no handshakes, no records.

A/B against an older commit::

    git worktree add --detach /work/wt/p-stream-old main
    python benchmarks/bench_notifications.py --pattern sse --clients 100000 \\
        --ab /work/wt/p-stream-old --pairs 3
    git worktree remove /work/wt/p-stream-old

``--ab`` interleaves old/new runs (old first in each pair) and prints the
median of the pairs' CPU ratios.  ``--identical OLD_ROOT`` times nothing: it
runs the small configs of tests/test_notifications_fast.py (and a few longer
ones) with both checkouts and lists every metric other than ``events`` that
differs (exit status 1 if any).

Usage::

    python benchmarks/bench_notifications.py --pattern long_polling --clients 100000
    python benchmarks/bench_notifications.py --pattern push --clients 10000 --duration 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENCY = 0.020
PATTERNS = ("long_polling", "sse", "push")


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def _cores(clients: int, rate: float, service: float) -> int:
    return max(1, math.ceil(clients * rate * service / 0.25))


def config_for(pattern: str, clients: int, duration: float, rate: float, service: float) -> dict:
    return {
        "pattern": pattern, "duration": duration, "seed": 1,
        "clients": {"count": clients},
        "network": {"latency": LATENCY},
        "server": {"cores": _cores(clients, rate, service),
                   "service_time": {"dist": "exponential", "mean": service}},
        "workload": {"event_rate": rate},
    }


def run_child(args) -> dict:
    sys.path.insert(0, args.root)
    from commsim.config import load
    from commsim.engine import Simulation
    from commsim.patterns import registry

    raw = config_for(args.pattern, args.clients, args.duration, args.rate, args.service)
    config = load(raw).points[0].config
    c0 = time.process_time()
    t0 = time.perf_counter()
    sim = Simulation(config, 1)
    model = registry()[args.pattern].model(sim)
    setup = time.process_time() - c0
    sim.run()
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    m = model.metrics()
    client_s = args.clients * args.duration
    return {"pattern": args.pattern, "root": args.root, "clients": args.clients,
            "duration": args.duration, "cpu_s": cpu, "wall_s": wall, "setup_cpu_s": setup,
            "events": sim.events_scheduled, "updates": m["updates_created"],
            "delivered": m["updates_delivered"], "latency_mean": m["latency_mean"],
            "sent": m["sent"], "delivered_msgs": m["delivered"], "in_flight": m["in_flight"],
            "us_per_client_s": cpu / client_s * 1e6,
            "events_per_update": sim.events_scheduled / m["updates_created"]
            if m["updates_created"] else float("nan"),
            "events_per_client_s": sim.events_scheduled / client_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _identical_child(root: str) -> None:
    """Print the metrics of every small config of tests/test_notifications_fast.py
    (plus longer ones) run with the commsim of ``root``, as JSON."""
    import math

    sys.path.insert(0, root)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import test_notifications_fast as t

    import commsim
    from commsim.engine import Simulation
    from commsim.patterns import registry

    cases = dict(t.STREAMING_CASES)
    cases.update(t.LONG_CASES)
    cases["lp_long"] = t._cfg("long_polling", count=300, rate=0.7, duration=40.0, warmup=3.0,
                              long_polling={"timeout": "2s"})
    cases["lp_long_broadcasts"] = t._cfg("long_polling", count=100, rate=0.3, duration=30.0,
                                         warmup=0.0, long_polling={"timeout": "1s"},
                                         workload={"broadcast_rate": 0.5})
    cases["lp_sparse"] = t._cfg("long_polling", count=2, rate=0.03, duration=60.0, warmup=0.0,
                                long_polling={"timeout": "300ms"})
    cases["sse_long"] = t._cfg("sse", count=300, rate=1.0, duration=30.0, warmup=2.0)
    out = {}
    for name, cfg in cases.items():
        config = commsim.load(cfg).points[0].config
        sim = Simulation(config, 5)
        model = registry()[config["pattern"]].model(sim)
        sim.run()
        out[name] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in model.metrics().items()}
    print(json.dumps(out), flush=True)


def identical(old_root: str, new_root: str) -> int:
    """Run the same configs with two checkouts; report every metric but
    ``events`` that differs (0 if none)."""
    got = []
    for root in (old_root, new_root):
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--identical-child", root],
                             capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            return 1
        got.append(json.loads(res.stdout.strip().splitlines()[-1]))
    old, new = got
    bad = 0
    for name in old:
        diff = [k for k in old[name] if k != "events" and old[name][k] != new[name].get(k)]
        bad += bool(diff)
        print(f"{name:32} events {old[name]['events']:>7,} -> {new[name]['events']:>7,}  "
              + (f"DIFFERS: {', '.join(diff[:6])}" if diff else "every other metric identical"))
    print(f"{bad} of {len(old)} configs differ in a metric other than events")
    return 1 if bad else 0


def _run(args, root: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--root", root,
           "--pattern", args.pattern, "--clients", str(args.clients),
           "--duration", str(args.duration), "--rate", str(args.rate),
           "--service", str(args.service)]
    before = _loadavg()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(1)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["load_before"] = before
    out["load_after"] = _loadavg()
    return out


def _show(r: dict, tag: str) -> None:
    print(f"{tag:4} {r['pattern']:13} cpu {r['cpu_s']:8.2f} s  wall {r['wall_s']:8.2f} s  "
          f"{r['us_per_client_s']:6.2f} us/client-s  events {r['events']:,} "
          f"({r['events_per_update']:.3f}/update, {r['events_per_client_s']:.3f}/client-s)  "
          f"peak RSS {r['peak_rss_mb']:.0f} MB  load {r['load_before']} -> {r['load_after']}",
          flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pattern", choices=PATTERNS, default="sse")
    p.add_argument("--clients", type=int, default=100_000)
    p.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    p.add_argument("--rate", type=float, default=1.0, help="updates per second per client")
    p.add_argument("--service", type=float, default=0.001, help="mean service time, s")
    p.add_argument("--root", default=ROOT, help="checkout whose commsim is measured")
    p.add_argument("--ab", metavar="OLD_ROOT", default=None,
                   help="also run an older checkout, interleaved, and compare")
    p.add_argument("--pairs", type=int, default=3, help="A/B pairs (with --ab)")
    p.add_argument("--json", action="store_true", help="print each run as JSON too")
    p.add_argument("--identical", metavar="OLD_ROOT", default=None,
                   help="instead of timing: run the small configs of "
                        "tests/test_notifications_fast.py with OLD_ROOT and --root and "
                        "report any metric but events that differs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--identical-child", metavar="ROOT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.identical_child:
        _identical_child(args.identical_child)
        os._exit(0)
    if args.identical:
        return identical(os.path.abspath(args.identical), os.path.abspath(args.root))
    if args.child:
        out = run_child(args)
        print(json.dumps(out), flush=True)
        os._exit(0)
    print(f"{args.pattern}: {args.clients:,} clients x {args.duration:g} simulated s, "
          f"{args.rate:g} update/s each; latency {LATENCY * 1e3:g} ms, service exp "
          f"{args.service * 1e3:g} ms on {_cores(args.clients, args.rate, args.service)} cores")
    if args.ab is None:
        r = _run(args, args.root)
        _show(r, "new")
        if args.json:
            print(json.dumps(r))
        return 0
    ratios = []
    for i in range(args.pairs):
        old = _run(args, os.path.abspath(args.ab))
        _show(old, "old")
        new = _run(args, args.root)
        _show(new, "new")
        if args.json:
            print(json.dumps(old))
            print(json.dumps(new))
        for key in ("updates", "delivered", "latency_mean", "sent", "delivered_msgs", "in_flight"):
            if old[key] != new[key]:
                print(f"  note: {key} differs: old {old[key]!r}, new {new[key]!r}")
        ratios.append(old["cpu_s"] / new["cpu_s"])
        print(f"  pair {i + 1}: old/new CPU = {ratios[-1]:.3f}")
    print(f"median old/new CPU over {len(ratios)} pairs: {statistics.median(ratios):.3f} "
          f"(pairs: {', '.join(f'{x:.3f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
