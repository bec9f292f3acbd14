"""Result files of an experiment, written atomically.

A results folder holds ``runs.csv``, ``summary.csv``, ``config.resolved.yaml``
and the figures.  Every file is written to a temporary name and renamed into
place, so a crash never leaves a half-written file.  A folder whose
``config.resolved.yaml`` differs from the experiment being written is never
overwritten unless the caller passes ``force=True`` (``--force``); the folder
of the same config is refreshed, since the same config and seed give the
same results.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from commsim.config import dump_yaml
from commsim.errors import ConfigError

OWNED = ("runs.csv", "summary.csv", "config.resolved.yaml", "units.csv")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: Keys whose change does not make a results folder "another configuration":
#: figures are redrawn from the same runs.
PRESENTATION_KEYS = ("plots",)


def _differences(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs.

    A key inside a section that the old config lacks altogether is not a
    difference: resolved configs hold every key, so it was added to the schema
    by a newer commsim (with a default that keeps the old behaviour), not
    edited by the user.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old and prefix and prefix != "sweep":
                continue
            if k not in old or k not in new:
                out.append(key)
            else:
                out += _differences(old[k], new[k], key)
        return out
    return [] if old == new else [prefix or "(top level)"]


def config_differences(out_dir: Path, resolved: dict, ignore: tuple = ()) -> list[str] | None:
    """None if ``out_dir`` holds no results; else the keys whose values differ
    (an empty list: same configuration)."""
    import yaml

    cfg_file = Path(out_dir) / "config.resolved.yaml"
    if not cfg_file.exists():
        return None
    try:
        old = yaml.safe_load(cfg_file.read_text()) or {}
    except yaml.YAMLError:
        return ["(unreadable config.resolved.yaml)"]
    # Compare as written (YAML round trip), so equal configs compare equal.
    new = yaml.safe_load(dump_yaml(resolved))
    skip = set(PRESENTATION_KEYS) | set(ignore)
    old = {k: v for k, v in old.items() if k not in skip}
    new = {k: v for k, v in new.items() if k not in skip}
    return _differences(old, new)


def check_target(out_dir: Path, resolved: dict, force: bool = False, ignore: tuple = ()) -> list[str]:
    """Refuse to overwrite results of a different configuration.

    Returns the differing keys (empty when the folder is new or holds the
    same configuration); raises :class:`ConfigError` (exit status 2) when
    they differ and ``force`` is not set.  ``plots`` never counts: changing
    figures does not change results.
    """
    diff = config_differences(out_dir, resolved, ignore)
    if diff is None:
        # No config.resolved.yaml: a folder commsim did not fill (only the run
        # store or a trace may be there) is someone's data; never write into it.
        foreign = sorted(p.name for p in Path(out_dir).iterdir()
                         if p.name not in (".runs", "trace.png")) if Path(out_dir).is_dir() else []
        if foreign and not force:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ConfigError("--out", f"{str(out_dir)!r} already holds files that are not commsim "
                              f"results ({shown}); choose another --out, or pass --force to write "
                              "into it")
        return ["(folder without config.resolved.yaml)"] if foreign else []
    if not diff:
        return []
    if force:
        return diff
    shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
    raise ConfigError("--out", f"{str(out_dir)!r} holds results of a different configuration "
                      f"(differs in {shown}); choose another --out, or pass --force to replace "
                      "them (runs that did not change are reused)")


def write_tables(result, out_dir: Path) -> list[Path]:
    """runs.csv, summary.csv, config.resolved.yaml (and failures.csv when
    runs failed; a stale one is removed when none did)."""
    out_dir = Path(out_dir)
    paths = [out_dir / "runs.csv", out_dir / "summary.csv", out_dir / "config.resolved.yaml"]
    runs = result.runs.drop(columns=["wall_s"], errors="ignore")
    atomic_write(paths[0], runs.to_csv(index=False))
    atomic_write(paths[1], result.summary.to_csv(index=False))
    atomic_write(paths[2], dump_yaml(result.experiment.resolved))
    from commsim.experiment import unitsfile  # units.csv: unit and meaning of every column (issue 12)

    paths.append(unitsfile.write(result, out_dir))
    failures = getattr(result, "failures", None) or []
    fail_path = out_dir / "failures.csv"
    if failures:
        import pandas as pd

        atomic_write(fail_path, pd.DataFrame(failures).to_csv(index=False))
        paths.append(fail_path)
    elif fail_path.exists():
        fail_path.unlink()
    return paths


# ------------------------------------------------------------- figures ----

_FORMATS: list[str] = ["png"]
_MANIFEST: list[dict] | None = None


@contextmanager
def figure_session(formats=("png",)):
    """Within the block, :func:`save_figure` also writes every format in
    ``formats`` (e.g. ``("png", "pdf")``) and records each figure; yields the
    list of records ``{"file", "formats", **meta}``."""
    global _FORMATS, _MANIFEST
    saved = (_FORMATS, _MANIFEST)
    _FORMATS, _MANIFEST = list(formats), []
    try:
        yield _MANIFEST
    finally:
        _FORMATS, _MANIFEST = saved


def save_figure(fig, path: Path, meta: dict | None = None) -> Path:
    """Save a matplotlib figure atomically (PNG) and close it.

    Inside :func:`figure_session` the same figure is also written in the
    session's other formats (same stem, e.g. ``.pdf`` for papers) and
    recorded with ``meta`` (what it shows: x, y, parameters, seed).
    """
    import io

    import matplotlib.pyplot as plt

    path = Path(path)
    main_fmt = path.suffix.lstrip(".") or "png"
    formats = [main_fmt] + [f for f in _FORMATS if f != main_fmt]
    for fmt in formats:
        buf = io.BytesIO()
        kwargs = {"metadata": {"CreationDate": None}} if fmt == "pdf" else {}
        if fmt == "svg":
            kwargs = {"metadata": {"Date": None}}
        fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", **kwargs)
        atomic_write(path.with_suffix(f".{fmt}"), buf.getvalue())
    plt.close(fig)
    if _MANIFEST is not None:
        _MANIFEST.append({"file": path.name, "formats": formats, **(meta or {})})
    return path
