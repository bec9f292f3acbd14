"""How much faster is ``commsim run --jobs 2`` than ``--jobs 1``?

Runs the same sweep (4 sweep points x 8 replications of an open-loop
request-response server at 60-80 % load) end to end
through the command line, alternating ``--jobs 1`` and ``--jobs 2`` so both
see the same machine load, each into a fresh results folder (nothing reused
from a store).  Prints every pair's times and ratio, the median ratio, and the
load average, since on a shared machine the ratio is only as good as the
quiet it was measured in.  It also checks that both give identical
``runs.csv``.

    python benchmarks/bench_parallel.py [--pairs 3] [--duration 100s] [--replications 8] [--mode cli|api]

This open-loop request-response runs ahead (commsim/patterns/request_response.py):
about 0.05 s of CPU per run at 100 s, 0.6 s at 1000 s.  At 100 s the whole
sweep takes ~3 s, half of it the serial part below, so ``--duration 1000s``
is the one that measures how the runs themselves spread over the workers.

End to end, the command's fixed serial part (interpreter start-up and imports,
~0.5 s; figures, ~0.5 s) does not shrink with --jobs, so a small sweep caps the
ratio (Amdahl): with 16 runs it was 1.71x on a quiet machine, with 32 runs more.

``--mode api`` times ``run_experiment`` in this process instead (no
interpreter start-up or figure drawing: the parallel part alone).

On a shared machine read the "cores used" column (CPU seconds of the command
and its workers / wall seconds): ``--jobs 2`` can only be twice as fast when
it gets two cores.  Linux's autogroup scheduler shares CPU between *sessions*,
not processes, so one busy process of another user's session is enough to
hold this benchmark's two workers to about one core between them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def config(duration: str, replications: int = 8) -> dict:
    return {
        "name": "bench_parallel",
        "pattern": "request_response",
        "seed": 1,
        "duration": duration,
        "replications": replications,
        "clients": {"count": 100, "mode": "async", "rate": "6/s"},
        "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
        "sweep": {"clients.rate": [6, 7, 7.5, 8]},
    }


CPU: dict[int, float] = {}     # CPU seconds of this benchmark's processes, per --jobs
OTHERS: dict[int, float] = {}  # cores other processes used meanwhile, per --jobs


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat)."""
    try:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _ours() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(jobs: int, fn) -> float:
    m0, c0, t0 = _machine_busy(), _ours(), time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    cpu = _ours() - c0
    # cpu / wall is how many cores this benchmark got; OTHERS is what the
    # rest of the machine used meanwhile (a fair pair has OTHERS near 0).
    CPU[jobs] = cpu
    OTHERS[jobs] = max(0.0, (_machine_busy() - m0 - cpu) / elapsed)
    return elapsed


def run_cli(path: Path, out: Path, jobs: int) -> float:
    return _timed(jobs, lambda: subprocess.run(
        [sys.executable, "-m", "commsim", "run", str(path), "--out", str(out), "--quiet", "--jobs", str(jobs)],
        cwd=ROOT, check=True))


def run_api(cfg: dict, jobs: int, out: Path) -> float:
    from commsim.config import load
    from commsim.experiment.runner import run_experiment

    box = {}
    elapsed = _timed(jobs, lambda: box.setdefault("r", run_experiment(load(cfg), jobs=jobs)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.csv").write_text(box["r"].runs.to_csv(index=False))
    return elapsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=3, help="alternating (jobs 1, jobs 2) pairs (default 3)")
    ap.add_argument("--duration", default="100s", help="simulated duration of each run (default 100s: ~1 s of CPU per run)")
    ap.add_argument("--replications", type=int, default=8,
                    help="replications per sweep point (default 8: 32 runs)")
    ap.add_argument("--mode", choices=("cli", "api"), default="cli")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    cfg = config(args.duration, args.replications)
    print(f"sweep: 4 points x {args.replications} replications, duration {args.duration}, mode {args.mode}, "
          f"{os.cpu_count()} cores, load average before {os.getloadavg()[0]:.2f}")
    ratios, t1s, t2s, quiet = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "bench.yaml"
        path.write_text(yaml.safe_dump(cfg))
        for i in range(args.pairs):
            times = {}
            # alternate which goes first, so a load change hits both alike
            for jobs in ((1, 2) if i % 2 == 0 else (2, 1)):
                out = tmp / f"p{i}_j{jobs}"
                times[jobs] = run_cli(path, out, jobs) if args.mode == "cli" else run_api(cfg, jobs, out)
            same = (tmp / f"p{i}_j1" / "runs.csv").read_bytes() == (tmp / f"p{i}_j2" / "runs.csv").read_bytes()
            ratio = times[1] / times[2]
            ratios.append(ratio)
            t1s.append(times[1])
            t2s.append(times[2])
            cores = (f"   cores used {CPU[1] / times[1]:.2f} / {CPU[2] / times[2]:.2f}"
                     f"   cpu {CPU[1]:.1f} / {CPU[2]:.1f} s"
                     f"   others {OTHERS[1]:.2f} / {OTHERS[2]:.2f} cores")
            if max(OTHERS.values()) < 0.1:
                quiet.append(ratio)
            print(f"pair {i + 1}: --jobs 1 {times[1]:6.2f} s   --jobs 2 {times[2]:6.2f} s   "
                  f"speed-up {ratio:.2f}x{cores}   identical runs.csv: {same}   "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
            if not same:
                print("ERROR: runs.csv differs between --jobs 1 and --jobs 2")
                return 1
    if len(quiet) < len(ratios):
        print(f"note: other processes used the machine during {len(ratios) - len(quiet)} pair(s) "
              "(autogroup shares CPU per session, so one busy process elsewhere holds --jobs 2 to "
              "about one core): those ratios measure the machine's load, not commsim")
    if quiet:
        print(f"pairs on a quiet machine (others < 0.1 core): {len(quiet)}, speed-up median "
              f"{statistics.median(quiet):.2f}x ({', '.join(f'{r:.2f}' for r in quiet)})")
    print(f"median: --jobs 1 {statistics.median(t1s):.2f} s, --jobs 2 {statistics.median(t2s):.2f} s, "
          f"speed-up {statistics.median(ratios):.2f}x (best pair {max(ratios):.2f}x, worst {min(ratios):.2f}x); "
          f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
