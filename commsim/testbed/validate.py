"""``commsim validate CONFIG --preset P``: testbed and calibrated simulator,
side by side, on the same sweep.

For every sweep point: the testbed's runs (measured now, or read from
``--testbed DIR``) and the simulator's runs of the same resolved config
with the preset applied (``network.latency`` from the measured loopback RTT,
header sizes per pattern, ``server.cores: 1`` and ``server.service_time``
per pattern from the preset's ``.json`` fit, as a constant cost per message
sent), with as many replications.  Written to the output folder:

* ``validation.csv``: one row per point and metric: measured mean and 95 %
  CI half-width, simulated mean, ratio simulated / measured;
* ``validation.md``: the same as a Markdown table, with the targets;
* ``validation.png``: per metric, the simulated curve and the measured
  points with their CIs against the first numeric swept parameter, one line
  per pattern.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np

from commsim.errors import ConfigError

METRICS = ("bytes_total", "bytes_header", "bytes_payload", "server_cpu_s", "latency_mean",
           "latency_p99", "requests", "updates_delivered", "empty_responses")
TARGETS = {"bytes_total": 0.02, "server_cpu_s": 0.15, "latency_mean": 0.20}


def apply_preset(cfg: dict, preset: dict) -> dict:
    """A resolved config with the calibrated values set (see module doc)."""
    cfg = copy.deepcopy(cfg)
    p = cfg["pattern"]
    cfg["network"]["latency"] = preset["loopback_rtt_s"] / 2
    cfg["server"]["cores"] = 1
    service = preset["service_time_per_pattern_s"].get(p)
    if service is None or (isinstance(service, float) and math.isnan(service)):
        raise ConfigError("--preset", f"has no calibrated CPU cost for pattern {p!r}; calibrate "
                          "with testbed runs of that pattern")
    cfg["server"]["service_time"] = float(service)
    for key in ("request_header", "response_header", "frame_overhead"):
        v = preset["headers"].get(p, {}).get(key)
        if v is not None and p in cfg and key in cfg[p]:
            cfg[p][key] = float(v)
    return cfg


def simulate_points(exp, preset: dict) -> list[dict]:
    from commsim.experiment.runner import simulate
    from commsim.rng import derive_run_seed

    rows = []
    for p in exp.points:
        cfg = apply_preset(p.config, preset)
        for r in range(exp.replications):
            seed = derive_run_seed(cfg["seed"], r)
            metrics, _ = simulate(cfg, seed)
            rows.append({**p.params, "replication": r, **metrics})
    return rows


def _key(params: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def compare(exp, real_rows: list[dict], sim_rows: list[dict]) -> list[dict]:
    from commsim.experiment.stats import mean_ci

    out = []
    for p in exp.points:
        k = _key(p.params)
        real = [r for r in real_rows if _key({n: r[n] for n in p.params}) == k]
        sim = [r for r in sim_rows if _key({n: r[n] for n in p.params}) == k]
        for m in METRICS:
            rv = np.array([float(r.get(m, math.nan)) for r in real], dtype=float)
            sv = np.array([float(r.get(m, math.nan)) for r in sim], dtype=float)
            if np.all(np.isnan(rv)) or np.all(np.isnan(sv)):
                continue
            rmean, rci = mean_ci(rv)
            smean = float(np.nanmean(sv))
            ratio = smean / rmean if rmean else math.nan
            out.append({**p.params, "pattern": p.config["pattern"],
                        "metric": m, "measured": rmean, "measured_ci95": rci,
                        "simulated": smean, "ratio": ratio,
                        "target": TARGETS.get(m)})
    return out


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    a = abs(x)
    return f"{x:.4g}" if a >= 1e-3 or a == 0 else f"{x:.3e}"


def markdown(rows: list[dict], params: list[str]) -> str:
    head = [*params, "metric", "measured", "± 95%", "simulated", "sim/real", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        tgt = r["target"]
        ok = ""
        if tgt is not None and not math.isnan(r["ratio"]):
            ok = (" ok" if abs(r["ratio"] - 1) <= tgt else " MISSED")
        cells = [str(r.get(p, "")) for p in params] + [
            r["metric"], _fmt(r["measured"]), _fmt(r["measured_ci95"]), _fmt(r["simulated"]),
            _fmt(r["ratio"]), (f"±{tgt:.0%}{ok}" if tgt is not None else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], exp, path: Path) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from commsim.experiment.output import save_figure

    xs = [k for k in exp.sweep if k != "pattern"
          and all(isinstance(v, (int, float)) for v in exp.sweep[k])]
    if not xs:
        return None
    x = xs[0]
    shown = ("bytes_total", "server_cpu_s", "latency_mean")
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.6))
    for ax, m in zip(axes, shown):
        sel = [r for r in rows if r["metric"] == m]
        for i, pattern in enumerate(sorted({r["pattern"] for r in sel})):
            rs = sorted((r for r in sel if r["pattern"] == pattern
                         and all(r.get(o) == sel[0].get(o) for o in xs[1:])),
                        key=lambda r: float(r[x]))
            if not rs:
                continue
            color = f"C{i}"
            ax.plot([float(r[x]) for r in rs], [r["simulated"] for r in rs], "-", color=color,
                    label=f"{pattern} sim")
            ax.errorbar([float(r[x]) for r in rs], [r["measured"] for r in rs],
                        yerr=[0 if math.isnan(r["measured_ci95"]) else r["measured_ci95"]
                              for r in rs], fmt="o", color=color, capsize=3,
                        label=f"{pattern} testbed")
        ax.set_xlabel(x)
        ax.set_ylabel(m)
        ax.set_xscale("log")
        if m == "latency_mean":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("simulated (lines) vs measured on loopback (points, 95% CI)", fontsize=9)
    return save_figure(fig, path)


def validate(config, overrides, preset_path: Path, testbed_dir: Path | None,
             out_dir: Path | None, force: bool, say=print) -> str:
    import pandas as pd

    from commsim.config import load
    from commsim.experiment.output import atomic_write

    exp = load(config, overrides)
    js = preset_path.with_suffix(".json")
    if not js.exists():
        raise ConfigError("--preset", f"{str(js)!r} (the fit beside the preset) does not exist; "
                          "run `commsim calibrate` first")
    preset = json.loads(js.read_text())
    out_dir = out_dir or Path("results") / f"{exp.name}_validation"
    if testbed_dir is None:
        from commsim.testbed.run import run_testbed
        testbed_dir = out_dir / "testbed"
        from commsim.experiment import output
        output.check_target(testbed_dir, exp.resolved, force)
        run_testbed(exp, testbed_dir, say)
    real_rows = pd.read_csv(testbed_dir / "runs.csv").to_dict("records")
    say(f"simulating {len(exp.points)} point(s) x {exp.replications} replication(s) "
        "with the preset")
    sim_rows = simulate_points(exp, preset)
    rows = compare(exp, real_rows, sim_rows)
    params = [k for k in exp.sweep]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "validation.csv", pd.DataFrame(rows).to_csv(index=False))
    table = markdown(rows, params)
    atomic_write(out_dir / "validation.md", table)
    fig = figure(rows, exp, out_dir / "validation.png")
    say(f"wrote {out_dir}/validation.csv, validation.md{', validation.png' if fig else ''}")
    return table
