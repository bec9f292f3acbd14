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

METRICS = ("bytes_total", "bytes_per_message", "bytes_header", "bytes_payload", "server_cpu_s",
           "latency_mean", "latency_p99", "requests", "updates_delivered", "empty_responses")
TARGETS = {"bytes_total": 0.02, "bytes_per_message": 0.02, "server_cpu_s": 0.15,
           "latency_mean": 0.20}
#: a testbed run whose client timers ran this late on average was limited by
#: the client process, not the server (flagged in the table)
CLIENT_LIMITED_S = 0.02


def _derived(r: dict) -> dict:
    """bytes_per_message: bytes over (requests + updates created): the byte
    model's accuracy given the work, free of the two sides' different random
    update counts."""
    n = float(r.get("requests", 0) or 0)
    u = r.get("updates_created")
    if u is not None and not (isinstance(u, float) and math.isnan(u)):
        n += float(u)
    return {**r, "bytes_per_message": float(r["bytes_total"]) / n if n else math.nan}


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


def fitted_cpu(cfg: dict, metrics: dict, preset: dict) -> float:
    """The calibrated CPU model's prediction for a run with these counts."""
    from commsim.testbed.calibrate import work_counts

    p = cfg["pattern"]
    frames = metrics.get("updates_delivered", 0.0) if p in ("sse", "push") else 0.0
    row = {"_pattern": p, "_duration": float(cfg["duration"]), "requests": metrics["requests"],
           "responses": metrics["responses"], "frames": frames,
           "updates_delivered": metrics.get("updates_delivered", 0.0),
           "connections_max": metrics.get("connections_max", cfg["clients"]["count"])}
    costs = preset["cpu_fit"][p]["costs_s"]
    return sum(costs.get(k, 0.0) * v for k, v in work_counts(row).items())


def simulate_points(exp, preset: dict) -> list[dict]:
    """Two passes per run: the first with the preset's mean CPU per message
    of the pattern counts the work (jobs demanded: requests, plus updates for
    streams; updates, connections); the second sets service_time to the
    calibrated model's CPU for that work divided by the jobs, so the
    simulator spends the fitted CPU, spread over the messages it sends."""
    from commsim.experiment.runner import simulate
    from commsim.rng import derive_run_seed

    rows = []
    for p in exp.points:
        cfg = apply_preset(p.config, preset)
        for r in range(exp.replications):
            seed = derive_run_seed(cfg["seed"], r)
            metrics, _ = simulate(cfg, seed)
            # Jobs the server is asked to do (not those it finished: an
            # overloaded server finishes fewer): a response per request, a
            # frame per update for streams.
            jobs = float(metrics["requests"])
            if cfg["pattern"] in ("sse", "push"):
                jobs += float(metrics.get("updates_created", 0.0))
            if jobs > 0:
                cfg2 = copy.deepcopy(cfg)
                cfg2["server"]["service_time"] = fitted_cpu(cfg, metrics, preset) / jobs
                metrics, _ = simulate(cfg2, seed)
                metrics["service_time_used"] = cfg2["server"]["service_time"]
            rows.append({**p.params, "replication": r, **metrics})
    return rows


def _key(params: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def compare(exp, real_rows: list[dict], sim_rows: list[dict]) -> list[dict]:
    from commsim.experiment.stats import mean_ci

    out = []
    for p in exp.points:
        k = _key(p.params)
        real = [_derived(r) for r in real_rows if _key({n: r[n] for n in p.params}) == k]
        sim = [_derived(r) for r in sim_rows if _key({n: r[n] for n in p.params}) == k]
        lag = np.nanmean([float(r.get("client_lag", 0) or 0) for r in real]) if real else 0.0
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
                        "target": TARGETS.get(m),
                        "client_limited": bool(lag > CLIENT_LIMITED_S)})
    return out


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    a = abs(x)
    return f"{x:.4g}" if a >= 1e-3 or a == 0 else f"{x:.3e}"


def markdown(rows: list[dict], params: list[str]) -> str:
    head = [*params, "metric", "measured", "± 95%", "simulated", "sim/real", "target", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        tgt = r["target"]
        ok = ""
        if tgt is not None and not math.isnan(r["ratio"]):
            ok = (" ok" if abs(r["ratio"] - 1) <= tgt else " MISSED")
        cells = [str(r.get(p, "")) for p in params] + [
            r["metric"], _fmt(r["measured"]), _fmt(r["measured_ci95"]), _fmt(r["simulated"]),
            _fmt(r["ratio"]), (f"±{tgt:.0%}{ok}" if tgt is not None else ""),
            "client-limited" if r.get("client_limited") else ""]
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


def saturation(rows: list[dict], x: str = "clients.count", limit: float = 1.0) -> dict:
    """Per pattern: the most clients whose p99 latency stayed within ``limit``
    seconds (the largest swept value before the first one above it)."""
    out: dict = {}
    for pattern in sorted({r["pattern"] for r in rows}):
        pts = sorted((float(r[x]), float(r["latency_p99"])) for r in rows
                     if r["pattern"] == pattern and x in r)
        best = None
        for n, p99 in pts:
            if p99 <= limit:
                best = n
            else:
                break
        out[pattern] = best
    return out


def load_preset(preset_path: Path) -> dict:
    js = preset_path.with_suffix(".json")
    if not js.exists():
        raise ConfigError("--preset", f"{str(js)!r} (the fit beside the preset) does not exist; "
                          "run `commsim calibrate` first")
    return json.loads(js.read_text())


def simulate_only(config, overrides, preset_path: Path, out_dir: Path | None,
                  say=print) -> str:
    """The calibrated simulator alone on CONFIG's sweep (full scale, beyond
    what the testbed can run): simulated.csv and a per-pattern saturation line."""
    import pandas as pd

    from commsim.config import load
    from commsim.experiment.output import atomic_write

    exp = load(config, overrides)
    preset = load_preset(preset_path)
    out_dir = out_dir or Path("results") / f"{exp.name}_validation"
    say(f"simulating {len(exp.points)} point(s) x {exp.replications} replication(s) "
        "with the preset (no testbed)")
    rows = simulate_points(exp, preset)
    for r, p in zip(rows, [p for p in exp.points for _ in range(exp.replications)]):
        r["pattern"] = p.config["pattern"]
        r["clients.count"] = p.config["clients"]["count"]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "simulated.csv", pd.DataFrame(rows).to_csv(index=False))
    sat = saturation(rows)
    text = "most clients with p99 <= 1 s (simulated): " + ", ".join(
        f"{p} {('>' if v is None else '')}{v if v is not None else 'none'}" for p, v in sat.items())
    say(f"wrote {out_dir}/simulated.csv")
    return text + "\n"


def validate(config, overrides, preset_path: Path, testbed_dir: Path | None,
             out_dir: Path | None, force: bool, say=print) -> str:
    import pandas as pd

    from commsim.config import load
    from commsim.experiment.output import atomic_write

    exp = load(config, overrides)
    preset = load_preset(preset_path)
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
    if "clients.count" in exp.sweep:
        real_pts = [{**r, "pattern": r.get("pattern", exp.resolved["pattern"])} for r in real_rows]
        sim_pts = [{**r, "pattern": r.get("pattern", exp.resolved["pattern"])} for r in sim_rows]
        sr, ss = saturation(real_pts), saturation(sim_pts)
        table += ("\nMost clients with p99 <= 1 s (largest swept value; '-' none): "
                  + "; ".join(f"{p}: testbed {sr.get(p) or '-'}, simulator {ss.get(p) or '-'}"
                              for p in sorted(set(sr) | set(ss))) + "\n")
        atomic_write(out_dir / "validation.md", table)
    say(f"wrote {out_dir}/validation.csv, validation.md{', validation.png' if fig else ''}")
    return table
