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
    if "unstable" not in summary.columns:  # results written before the stability check
        from commsim.experiment.stability import assess

        summary = assess(summary, exp)
    summary["unstable_reason"] = ["" if not isinstance(v, str) else v for v in summary["unstable_reason"]]
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
    from commsim.figures import sidetables
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
            before = len(sidetables.missing)
            try:
                paths = fig_fn(result, out_dir) or []
            except Exception as exc:  # a figure must not lose the results
                warn(f"warning: figures of pattern {name!r} failed: {type(exc).__name__}: {exc}")
                continue
            finally:
                for missing in sidetables.missing[before:]:  # figures never re-simulate
                    warn(f"warning: {missing}")
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

def _fmt(v) -> str:
    from commsim.humanize import number

    return number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _md(s: str) -> str:
    return str(s).replace("|", "\\|")


def slug(text: str) -> str:
    """GitHub's heading anchor for ``text`` (lower case, spaces to dashes,
    punctuation other than - and _ dropped)."""
    import re

    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def summary_table(result) -> list[str]:
    """Markdown table: swept values as written, replications, the family's
    key metrics (mean ± 95% half-width, human units) and steady state."""
    from commsim.experiment import keymetrics as km

    header, rows, flags = km.table(result)
    reps = [str(int(r)) for r in result.summary["replications"]]
    n_params = len(km.params_of(result))
    header = header[:n_params] + ["replications"] + header[n_params:] + ["steady state"]
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    for cells, rep, bad in zip(rows, reps, flags):
        cells = cells[:n_params] + [rep] + cells[n_params:] + ["**no** ⚠" if bad else "yes"]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return lines


def _describe_figure(rec: dict) -> str:
    from commsim.humanize import number

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
    bits.append(f"seed {rec.get('seed')}, {reps} replication(s) per point, window {_fmt(rec.get('duration'))} s"
                f" after a warm-up of {_fmt(rec.get('warmup'))} s")
    sweep = rec.get("sweep") or {}
    if sweep:
        bits.append("sweep " + "; ".join(
            f"{k} = {', '.join(number(x, 4, False) if isinstance(x, (int, float)) else str(x) for x in v)}"
            for k, v in sweep.items()))
    return "; ".join(bits)


RESULT_FILES = ("summary.csv", "runs.csv", "units.csv", "config.resolved.yaml")


def section_facts(result, folder: Path, rel: str) -> dict:
    """What both reports say about one results folder."""
    from commsim.experiment import keymetrics as km
    from commsim.experiment import narrative

    r = result.experiment.resolved
    patterns = sorted({str(p.config["pattern"]) for p in result.experiment.points})
    reps = sorted({int(x) for x in result.summary["replications"]}) if len(result.summary) else []
    return {
        "heading": rel,
        "name": result.experiment.name,
        "patterns": patterns,
        "families": km.families(result),
        "seed": r.get("seed"),
        "duration": r.get("duration"),
        "warmup": r.get("warmup"),
        "points": len(result.experiment.points),
        "replications": reps,
        "files": [f for f in RESULT_FILES if (Path(folder) / f).exists()],
        "sentences": narrative.sentences(result),
        "unstable": [(i, reason) for i, (flag, reason) in enumerate(km.unstable(result)) if flag],
    }


def _where(result, i: int) -> str:
    from commsim import humanize
    from commsim.experiment import keymetrics as km

    row = result.summary.iloc[i]
    written = humanize.written_values(result.experiment)
    return ", ".join(f"{p}={humanize.param(p, row[p], written)}" for p in km.params_of(result)) or "the point"


def experiment_section(result, folder: str, records: list[dict], results_dir: Path | None = None) -> list[str]:
    facts = section_facts(result, (results_dir / folder) if results_dir else Path(folder), folder)
    reps = "/".join(map(str, facts["replications"])) or "0"
    named = "" if facts["name"] == folder else f"Experiment `{facts['name']}`; "
    files = ", ".join(f"[`{f}`]({folder}/{f})" for f in facts["files"])
    lines = [f"## {folder}", "",
             f"{named}pattern(s) {', '.join(f'`{p}`' for p in facts['patterns'])}; seed {facts['seed']}; "
             f"window {_fmt(facts['duration'])} s after a warm-up of {_fmt(facts['warmup'])} s; "
             f"{facts['points']} sweep point(s) x {reps} replication(s). Files: {files}.", ""]
    if facts["sentences"]:
        lines += ["**Conclusion.** " + " ".join(facts["sentences"]), ""]
    lines += [f"Key metrics ({', '.join(facts['families'])}): means with 95% confidence half-widths "
              "(Student t over replications); every metric is in `summary.csv` (units in `units.csv`).", "",
              *summary_table(result), ""]
    if facts["unstable"]:
        lines += ["Not in steady state (docs/metrics.md, Stability):", ""]
        for i, reason in facts["unstable"][:12]:
            lines.append(f"- {_md(_where(result, i))}: {reason}")
        if len(facts["unstable"]) > 12:
            lines.append(f"- ... and {len(facts['unstable']) - 12} more (column `unstable_reason` of summary.csv)")
        lines.append("")
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
        return [r for r in json.loads(mf.read_text()) if (folder / r["file"]).exists()]
    context = plotspec.figure_context(result)
    records = []
    for png in sorted(folder.glob("*.png")):
        formats = ["png"] + [f for f in ("pdf", "svg") if png.with_suffix(f".{f}").exists()]
        records.append({"file": png.name, "formats": formats, "source": "the experiment's figures",
                        **context})
    return records


def collect(results_dir: Path, formats=("png", "pdf"), redraw: bool = True, warn=None) -> list[dict]:
    """Every experiment folder under ``results_dir`` as
    ``{"folder", "rel", "result", "records"}`` (figures redrawn if asked)."""
    results_dir = Path(results_dir)
    folders = sorted(p.parent for p in results_dir.glob("*/config.resolved.yaml")
                     if (p.parent / "summary.csv").exists())
    if not folders:
        raise ConfigError(str(results_dir), "holds no experiment results (no */config.resolved.yaml); "
                          "run `commsim run CONFIG` first")
    out = []
    for folder in folders:
        try:
            result = load_result(folder)
        except Exception as exc:  # a broken folder must not hide the others
            (warn or print)(f"warning: skipping {folder}: {exc}")
            continue
        records = draw_figures(result, folder, formats, warn) if redraw else existing_figures(result, folder)
        rel = folder.relative_to(results_dir) if folder.is_relative_to(results_dir) else folder
        out.append({"folder": folder, "rel": str(rel), "result": result, "records": records})
    return out


def glance(result) -> str:
    """One line per experiment for the top of the reports."""
    from commsim.experiment import keymetrics as km
    from commsim.experiment import narrative

    said = narrative.sentences(result)
    cand = [s for s in said if not s.startswith(("All ", "**", "Theory", "Latency counts"))]
    # what a mechanism adds over none says more than "none is cheapest"
    first = next((s for s in cand if s.startswith("Over `none`")), None) or next(
        (s for s in cand if not s.startswith("`none`")),
        cand[0] if cand else next((s for s in said if s.startswith("Theory")), ""))
    bad = sum(1 for f, _ in km.unstable(result) if f)
    tail = (f"**{bad} of {len(result.summary)} point(s) not in steady state.**" if bad
            else "All points in steady state.")
    return f"{first} {tail}".strip()


def write_report(results_dir: Path = Path("results"), out_file: Path | None = None,
                 formats=("png", "pdf"), redraw: bool = True, warn=None,
                 html_file: Path | None = None) -> tuple[Path, list[str]]:
    """Write ``REPORT.md`` (for GitHub) and ``report.html`` (self-contained,
    figures embedded as SVG; beside the Markdown unless ``html_file``) for
    every experiment folder under ``results_dir``."""
    from commsim.experiment import htmlreport
    from commsim.experiment.output import atomic_write

    results_dir = Path(results_dir)
    out_file = Path(out_file) if out_file else results_dir / "REPORT.md"
    entries = collect(results_dir, formats, redraw, warn)
    head = ["# commsim report", "",
            f"Generated by `commsim report` from {len(entries)} experiment folder(s) under "
            f"`{results_dir}/`, without re-simulating (also as a self-contained `report.html` beside this"
            " file). Each experiment has a generated conclusion, its pattern family's key metrics in human units"
            " with 95% confidence half-widths, the points that are not in steady state, and its figures"
            " (PNG, plus "
            f"{', '.join(f.upper() for f in formats if f != 'png') or 'PNG only'} for papers).", "",
            "Experiments: " + ", ".join(f"[{e['rel']}](#{slug(e['rel'])})" for e in entries) + ".", ""]
    lines = list(head) + ["At a glance (first conclusion of each experiment; unstable points):", ""]
    for e in entries:
        lines.append(f"- [{e['rel']}](#{slug(e['rel'])}): {glance(e['result'])}")
    lines.append("")
    for e in entries:
        lines += experiment_section(e["result"], e["rel"], e["records"], results_dir)
    atomic_write(out_file, "\n".join(lines).rstrip() + "\n")
    html_path = Path(html_file) if html_file else out_file.with_name("report.html")
    htmlreport.write(entries, results_dir, html_path, redraw=redraw, warn=warn)
    return out_file, [e["result"].experiment.name for e in entries]
