"""Capacity search: the largest value of one key that meets an SLO
(``commsim capacity``, :func:`capacity`).

    commsim capacity CONFIG --key clients.count --slo "latency_p99 < 1s" [--slo ...]
                     [--range LO:HI] [--resolution R] [--replications N] [--allow-unstable]

For every sweep point of CONFIG (e.g. every ``pattern`` of a pattern sweep;
the searched key itself must not be swept) the search finds the largest
value of ``--key`` at which

* every SLO holds for the mean over the point's replications (``METRIC OP
  VALUE``, OP one of ``<``, ``<=``, ``>``, ``>=``; VALUE in the metric's unit
  or with a unit: ``1s``, ``250ms``, ``10MB``), and
* the point is in steady state by the checks of
  :mod:`commsim.experiment.stability` (the ``unstable`` column of
  summary.csv, on the probe's means over replications; one owner, no
  thresholds of its own), unless ``--allow-unstable``.

Method and assumptions
----------------------
* **Monotonicity.**  The search assumes "meets the SLO" is true below the
  capacity and false above it (more clients, or a higher rate, never make
  latency better).  It never probes outside the bracket it has established,
  so noise can move the answer by the width of the noise but cannot make the
  search diverge; ``probes.csv`` lists every probe so a violation is visible.
* **Bracketing, then bisection.**  With ``--range LO:HI`` the two ends are
  probed first (capacity below LO, or at least HI, is reported as such).
  Without it the search starts at CONFIG's value of the key and doubles (or
  halves) it until the SLO changes, then bisects the bracket: for integer
  keys down to adjacent integers (``--resolution`` N stops at a gap of N),
  for real keys to a relative gap of ``--resolution`` (default 1%).  Wide
  brackets are split at their geometric mean, so each probe removes half of
  the remaining orders of magnitude.  All sweep points advance together, one
  probe each per wave, so ``--jobs`` runs them side by side.
* **Utilisation hint (better than bisection when the CPU binds).**  The
  best passing probe's ``server_utilization`` u predicts saturation at
  v x 0.99 / u (:data:`SATURATED`), if load grows in proportion to the key.  While bracketing,
  the search jumps to just past that point instead of doubling (fewer
  probes deep in overload, which are the expensive ones); inside the bracket
  it alternates the hint with plain bisection, so a wrong hint (the latency
  budget binds first, or the key does not scale the load) costs at most
  every other probe and the bracket still halves at least every two probes.
* **Replications and CRN.**  Every probe runs CONFIG's ``replications``
  (or ``--replications``); replication ``r`` of every probe and every sweep
  point uses the same seed, so neighbouring probes see the same random
  workload and their difference is sharper than either value.  The decision
  uses the replication mean (not a confidence bound); the table reports the
  95% half-width at the capacity and at the first failing value.
* **Reuse.**  Every run goes into the results folder's store (``.runs/``,
  :mod:`.store`), so repeating or refining a search (a finer resolution, a
  wider range, another SLO) recomputes only probes it has not seen.

Output (in ``--out``, default ``results/<name>/``): ``capacity.csv`` (one row
per sweep point), ``probes.csv`` (every probe: value, replications, SLO
metrics' means and half-widths, met, unstable), ``capacity.png`` (the first
SLO's metric against the key with the threshold and the capacities) and
``capacity.json`` (what was searched).
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from commsim.errors import ConfigError
from commsim.experiment import stability

if TYPE_CHECKING:  # pandas is imported where tables are built: `import commsim` stays lean (issue 14)
    import pandas as pd

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,
}

#: Where the utilisation hint aims: the one saturation threshold, owned by
#: the stability checks (:mod:`commsim.experiment.stability`).
SATURATED = stability.SATURATED


# ------------------------------------------------------------------ SLOs ----


@dataclass(frozen=True)
class Slo:
    metric: str
    op: str
    value: float
    text: str

    def holds(self, x: float) -> bool:
        return math.isfinite(x) and _OPS[self.op](x, self.value)


def _parse_value(text: str, unit: str, where: str) -> float:
    from commsim import units

    parsers = {"s": units.parse_duration, "B": units.parse_size, "1/s": units.parse_rate,
               "bit/s": units.parse_bandwidth}
    if unit == "B/s":  # bytes per second: a size per second, or a plain number
        m = re.fullmatch(r"\s*(.+?)\s*/\s*s\s*", text)
        return units.parse_size(m.group(1) if m else text, where)
    return parsers.get(unit, units.parse_number)(text, where)


def parse_slo(text: str) -> Slo:
    """``"latency_p99 < 1s"`` -> Slo; a ConfigError names ``--slo`` otherwise."""
    from commsim.metrics import METRICS
    from commsim.patterns import registry

    registry()  # the patterns define their families' metrics on import

    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(\S.*?)\s*", str(text))
    if not m:
        raise ConfigError("--slo", f"got {text!r}; expected METRIC OP VALUE, e.g. 'latency_p99 < 1s' "
                          "(OP: <, <=, >, >=)")
    name, op, value = m.groups()
    if name not in METRICS:
        import difflib

        close = difflib.get_close_matches(name, list(METRICS), n=1)
        raise ConfigError("--slo", f"unknown metric {name!r}"
                          f"{'; did you mean ' + repr(close[0]) + '?' if close else ''} "
                          "(`commsim patterns` lists each pattern's metrics)")
    return Slo(name, op, _parse_value(value, METRICS[name].unit, "--slo"), text.strip())


# ---------------------------------------------------------------- search ----


@dataclass
class _Group:
    index: int
    params: dict
    integer: bool
    good: float | None = None   # largest value known to meet
    bad: float | None = None    # smallest value known to fail
    done: bool = False
    status: str = ""
    hint: float | None = None   # predicted saturation from the best success's utilisation
    hinted: bool = False        # the last bracketed probe was the hint


def _next_value(g: _Group, start: float, lo: float | None, hi: float | None, resolution: float,
                floor: float) -> float | None:
    """The next probe of one group, or None when its search is over."""
    def rnd(v):
        return float(max(floor, math.floor(v))) if g.integer else v

    if g.good is None and g.bad is None:
        return lo if lo is not None else rnd(start)
    if lo is not None:
        if g.good is None:
            g.done, g.status = True, "below range"
            return None
        if g.bad is None:
            if hi is None or g.good >= hi:
                g.done, g.status = True, "at least range end"
                return None
            return hi
    if g.good is None:  # only failures so far: halve
        v = rnd(g.bad / 2)
        if v >= g.bad or g.bad <= floor:
            g.done, g.status = True, "below minimum"
            return None
        return v
    if g.bad is None:  # only successes: double, or jump just past the predicted saturation
        v = rnd(g.good * 2) if g.good > 0 else 1.0
        if g.hint is not None and 1.1 * g.good < 1.02 * g.hint < 2 * g.good:
            v = rnd(1.02 * g.hint)
        if v > 1e9:
            g.done, g.status = True, "unbounded (above 1e9)"
            return None
        return v
    gap = g.bad - g.good
    if (g.integer and gap <= max(1.0, resolution)) or (not g.integer and gap <= resolution * g.good):
        g.done, g.status = True, "found"
        return None
    if g.hint is not None and not g.hinted and g.good < rnd(g.hint) < g.bad:
        g.hinted = True  # alternate with bisection: the bracket at least halves every 2 probes
        return rnd(g.hint)
    g.hinted = False
    mid = math.sqrt(g.good * g.bad) if g.good > 0 and g.bad > 4 * g.good else (g.good + g.bad) / 2
    v = rnd(mid)
    if g.integer and v <= g.good:
        v = g.good + 1
    return v


def _hint(v: float, rows: list[dict]) -> float | None:
    """Where the server would reach :data:`SATURATED` if its utilisation
    grew in proportion to the key (true of clients.count and clients.rate
    when the CPU is the bottleneck): v x SATURATED / utilisation."""
    u = [r.get("server_utilization") for r in rows]
    u = [x for x in u if x is not None and math.isfinite(x)]
    if not u or not 0.02 < sum(u) / len(u) < SATURATED:
        return None
    return v * SATURATED / (sum(u) / len(u))


def _evaluate(rows: list[dict], slos: Sequence[Slo], summary_row: dict | None = None,
              config: dict | None = None) -> dict:
    """Means and 95% half-widths of the SLO metrics over replications, the
    verdicts and the instability reasons: those of the probe's summary row
    (``unstable_reason``, :func:`commsim.experiment.stability.assess`), so a
    probe is unstable exactly when summary.csv would say so;
    ``unstable_runs`` counts the replications that the same checks flag on
    their own (information only)."""
    from commsim.experiment.stats import mean_ci

    out: dict[str, Any] = {"replications": len(rows)}
    met = bool(rows)
    for s in slos:
        mean, half = mean_ci([r.get(s.metric, math.nan) for r in rows])
        out[s.metric], out[f"{s.metric}_ci95"] = mean, half
        met = met and s.holds(mean)
    if any("server_utilization" in r for r in rows):
        out["server_utilization"] = mean_ci([r.get("server_utilization", math.nan) for r in rows])[0]
    why = (summary_row or {}).get("unstable_reason")
    out["met"] = met
    out["unstable"] = why if isinstance(why, str) else ""
    out["unstable_runs"] = sum(1 for r in rows if stability.reasons(r, config))
    return out


def capacity(source, key: str = "clients.count", slos: Sequence[str] = ("latency_p99 < 1s",), *,
             overrides: Sequence[str] = (), range_: tuple[float, float] | None = None,
             resolution: float | None = None, replications: int | None = None,
             allow_unstable: bool = False, store=None, jobs: int = 1, executor: Any = "auto",
             say: Callable[[str], None] | None = None, max_waves: int = 60) -> pd.DataFrame:
    """Search, per sweep point of ``source`` (a YAML path or a dict), the
    largest value of ``key`` meeting every SLO; returns one row per point
    (the point's swept keys, ``capacity``, ``status``, ``first_failing``, the
    SLO metrics at both, ``probes``), with ``attrs["probes"]`` (every probe)
    and ``attrs["spec"]`` (what was searched).

    >>> commsim.capacity("experiments/capacity.yaml", "clients.count",
    ...                  ["latency_p99 < 1s"])                    # doctest: +SKIP
    """
    from commsim.config import load
    from commsim.config.load import RunSpec, get_dotted
    from commsim.experiment.executors import make_executor
    from commsim.experiment.runner import run_experiment
    from commsim.experiment.store import MemoryStore

    say = say or (lambda text: None)
    parsed = [parse_slo(s) for s in slos]
    if not parsed:
        raise ConfigError("--slo", "give at least one SLO, e.g. --slo 'latency_p99 < 1s'")
    extra = [f"replications={int(replications)}"] if replications is not None else []
    if replications is not None and replications < 1:
        raise ConfigError("--replications", f"got {replications}; expected a positive integer")
    exp = load(source, [*overrides, *extra])
    if exp.warmup_auto:
        raise ConfigError("warmup", "'auto' is not supported by the capacity search (each probe would "
                          "detect its own warm-up); set a duration, e.g. --set warmup=5s")
    if key in exp.sweep:
        raise ConfigError("--key", f"{key!r} is swept in the config; the searched key must not be "
                          "(remove it from sweep, or --set it to a starting value)")
    base = exp.points[0].config
    try:
        start = get_dotted(base, key)
    except (KeyError, TypeError):
        raise ConfigError("--key", f"{key!r} is not a key of this configuration") from None
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        raise ConfigError("--key", f"{key!r} has the value {start!r}; the search needs a numeric key")
    integer = isinstance(start, int)
    floor = 1.0 if integer else 0.0
    if resolution is None:
        resolution = 1.0 if integer else 0.01
    if not resolution > 0:
        raise ConfigError("--resolution", f"got {resolution}; expected a positive number")
    lo = hi = None
    if range_ is not None:
        lo, hi = (float(v) for v in range_)
        if not 0 < lo < hi:
            raise ConfigError("--range", f"got {lo:g}:{hi:g}; expected 0 < LO < HI")
        if integer:
            lo, hi = float(math.ceil(lo)), float(math.floor(hi))
    groups = [_Group(i, dict(p.params), integer) for i, p in enumerate(exp.points)]
    cache: dict[float, list] = {}

    def points_at(v: float):
        if v not in cache:
            text = str(int(v)) if integer else repr(float(v))
            try:
                cache[v] = load(source, [*overrides, *extra, f"{key}={text}"]).points
            except ConfigError as exc:
                raise ConfigError("--key", f"{key}={text} is not allowed: {exc.message}") from None
        return cache[v]

    store = store if store is not None else MemoryStore()
    ex = make_executor(executor, jobs, None, None)
    probes: list[dict] = []
    try:
        for wave in range(max_waves):
            wanted = []
            for g in groups:
                if not g.done:
                    v = _next_value(g, start, lo, hi, resolution, floor)
                    if v is not None:
                        wanted.append((g, v))
            if not wanted:
                break
            specs = []
            for g, v in wanted:
                point = points_at(v)[g.index]
                specs.append(RunSpec(params={**g.params, key: get_dotted(point.config, key)},
                                     config=point.config))
            sub = type(exp)(name=exp.name, resolved=exp.resolved,
                            sweep={**exp.sweep, key: sorted({v for _, v in wanted})},
                            points=specs, base_dir=exp.base_dir, source=exp.source)
            result = run_experiment(sub, None, executor=ex, store=store)
            by_point: dict[int, list[dict]] = {}
            summ = result.summary.to_dict("records") if not result.summary.empty else []
            runs = result.runs.to_dict("records") if not result.runs.empty else []
            for row in runs:
                for j, (g, v) in enumerate(wanted):
                    if all(_same(row.get(k), val) for k, val in specs[j].params.items()):
                        by_point.setdefault(j, []).append(row)
                        break
            failed = {j for j, (g, v) in enumerate(wanted)
                      for f in result.failures
                      if all(_same(f.get(k), val) for k, val in specs[j].params.items())}
            line = []
            for j, (g, v) in enumerate(wanted):
                mine = [r for r in summ
                        if all(_same(r.get(k), val) for k, val in specs[j].params.items())]
                ev = _evaluate(by_point.get(j, []), parsed, mine[0] if mine else None,
                               specs[j].config)
                ok = ev["met"] and (allow_unstable or not ev["unstable"]) and j not in failed
                if j in failed:
                    ev["unstable"] = "a run failed (see the runs' errors)"
                if ok:
                    if g.good is None or v > g.good:
                        g.hint = _hint(v, by_point.get(j, []))
                    g.good = v if g.good is None else max(g.good, v)
                else:
                    g.bad = v if g.bad is None else min(g.bad, v)
                probes.append({**g.params, key: _num(v, integer), "wave": wave, **ev, "ok": ok})
                label = ", ".join(f"{k}={val}" for k, val in g.params.items())
                s0 = parsed[0]
                line.append(f"{label + ': ' if label else ''}{key}={_num(v, integer)} "
                            f"{'ok' if ok else 'fails'} ({s0.metric} {ev[s0.metric]:.4g}"
                            f"{'; ' + ev['unstable'] if ev['unstable'] else ''})")
            say(f"wave {wave + 1}: " + "; ".join(line))
        else:
            for g in groups:
                if not g.done:
                    g.done, g.status = True, f"stopped after {max_waves} waves"
    finally:
        ex.close()
    import pandas as pd

    probe_df = pd.DataFrame(probes)
    rows = []
    for g in groups:
        row: dict[str, Any] = dict(g.params)
        cap = g.good
        row["key"] = key
        row["capacity"] = _num(cap, integer) if cap is not None else math.nan
        row["status"] = g.status or "found"
        row["first_failing"] = _num(g.bad, integer) if g.bad is not None else math.nan
        for which, v in (("at_capacity", g.good), ("at_first_failing", g.bad)):
            pr = _probe(probe_df, g.params, key, v)
            for s in parsed:
                row[f"{s.metric}_{which}"] = pr.get(s.metric, math.nan) if pr else math.nan
                row[f"{s.metric}_ci95_{which}"] = pr.get(f"{s.metric}_ci95", math.nan) if pr else math.nan
            if which == "at_first_failing":
                row["why_failing"] = (pr.get("unstable") or "SLO not met") if pr else ""
        row["probes"] = int(sum(1 for p in probes if all(_same(p.get(k), val) for k, val in g.params.items())))
        row["replications"] = exp.replications
        row["slo"] = " and ".join(s.text for s in parsed) + ("" if allow_unstable else " and stable")
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["probes"] = probe_df
    table.attrs["spec"] = {"key": key, "slo": [s.text for s in parsed],
                           "range": list(range_) if range_ else None, "resolution": resolution,
                           "replications": exp.replications, "allow_unstable": allow_unstable,
                           "sweep": list(exp.sweep), "experiment": exp.name}
    table.attrs["resolved"] = exp.resolved
    return table


def _num(v, integer: bool):
    return int(v) if integer and v is not None and math.isfinite(v) else v


def _same(a, b) -> bool:
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def _probe(df: pd.DataFrame, params: dict, key: str, v) -> dict | None:
    if v is None or df.empty:
        return None
    for rec in df.to_dict("records"):
        if _same(rec.get(key), v) and all(_same(rec.get(k), val) for k, val in params.items()):
            return rec
    return None


# ----------------------------------------------------------------- output ----


def describe(table: pd.DataFrame) -> str:
    spec = table.attrs.get("spec", {})
    key = spec.get("key", "key")
    lines = [f"capacity: largest {key} with {table['slo'].iloc[0] if len(table) else ''} "
             f"({spec.get('replications')} replication(s) per probe, CRN)"]
    params = [c for c in spec.get("sweep", []) if c in table.columns]
    first = spec.get("slo", [""])[0].split()[0] if spec.get("slo") else None
    for _, r in table.iterrows():
        label = ", ".join(f"{k}={r[k]}" for k in params) or "capacity"
        cap = r["capacity"]
        text = f"  {label}: "
        if r["status"] == "found":
            text += f"{key} = {cap} (fails at {r['first_failing']}: {r['why_failing']})"
        elif r["status"] == "at least range end":
            text += f"{key} >= {cap} (the end of --range meets the SLO)"
        elif r["status"] in ("below range", "below minimum"):
            text += f"none: fails already at {r['first_failing']} ({r['why_failing']})"
        else:
            text += f"{cap} ({r['status']})"
        if first and f"{first}_at_capacity" in r and math.isfinite(r[f"{first}_at_capacity"]):
            text += f"; {first} there {r[f'{first}_at_capacity']:.4g} ± {r[f'{first}_ci95_at_capacity']:.2g}"
        lines.append(text + f" [{r['probes']} probes]")
    return "\n".join(lines) + "\n"


def figure(table: pd.DataFrame, path: Path) -> Path:
    """Left: the first SLO's metric against the key (log-log), per sweep
    point, with 95% CIs, the threshold and each capacity (dotted); unstable
    probes as crosses.  Right (when reported): the server's utilisation with
    the saturation line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    from commsim.experiment.output import save_figure
    from commsim.metrics import METRICS

    spec = table.attrs["spec"]
    probes = table.attrs["probes"]
    key = spec["key"]
    slo = parse_slo(spec["slo"][0])
    params = [c for c in spec["sweep"] if c in table.columns]
    util = "server_utilization" in probes.columns and probes["server_utilization"].notna().any()
    fig = Figure(figsize=(10, 4.2) if util else (6.5, 4.2))
    axes = fig.subplots(1, 2 if util else 1, squeeze=False)[0]
    ax = axes[0]
    for i, (_, r) in enumerate(table.iterrows()):
        sel = probes
        for k in params:
            sel = sel[sel[k].map(lambda x, want=r[k]: _same(x, want))]
        sel = sel.sort_values(key)
        name = ", ".join(f"{r[k]}" for k in params) or "capacity"
        cap = r["capacity"]
        label = f"{name}: {cap:,.0f}" if isinstance(cap, (int, np.integer)) or \
            (math.isfinite(cap) and float(cap).is_integer()) else f"{name}: {cap:.4g}"
        color = f"C{i}"
        stable = sel[sel["unstable"] == ""]
        y = stable[slo.metric].to_numpy(float)
        half = stable[f"{slo.metric}_ci95"].fillna(0).to_numpy(float)
        ax.errorbar(stable[key], y, yerr=[np.minimum(half, 0.9 * y), half], fmt="o-", ms=3, lw=1,
                    capsize=2, color=color, label=label)
        shaky = sel[sel["unstable"] != ""]
        if not shaky.empty:
            ax.plot(shaky[key], shaky[slo.metric], "x", color=color, ms=6)
        if math.isfinite(cap):
            for a in axes:
                a.axvline(cap, color=color, ls=":", lw=1)
        if util:
            axes[1].plot(sel[key], sel["server_utilization"], "o-", ms=3, lw=1, color=color)
    ax.axhline(slo.value, color="black", lw=0.8, ls="--", label=f"SLO: {slo.text}")
    unit = METRICS[slo.metric].unit
    ax.set_yscale("log")
    ax.set_ylabel(f"{slo.metric} ({unit})" if unit != "1" else slo.metric)
    ax.set_title(f"Largest {key} with {slo.text} and stable", fontsize=9)
    ax.legend(fontsize=8, title="capacity", title_fontsize=8)
    if util:
        axes[1].axhline(SATURATED, color="black", lw=0.8, ls="--",
                        label=f"{SATURATED:.0%} busy: unstable under open-loop load")
        axes[1].set_ylabel("server_utilization (fraction of the cores)")
        axes[1].set_title("Server utilisation at each probe (mean of replications)", fontsize=9)
        axes[1].legend(fontsize=8)
    for a in axes:
        a.set_xscale("log")
        a.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        a.xaxis.set_minor_locator(LogLocator(subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
        a.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        a.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        a.set_xlabel(key)
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_figure(fig, Path(path))


MINE = ("capacity.csv", "probes.csv", "capacity.png", "capacity.json")


def write(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    from commsim.experiment.output import atomic_write

    out_dir = Path(out_dir)
    paths = [out_dir / "capacity.csv", out_dir / "probes.csv", out_dir / "capacity.json"]
    from commsim.experiment.tables import for_writing

    spec = table.attrs["spec"]
    ints = [*spec["sweep"], spec["key"], "capacity", "first_failing", "probes", "wave",
            "unstable_runs"]  # each written as integers only if all its values are whole
    for path, df in zip(paths[:2], (table, table.attrs["probes"])):
        buf = io.StringIO()
        for_writing(df, ints).to_csv(buf, index=False)
        atomic_write(path, buf.getvalue())
    atomic_write(paths[2], json.dumps(_spec_file(table), indent=1) + "\n")
    return [*paths, figure(table, out_dir / "capacity.png")]


def _spec_file(table: pd.DataFrame) -> dict:
    from commsim.config import dump_yaml
    import yaml

    return {**table.attrs["spec"], "config": yaml.safe_load(dump_yaml(table.attrs["resolved"]))}


def _range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*:\s*([0-9.eE+-]+)\s*", text)
    try:
        if m:
            return float(m.group(1)), float(m.group(2))
    except ValueError:
        pass
    raise ConfigError("--range", f"got {text!r}; expected LO:HI, e.g. 10:5000")


def cli(args) -> int:
    """``commsim capacity`` (registered in commsim/cli.py)."""
    from commsim.config import load
    from commsim.experiment.executors import default_jobs
    from commsim.experiment.store import RunStore

    if args.jobs < 0:
        raise ConfigError("--jobs", f"got {args.jobs}; expected a positive number of processes (0: one per core)")
    slos = args.slo or ["latency_p99 < 1s"]
    rng = _range(args.range)
    for s in slos:
        parse_slo(s)  # fail on a bad SLO before anything runs
    exp = load(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("results") / exp.name
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    # Before anything runs: a folder of other files, or of a search with
    # other settings, is kept unless --force (the run store is always reused).
    spec = {"key": args.key, "slo": [parse_slo(s).text for s in slos], "range": list(rng) if rng else None,
            "replications": args.replications or exp.replications,
            "allow_unstable": args.allow_unstable, "experiment": exp.name}
    if out.is_dir() and not args.force:
        others = sorted(p.name for p in out.iterdir() if p.name not in (*MINE, ".runs"))
        if others:
            raise ConfigError("--out", f"{str(out)!r} already holds {', '.join(others[:5])}; choose "
                              "another --out, or pass --force to write into it")
        try:
            prev = json.loads((out / "capacity.json").read_text())
        except OSError:
            prev = {} if not any((out / f).exists() for f in MINE) else None
        except ValueError:
            prev = None
        if prev is None or (prev and {k: prev.get(k) for k in spec} != spec):
            raise ConfigError("--out", f"{str(out)!r} holds a capacity search with other settings; "
                              "choose another --out, or pass --force to replace it (stored runs "
                              "are reused)")
    out.mkdir(parents=True, exist_ok=True)
    table = capacity(args.config, args.key, slos, overrides=args.overrides, range_=rng,
                     resolution=args.resolution, replications=args.replications,
                     allow_unstable=args.allow_unstable, store=RunStore(out),
                     jobs=args.jobs or default_jobs(), say=say)
    sys.stdout.write(describe(table))
    paths = write(table, out)
    say(f"wrote {', '.join(str(p) for p in paths)} (runs stored in {out}/.runs/)")
    return 0


def add_parser(sub) -> None:
    """The ``capacity`` sub-command's arguments."""
    c = sub.add_parser(
        "capacity", help="largest value of a key (e.g. clients.count) that meets an SLO",
        description="For every sweep point of CONFIG (e.g. each pattern), find the largest value "
                    "of --key at which every --slo holds for the mean over replications and the "
                    "point is stable (summary.csv's unstable column: saturated server under "
                    "open-loop load, growing queue or backlog, rising latency). Assumes the SLO gets "
                    "harder as the key grows (monotone); brackets by doubling from CONFIG's value "
                    "(or probes the ends of --range), jumping to the saturation its utilisation "
                    "predicts, then bisects (alternating with that prediction). Replications share seeds "
                    "(CRN); every run is stored in OUT/.runs/, so repeating a search is cheap. "
                    "Writes capacity.csv, probes.csv, capacity.png, capacity.json.",
        epilog="example: commsim capacity experiments/capacity.yaml --key clients.count "
               "--slo 'latency_p99 < 1s' --range 10:20000")
    c.add_argument("config")
    c.add_argument("--key", default="clients.count",
                   help="the numeric key to search (default clients.count; must not be swept)")
    c.add_argument("--slo", action="append", metavar="'METRIC OP VALUE'",
                   help="a service-level objective, e.g. 'latency_p99 < 1s' (repeatable: all must "
                        "hold; default 'latency_p99 < 1s')")
    c.add_argument("--range", metavar="LO:HI", help="search within [LO, HI] (default: bracket by "
                   "doubling/halving from the config's value)")
    c.add_argument("--resolution", type=float, metavar="R",
                   help="stop when the bracket is R wide (integer keys, default 1) or R relative "
                        "(real keys, default 0.01)")
    c.add_argument("--replications", type=int, metavar="N", help="replications per probe "
                   "(default: the config's)")
    c.add_argument("--allow-unstable", action="store_true",
                   help="accept probes flagged unstable if their SLO metrics pass")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--out", help="results folder (default results/<name>)")
    c.add_argument("--force", action="store_true", help="replace a folder holding other results")
    c.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="processes (0: one per core; default 1)")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
