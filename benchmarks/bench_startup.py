"""Start-up cost (issue 14): `import commsim`, a one-run config, and the
M/M/1 run through the CLI against a bare SimPy script.

Every number is the CPU time (user + system, ``resource.getrusage`` of the
children) of a whole fresh process, interpreter start included, unless it
says "in-process" (``time.process_time`` around the step inside the child).
Three measurements:

1. ``import commsim`` (whole process, and the import alone in-process);
2. ``import commsim`` + a one-run config: ``commsim.load(dict)`` of the
   M/M/1 below with ``--one-duration`` simulated seconds and one
   ``commsim.simulate`` of it (the function the CLI's executors call for
   every run); for comparison also ``commsim.run_experiment`` of it (the
   API's run, which builds the pandas tables);
3. the M/M/1 through the CLI, ``commsim run mm1.yaml --out <fresh folder>``
   (tables, units.csv, figures, the run store, the key-metrics screen on
   stderr: everything a user's run does), against a bare SimPy script
   simulating the same M/M/1 for the same simulated time (a Poisson source
   process, one process per customer, a ``simpy.Resource`` of capacity 1,
   exponential service, each customer's latency kept in a list, stdlib
   ``random``).  Taken in interleaved pairs (CLI, bare, CLI, bare ...); the
   ratio is the median of the pairwise ratios.  The CLI's cost is split
   into start-up (the same command at ``--fixed-duration`` simulated
   seconds: every fixed cost, almost no simulation) and simulation (the
   rest).

The M/M/1 is the one of experiments/precision_demo.yaml: request_response,
zero latency, zero headers and body, ``--clients`` async (Poisson) clients
at ``--rate`` each, one core, exponential service of mean 1 ms; default
100 x 8/s = 800/s, rho = 0.8, for 320 s (the issue's 320 simulated
seconds), no warm-up, one replication.

Bytecode: Python normally caches compiled modules in ``__pycache__``; some
environments set ``PYTHONDONTWRITEBYTECODE=1`` (this sandbox does), and a
checkout without ``__pycache__`` then compiles every commsim module in every
process (about 0.1 s of CPU for import + load, more for the CLI).
``--bytecode cached`` (default) first writes each checkout's cache (one
untimed CLI run with writing allowed), as any normal install has it;
``--bytecode none`` removes the checkouts' ``commsim/**/__pycache__`` and
runs every child with ``PYTHONDONTWRITEBYTECODE=1`` (installed libraries keep
their caches either way).

``--old DIR`` also measures another checkout (e.g. ``git worktree add
--detach ../old main``) the same way, interleaved with this one, for
before/after numbers.

    python benchmarks/bench_startup.py [--pairs 5] [--duration 320] [--old DIR]

A benchmark, not a test: the numbers depend on the machine and its load
(printed from /proc/loadavg before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BARE = textwrap.dedent("""
    import random, sys
    import simpy

    T, LAM, MU, SEED = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    rnd = random.Random(SEED)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    latencies = []

    def customer():
        t0 = env.now
        with server.request() as req:
            yield req
            yield env.timeout(rnd.expovariate(MU))
        latencies.append(env.now - t0)

    def source():
        while True:
            yield env.timeout(rnd.expovariate(LAM))
            env.process(customer())

    env.process(source())
    env.run(until=T)
    print(len(latencies), sum(latencies) / len(latencies))
""")

IMPORT = textwrap.dedent("""
    import time
    t0 = time.process_time()
    import commsim
    print(time.process_time() - t0)
""")

ONE_RUN = textwrap.dedent("""
    import json, sys, time
    t0 = time.process_time()
    import commsim
    t1 = time.process_time()
    exp = commsim.load(json.loads(sys.argv[1]))
    t2 = time.process_time()
    if sys.argv[2] == "simulate":
        metrics, sim = commsim.simulate(exp.points[0].config, 1)
    else:
        metrics = commsim.run_experiment(exp).runs.iloc[0]
    t3 = time.process_time()
    heavy = [m for m in ("pandas", "pyarrow", "matplotlib") if m in sys.modules]
    print(json.dumps({"import": t1 - t0, "load": t2 - t1, "run": t3 - t2,
                      "requests": int(metrics["requests"]), "heavy": heavy}))
""")


def mm1_config(clients: int, rate: float, duration: float) -> dict:
    return {"name": "mm1_startup", "pattern": "request_response", "seed": 1,
            "duration": f"{duration:g}s", "warmup": "0s", "replications": 1,
            "clients": {"count": clients, "mode": "async", "rate": f"{rate:g}/s"},
            "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
            "request_response": {"request_header": "0B", "response_header": "0B",
                                 "response_body": "0B"}}


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


BYTECODE = {"mode": "cached"}


def child_cpu(argv: list[str], src: str | None = None, cwd: str | None = None,
              write_bytecode: bool = False) -> tuple[float, str]:
    """(user + system CPU seconds of the child process, its stdout)."""
    env = dict(os.environ)
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    elif BYTECODE["mode"] == "none":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if src is not None:  # which checkout's commsim the child imports
        env["PYTHONPATH"] = src
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Never the checkout as working directory: `python -c` would import its commsim first.
    proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                          cwd=cwd or tempfile.gettempdir())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, proc.stdout


def cli_run(src: str, yaml_path: str, work: str, tag: str, extra=(), write_bytecode=False) -> float:
    out = os.path.join(work, f"out-{tag}")
    shutil.rmtree(out, ignore_errors=True)  # a fresh folder: nothing reused from the store
    cpu, _ = child_cpu([sys.executable, "-m", "commsim", "run", yaml_path, "--out", out, *extra],
                       src=src, cwd=work, write_bytecode=write_bytecode)
    return cpu


def prepare_bytecode(sources: dict, mode: str, yaml_path: str, work: str) -> None:
    """cached: write every checkout's __pycache__ (an untimed CLI run and a
    simulate, writing allowed); none: remove it."""
    for name, src in sources.items():
        if mode == "none":
            for dirpath, dirnames, _ in os.walk(os.path.join(src, "commsim")):
                if "__pycache__" in dirnames:
                    shutil.rmtree(os.path.join(dirpath, "__pycache__"), ignore_errors=True)
        else:
            cli_run(src, yaml_path, work, f"{name}-prime", ("--quiet",), write_bytecode=True)


def med(xs) -> float:
    return statistics.median(xs)


def fmt(xs) -> str:
    return f"median {med(xs):6.3f} s (min {min(xs):.3f}, max {max(xs):.3f}, n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5, help="interleaved repetitions (default 5)")
    ap.add_argument("--duration", type=float, default=320.0, help="simulated seconds (default 320)")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rate", type=float, default=8.0, help="requests/s per client (default 8)")
    ap.add_argument("--one-duration", type=float, default=1.0,
                    help="simulated seconds of the one-run config (default 1)")
    ap.add_argument("--fixed-duration", type=float, default=0.01,
                    help="simulated seconds of the CLI run that measures start-up (default 0.01)")
    ap.add_argument("--quiet", action="store_true", help="pass --quiet to commsim run")
    ap.add_argument("--old", metavar="DIR", help="another checkout to measure the same way")
    ap.add_argument("--skip-cli", action="store_true", help="only the import measurements")
    ap.add_argument("--bytecode", choices=("cached", "none"), default="cached",
                    help="commsim's compiled-module cache: written first (default), or none")
    args = ap.parse_args()
    BYTECODE["mode"] = args.bytecode

    sources = {"this": ROOT}
    if args.old:
        sources["old"] = os.path.abspath(args.old)
    lam, mu = args.clients * args.rate, 1000.0
    print(f"load before: {loadavg()}  (python {sys.version.split()[0]}, {sys.executable})")
    print(f"bytecode: {args.bytecode} (PYTHONDONTWRITEBYTECODE in this environment: "
          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')})")
    work = tempfile.mkdtemp(prefix="bench-startup-")
    import yaml

    cfg_file = os.path.join(work, "mm1.yaml")
    fixed_file = os.path.join(work, "mm1-fixed.yaml")
    with open(cfg_file, "w") as fh:
        yaml.safe_dump(mm1_config(args.clients, args.rate, args.duration), fh)
    with open(fixed_file, "w") as fh:
        yaml.safe_dump(mm1_config(args.clients, args.rate, args.fixed_duration), fh)
    prepare_bytecode(sources, args.bytecode, fixed_file, work)
    print(f"M/M/1: {args.clients} async clients x {args.rate:g}/s = {lam:g}/s, service 1 ms "
          f"(rho = {lam / mu:.2f}), {args.duration:g} simulated s; {args.pairs} interleaved pairs")

    base = [child_cpu([sys.executable, "-c", "pass"])[0] for _ in range(args.pairs)]
    print(f"\nbare interpreter (python -c pass): {fmt(base)}")

    one_cfg = json.dumps(mm1_config(args.clients, args.rate, args.one_duration))
    res = {name: {"import_proc": [], "import_in": [], "one_proc": [], "one_in": [],
                  "api_proc": [], "api_in": []} for name in sources}
    heavy = {}
    for _ in range(args.pairs):
        for name, src in sources.items():
            cpu, out = child_cpu([sys.executable, "-c", IMPORT], src=src)
            res[name]["import_proc"].append(cpu)
            res[name]["import_in"].append(float(out.strip()))
            for how, key in (("simulate", "one"), ("run_experiment", "api")):
                cpu, out = child_cpu([sys.executable, "-c", ONE_RUN, one_cfg, how], src=src)
                got = json.loads(out)
                res[name][f"{key}_proc"].append(cpu)
                res[name][f"{key}_in"].append(got["import"] + got["load"] + got["run"])
                heavy[(name, key)] = got["heavy"]
    for name in sources:
        r = res[name]
        print(f"\n[{name}: {sources[name]}]")
        print(f"  import commsim, whole process        : {fmt(r['import_proc'])}")
        print(f"  import commsim, in-process           : {fmt(r['import_in'])}")
        print(f"  import + load + simulate ({args.one_duration:g} s), whole process : "
              f"{fmt(r['one_proc'])}  heavy modules: {heavy[(name, 'one')] or 'none'}")
        print(f"  import + load + simulate, in-process : {fmt(r['one_in'])}")
        print(f"  import + load + run_experiment (tables), whole process: {fmt(r['api_proc'])}  "
              f"heavy modules: {heavy[(name, 'api')] or 'none'}")

    try:
        if not args.skip_cli:
            extra = ("--quiet",) if args.quiet else ()
            bare_argv = [sys.executable, "-c", BARE, str(args.duration), str(lam), str(mu), "1"]
            cli = {name: [] for name in sources}
            fixed = {name: [] for name in sources}
            bare, ratios = [], {name: [] for name in sources}
            for i in range(args.pairs):
                b, _ = child_cpu(bare_argv)
                bare.append(b)
                for name, src in sources.items():
                    c = cli_run(src, cfg_file, work, f"{name}-{i}", extra)
                    cli[name].append(c)
                    ratios[name].append(c / b)
                    fixed[name].append(cli_run(src, fixed_file, work, f"{name}-fixed-{i}", extra))
            print(f"\nbare SimPy M/M/1, {args.duration:g} s, whole process: {fmt(bare)}")
            for name in sources:
                sim = [c - f for c, f in zip(cli[name], fixed[name])]
                print(f"\n[{name}] commsim run (CLI{', --quiet' if args.quiet else ''}), whole process: "
                      f"{fmt(cli[name])}")
                print(f"  start-up (same command at {args.fixed_duration:g} simulated s): {fmt(fixed[name])}")
                print(f"  simulation (the difference)                : {fmt(sim)}"
                      f"  = {med(sim) / med(bare):.2f} x the whole bare SimPy process")
                print(f"  ratio CLI / bare SimPy, median of {args.pairs} interleaved pairs: "
                      f"{med(ratios[name]):.3f} (min {min(ratios[name]):.3f}, "
                      f"max {max(ratios[name]):.3f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload after: {loadavg()}")


if __name__ == "__main__":
    main()
