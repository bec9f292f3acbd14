"""Each pattern family's standard figures, drawn from a finished experiment's
``summary``/``runs`` (and side tables) without re-simulating.  Shared plotting
helpers live in :mod:`commsim.experiment.plots`.

Figures are bare :class:`matplotlib.figure.Figure` objects: nothing here
imports pyplot's state machine or switches the backend, so drawing from a
notebook leaves its inline backend alone.

:func:`plot` is what :meth:`commsim.Result.plot` calls: every figure of a
result, written to a folder, returned as a :class:`Figures` list that a
notebook shows inline.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path


class Figures(list):
    """The paths of the figures drawn (a list of :class:`~pathlib.Path`);
    shown inline by Jupyter/IPython (PNG images with their names)."""

    def _repr_html_(self) -> str:
        parts = []
        for p in self:
            p = Path(p)
            if p.suffix != ".png" or not p.exists():
                continue
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            parts.append(f'<figure style="margin:0 0 1em 0"><img src="data:image/png;base64,{data}" '
                         f'style="max-width:100%"/><figcaption><code>{p.name}</code></figcaption></figure>')
        return "\n".join(parts) or "<p>(no figures)</p>"


def plot(result, out_dir=None, formats=("png",)) -> Figures:
    """Draw every figure of ``result`` (the pattern figures and its ``plots:``
    section) from its tables, without simulating, into ``out_dir`` (default:
    a new temporary folder, so nothing a user has is overwritten); returns
    their paths (PNG), shown inline in a notebook."""
    from commsim.experiment.report import draw_figures

    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="commsim-figures-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    records = draw_figures(result, out_dir, tuple(formats))
    return Figures(out_dir / rec["file"] for rec in records)
