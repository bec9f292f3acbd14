"""``results/report.html``: one self-contained page for a browser.

The same content as REPORT.md (:mod:`.report`): per experiment folder its
generated conclusion, its family's key metrics in human units with 95 %
half-widths (unstable rows highlighted and explained) and its figures.
Figures are embedded as SVG data URIs, drawn afresh into a temporary copy
of the folder (so results/ gains no SVG files), with text kept as text
(``svg.fonttype: none``) to stay small.  With ``--no-redraw`` an SVG already
beside the PNG is used, else the PNG is embedded.  No script, no external
resource: the page loads from a file, offline.  Links point to each folder's
result files, relative to the page.
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import tempfile
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1400px;margin:2em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2em} h2{margin-top:2.2em;border-bottom:2px solid #ddd;padding-bottom:.2em}
nav{background:#f6f8fa;padding:.6em 1em;border-radius:6px} nav a{margin-right:1em;white-space:nowrap}
p.meta{color:#555;font-size:.92em} p.conclusion{background:#eef6ee;border-left:4px solid #4a4;padding:.5em .8em}
.tablewrap{overflow-x:auto;max-height:36em;overflow-y:auto} table{border-collapse:collapse;font-size:.8em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0} td.param{text-align:left}
tr.unstable td{background:#fff1e6} td.flag{color:#b34700;font-weight:bold;text-align:center}
ul.unstable{color:#7a3000;font-size:.9em}
figure{margin:1.2em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555} code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
"""


def _inline(text: str) -> str:
    """Escape, then render the Markdown bits the narrative uses (`code`, **bold**)."""
    t = html.escape(str(text))
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)


def _uri(path: Path) -> str:
    mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _figures(entry, redraw: bool, warn) -> list[tuple[dict, str]]:
    """(figure record, data URI) of one folder's figures."""
    folder = Path(entry["folder"])
    if not redraw:
        out = []
        for rec in entry["records"]:
            png = folder / rec["file"]
            svg = png.with_suffix(".svg")
            src = svg if svg.exists() else png
            if src.exists():
                out.append((rec, _uri(src)))
        return out
    import matplotlib

    from commsim.experiment.report import draw_figures, load_result

    with tempfile.TemporaryDirectory(prefix="commsim-report-") as tmp:
        tmp = Path(tmp)
        for f in folder.iterdir():
            if f.is_file() and f.suffix not in (".png", ".pdf", ".svg"):
                shutil.copy2(f, tmp / f.name)
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "commsim"}):
            records = draw_figures(load_result(tmp), tmp, ("png", "svg"), warn)
        out = []
        for rec in records:
            svg = (tmp / rec["file"]).with_suffix(".svg")
            src = svg if svg.exists() else tmp / rec["file"]
            if src.exists():
                out.append((rec, _uri(src)))
        return out


def _table(result) -> str:
    from commsim.experiment import keymetrics as km

    header, rows, flags = km.table(result)
    n = len(km.params_of(result))
    reps = [str(int(r)) for r in result.summary["replications"]]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header[:n]) + "<th>replications</th>"
    head += "".join(f"<th>{html.escape(h)}</th>" for h in header[n:]) + "<th>steady state</th>"
    body = []
    for cells, rep, bad in zip(rows, reps, flags):
        tds = "".join(f'<td class="param">{html.escape(c)}</td>' for c in cells[:n]) + f"<td>{rep}</td>"
        tds += "".join(f"<td>{html.escape(c)}</td>" for c in cells[n:])
        tds += '<td class="flag">no ⚠</td>' if bad else "<td>yes</td>"
        body.append(f'<tr class="unstable">{tds}</tr>' if bad else f"<tr>{tds}</tr>")
    return (f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def render(entries, results_dir: Path, html_path: Path, redraw: bool = True, warn=None) -> str:
    from commsim.experiment.report import _describe_figure, _fmt, _where, glance, section_facts, slug

    base = Path(html_path).resolve().parent
    parts = []
    nav = []
    glances = []
    for e in entries:
        result, rel = e["result"], e["rel"]
        facts = section_facts(result, e["folder"], rel)
        anchor = slug(rel)
        nav.append(f'<a href="#{anchor}">{html.escape(rel)}</a> ')
        glances.append(f'<li><a href="#{anchor}">{html.escape(rel)}</a>: {_inline(glance(result))}</li>')
        reps = "/".join(map(str, facts["replications"])) or "0"
        named = "" if facts["name"] == rel else f"Experiment <code>{html.escape(facts['name'])}</code>; "
        links = ", ".join(
            f'<a href="{html.escape(Path(os.path.relpath(Path(e["folder"]).resolve() / f, base)).as_posix())}">{f}</a>'
            for f in facts["files"])
        sec = [f'<section id="{anchor}">', f"<h2>{html.escape(rel)}</h2>",
               f'<p class="meta">{named}pattern(s) '
               f"{', '.join(f'<code>{html.escape(p)}</code>' for p in facts['patterns'])}; seed {facts['seed']}; "
               f"window {_fmt(facts['duration'])} s after a warm-up of {_fmt(facts['warmup'])} s; "
               f"{facts['points']} sweep point(s) x {reps} replication(s). Files: {links}.</p>"]
        if facts["sentences"]:
            sec.append('<p class="conclusion"><strong>Conclusion.</strong> '
                       + " ".join(_inline(s) for s in facts["sentences"]) + "</p>")
        sec.append(f"<p>Key metrics ({html.escape(', '.join(facts['families']))}): means with 95% confidence "
                   "half-widths (Student t over replications).</p>")
        sec.append(_table(result))
        if facts["unstable"]:
            items = "".join(f"<li>{html.escape(_where(result, i))}: {html.escape(r)}</li>"
                            for i, r in facts["unstable"][:12])
            more = (f"<li>... and {len(facts['unstable']) - 12} more (column unstable_reason of "
                    "summary.csv)</li>") if len(facts["unstable"]) > 12 else ""
            sec.append(f'<p>Not in steady state:</p><ul class="unstable">{items}{more}</ul>')
        for rec, uri in _figures(e, redraw, warn):
            stem = Path(rec["file"]).stem
            sec.append(f'<figure><img src="{uri}" alt="{html.escape(stem)}">'
                       f"<figcaption><strong>{html.escape(stem)}</strong>: "
                       f"{html.escape(_describe_figure(rec))}.</figcaption></figure>")
        sec.append("</section>")
        parts.append("\n".join(sec))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>commsim report</title><style>{CSS}</style></head><body>\n"
            "<h1>commsim report</h1>"
            f"<p>Generated by <code>commsim report</code> from {len(entries)} experiment folder(s) under "
            f"<code>{html.escape(str(results_dir))}/</code>, without re-simulating. Units: time in ms/µs/s, "
            "sizes in KiB/MiB, the <code>bandwidth</code> metric as a bit rate (Mbit/s), fractions in %, CPU in "
            "cores; the files keep base units (see each folder's units.csv).</p>"
            f"<nav>{''.join(nav)}</nav>\n<h2>At a glance</h2><ul class=\"glance\">{''.join(glances)}</ul>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write(entries, results_dir: Path, html_path: Path, redraw: bool = True, warn=None) -> Path:
    from commsim.experiment.output import atomic_write

    atomic_write(Path(html_path), render(entries, results_dir, html_path, redraw, warn))
    return Path(html_path)
