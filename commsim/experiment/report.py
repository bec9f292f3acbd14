"""Figures from finished results (``commsim plot``) and ``results/REPORT.md``
(``commsim report``), both without simulating.

A results folder (``runs.csv``, ``summary.csv``, ``config.resolved.yaml``)
is enough to rebuild a :class:`~commsim.experiment.runner.Result`
(:func:`load_result`); :func:`draw_figures` then calls every pattern's
``figures(result, out_dir)`` and draws the ``plots:`` section
(:mod:`.plotspec`), recording in ``figures.json`` what each figure shows and
the seed and replications behind it.  :func:`write_report` does that for every
experiment under ``results/`` (PNG for the page plus a vector format for
papers) and writes one Markdown page with each experiment's table and
figures.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from commsim.errors import ConfigError

MANIFEST = "figures.json"


_KEEP = object()


def load_result(out_dir: Path, plots=_KEEP):
    """Rebuild a Result from a results folder (``plots``, if given, replaces
    its plots section: a resolved list, or None for none)."""
    import pandas as pd
    import yaml

    from commsim.config import load
    from commsim.experiment.runner import Result

    out_dir = Path(out_dir)
    missing = [f for f in ("config.resolved.yaml", "summary.csv", "runs.csv") if not (out_dir / f).exists()]
    if missing:
        raise ConfigError(str(out_dir), f"not a results folder: missing {', '.join(missing)} "
                          "(run `commsim run CONFIG` first)")
    resolved = yaml.safe_load((out_dir / "config.resolved.yaml").read_text()) or {}
    if plots is None:
        resolved.pop("plots", None)
    elif plots is not _KEEP:
        resolved["plots"] = plots
    exp = load(resolved)
    runs = pd.read_csv(out_dir / "runs.csv")
    summary = pd.read_csv(out_dir / "summary.csv")
    return Result(experiment=exp, runs=runs, summary=summary)


def formats_in_use(out_dir: Path) -> tuple[str, ...]:
    """PNG plus every other format the folder's figures were last drawn in
    (per its figures.json), so redrawing after a new run also refreshes the
    PDFs/SVGs a report made instead of leaving them stale."""
    extra: set[str] = set()
    try:
        for rec in json.loads((Path(out_dir) / MANIFEST).read_text()):
            extra.update(f for f in rec.get("formats", []) if f in ("pdf", "svg"))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return ("png", *sorted(extra))


def draw_figures(result, out_dir: Path, formats=("png",), warn=None) -> list[dict]:
    """The pattern figures and the ``plots:`` figures of ``result``; returns
    (and writes to ``figures.json``) one record per figure."""
    from commsim.experiment import output, plotspec
    from commsim.patterns import registry

    warn = warn or (lambda text: print(text, file=sys.stderr))
    out_dir = Path(out_dir)
    context = plotspec.figure_context(result)
    records: list[dict] = []
    names = sorted({str(p.config["pattern"]) for p in result.experiment.points})
    with output.figure_session(formats) as manifest:
        drawn = set()
        for name in names:
            fig_fn = registry()[name].figures
            if fig_fn is None or fig_fn in drawn:  # a family shares one (notifications)
                continue
            drawn.add(fig_fn)
            start = len(manifest)
            try:
                paths = fig_fn(result, out_dir) or []
            except Exception as exc:  # a figure must not lose the results
                warn(f"warning: figures of pattern {name!r} failed: {type(exc).__name__}: {exc}")
                continue
            recorded = {m["file"] for m in manifest[start:]}
            for m in manifest[start:]:
                m.setdefault("source", f"pattern {name}")
                for k, v in context.items():
                    m.setdefault(k, v)
            for p in paths:  # figures saved without save_figure
                p = Path(p)
                if p.name not in recorded and p.suffix in (".png", ".svg", ".pdf"):
                    manifest.append({"file": p.name, "formats": [p.suffix[1:]],
                                     "source": f"pattern {name}", **context})
        for spec in result.experiment.resolved.get("plots") or []:
            try:
                plotspec.draw(spec, result, out_dir)
            except Exception as exc:
                warn(f"warning: figure {spec['name']!r} of plots: failed: {type(exc).__name__}: {exc}")
        records = list(manifest)
    if records:
        output.atomic_write(out_dir / MANIFEST, json.dumps(records, indent=1, default=str) + "\n")
    return records


# ------------------------------------------------------------------ report --

KEY_METRICS = ("throughput", "latency_mean", "latency_p99", "wait_mean", "server_utilization",
               "bandwidth", "server_cpu_wasted_s", "client_blocked_fraction")


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def summary_table(result, max_metrics: int = 6) -> list[str]:
    """Markdown table: swept parameters, replications and key metrics as
    mean ± 95% half-width."""
    s = result.summary
    params = [p for p in result.experiment.sweep if p in s.columns]
    wanted = []
    for spec in result.experiment.resolved.get("plots") or []:
        for y in spec["y"] if isinstance(spec["y"], list) else [spec["y"]]:
            if y not in wanted:
                wanted.append(y)
    wanted += [m for m in KEY_METRICS if m not in wanted]
    metrics = [m for m in wanted if m in s.columns and s[m].notna().any()][:max_metrics]
    header = params + ["replications"] + metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in s.iterrows():
        cells = [_fmt(row[p]) for p in params] + [_fmt(int(row["replications"]))]
        for m in metrics:
            hw = row.get(f"{m}_ci95", math.nan)
            cells.append(_fmt(row[m]) + ("" if hw != hw else f" ± {_fmt(float(hw))}"))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def _describe_figure(rec: dict) -> str:
    bits = []
    if rec.get("source") == "plots":
        y = rec["y"] if isinstance(rec["y"], str) else ", ".join(rec["y"])
        bits.append(f"{y} against {rec['x']}" + (f" by {rec['hue']}" if rec.get("hue") else ""))
        if rec.get("where"):
            bits.append("where " + ", ".join(f"{k}={v}" for k, v in rec["where"].items()))
        axes = [a for a in ("logx", "logy") if rec.get(a)]
        if axes:
            bits.append(" and ".join(axes))
        if rec.get("errorbars"):
            bits.append("error bars: 95% CI")
    else:
        bits.append(f"from {rec.get('source', 'pattern')}")
    reps = rec.get("replications")
    bits.append(f"seed {rec.get('seed')}, {reps} replication(s) per point, duration {_fmt(rec.get('duration'))} s,"
                f" warm-up {_fmt(rec.get('warmup'))} s")
    sweep = rec.get("sweep") or {}
    if sweep:
        bits.append("sweep " + "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in sweep.items()))
    return "; ".join(bits)


def experiment_section(result, folder: str, records: list[dict]) -> list[str]:
    r = result.experiment.resolved
    patterns = sorted({str(p.config["pattern"]) for p in result.experiment.points})
    lines = [f"## {result.experiment.name}", "",
             f"Pattern(s): {', '.join(f'`{p}`' for p in patterns)}; seed {r.get('seed')}; "
             f"duration {_fmt(r.get('duration'))} s after a warm-up of {_fmt(r.get('warmup'))} s; "
             f"{len(result.experiment.points)} sweep point(s). Files: [`{folder}/`]({folder}/) "
             f"(`runs.csv`, `summary.csv`, `config.resolved.yaml`).", "",
             "Means with 95% confidence half-widths (Student t over replications):", "",
             *summary_table(result), ""]
    if records:
        lines += ["Figures:", ""]
    for rec in records:
        stem = Path(rec["file"]).stem
        others = [f for f in rec.get("formats", []) if f != "png"]
        links = ", ".join(f"[{f.upper()}]({folder}/{stem}.{f})" for f in others)
        lines += [f"![{stem}]({folder}/{rec['file']})", "",
                  f"*{rec['file']}*" + (f" ({links})" if links else "") + f": {_describe_figure(rec)}.", ""]
    return lines


def existing_figures(result, folder: Path) -> list[dict]:
    """The figures already in ``folder``: its figures.json, or else every PNG
    (with a PDF or SVG of the same stem beside it, if any)."""
    from commsim.experiment import plotspec

    mf = folder / MANIFEST
    if mf.exists():
        return json.loads(mf.read_text())
    context = plotspec.figure_context(result)
    records = []
    for png in sorted(folder.glob("*.png")):
        formats = ["png"] + [f for f in ("pdf", "svg") if png.with_suffix(f".{f}").exists()]
        records.append({"file": png.name, "formats": formats, "source": "the experiment's figures",
                        **context})
    return records


def write_report(results_dir: Path = Path("results"), out_file: Path | None = None,
                 formats=("png", "pdf"), redraw: bool = True, warn=None) -> tuple[Path, list[str]]:
    """Write ``REPORT.md`` for every experiment folder under ``results_dir``."""
    from commsim.experiment.output import atomic_write

    results_dir = Path(results_dir)
    out_file = Path(out_file) if out_file else results_dir / "REPORT.md"
    folders = sorted(p.parent for p in results_dir.glob("*/config.resolved.yaml")
                     if (p.parent / "summary.csv").exists())
    if not folders:
        raise ConfigError(str(results_dir), "holds no experiment results (no */config.resolved.yaml); "
                          "run `commsim run CONFIG` first")
    lines = ["# commsim report", "",
             f"Generated by `commsim report` from {len(folders)} experiment folder(s) under "
             f"`{results_dir}/`, without re-simulating. Each figure lists what it shows and the "
             "seed, replications and window of the runs behind it; figures come as PNG and "
             f"{', '.join(f.upper() for f in formats if f != 'png') or 'PNG only'} (for papers).", "",
             "Experiments: " + ", ".join(f"[{f.name}](#{f.name.lower()})" for f in folders) + ".", ""]
    done = []
    for folder in folders:
        try:
            result = load_result(folder)
        except Exception as exc:  # a broken folder must not hide the others
            (warn or print)(f"warning: skipping {folder}: {exc}")
            continue
        if redraw:
            records = draw_figures(result, folder, formats, warn)
        else:
            records = existing_figures(result, folder)
        rel = folder.relative_to(results_dir) if folder.is_relative_to(results_dir) else folder
        lines += experiment_section(result, str(rel), records)
        done.append(result.experiment.name)
    atomic_write(out_file, "\n".join(lines).rstrip() + "\n")
    return out_file, done
