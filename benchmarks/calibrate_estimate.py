"""Measure the constants of commsim/config/estimate.py.

For each pattern, one representative sweep point of a committed experiment
is run in a fresh process at two sizes; each run reports its SimPy events
(the environment's event counter), its CPU time and its peak memory
(ru_maxrss).  From them:

* events per operation = events / (estimate.ops_rate x simulated time);
* seconds per event = CPU time / events;
* bytes per client = (peak memory of the large run - of the small run) /
  (client difference), after removing the operations' share;

Usage: python benchmarks/calibrate_estimate.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys

# pattern: (experiment, overrides for a small and a large run)
CASES = {
    "request_response": ("experiments/request_response.yaml", "clients.count", 100, 2000),
    "sync_async": ("experiments/sync_vs_async.yaml", "clients.count", 50, 1000),
    "stateful": ("experiments/stateful_vs_stateless.yaml", "clients.count", 100, 2000),
    "sidecar": ("experiments/sidecar.yaml", "clients.count", 20, 400),
    "multiplexing": ("experiments/multiplexing.yaml", "clients.count", 5, 100),
    "short_polling": ("experiments/notifications.yaml", "clients.count", 1000, 20000),
    "long_polling": ("experiments/notifications.yaml", "clients.count", 1000, 20000),
    "sse": ("experiments/notifications.yaml", "clients.count", 1000, 20000),
    "push": ("experiments/notifications.yaml", "clients.count", 1000, 20000),
    "pubsub": ("experiments/pubsub.yaml", "pubsub.subscribers", 1, 40),
}

CHILD = r"""
import json, resource, sys, time
from commsim.config import load
from commsim.config.estimate import ops_rate
from commsim.engine import Simulation
from commsim.patterns import registry
path, pattern, key, value, duration = sys.argv[1:6]
exp = load(path, [f"{key}={value}", f"duration={duration}", "warmup=0s"])
point = next(p for p in exp.points if p.config["pattern"] == pattern)
cfg = point.config
t0 = time.process_time()
sim = Simulation(cfg, 1)
model = registry()[pattern].model(sim)
sim.run()
model.metrics()
cpu = time.process_time() - t0
events = next(sim.env._eid)
print(json.dumps({"events": events, "cpu": cpu, "ops": ops_rate(cfg) * (cfg["warmup"] + cfg["duration"]),
                  "clients": cfg["clients"]["count"], "subs": cfg.get("pubsub", {}).get("subscribers"),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def measure(path, pattern, key, value, duration):
    out = subprocess.run([sys.executable, "-c", CHILD, path, pattern, key, str(value), duration],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    d1, d2 = ("1s", "3s") if "--quick" in sys.argv else ("2s", "6s")
    rows = {}
    for pattern, (path, key, small, large) in CASES.items():
        a = measure(path, pattern, key, small, d1)
        b = measure(path, pattern, key, large, d1)
        c = measure(path, pattern, key, large, d2)
        n_a = a["subs"] if pattern == "pubsub" else a["clients"]
        n_b = b["subs"] if pattern == "pubsub" else b["clients"]
        # events = per_client * clients + per_op * ops (b and c differ only in duration)
        per_op = (c["events"] - b["events"]) / (c["ops"] - b["ops"]) if c["ops"] > b["ops"] else 0.0
        per_client_events = max(0.0, (b["events"] - per_op * b["ops"]) / n_b)
        per_event = c["cpu"] / c["events"]
        per_op_bytes = max(0.0, (c["rss"] - b["rss"]) / (c["ops"] - b["ops"])) if c["ops"] > b["ops"] else 0.0
        per_client = (b["rss"] - a["rss"] - per_op_bytes * (b["ops"] - a["ops"])) / (n_b - n_a)
        rows[pattern] = {"events_per_op": round(per_op, 2), "events_per_client": round(per_client_events, 2),
                         "us_per_event": round(1e6 * per_event, 2), "bytes_per_client": round(per_client),
                         "bytes_per_op": round(per_op_bytes), "rss_small_MB": round(a["rss"] / 1e6),
                         "events": c["events"], "cpu_s": round(c["cpu"], 2)}
        print(pattern, rows[pattern], flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
