"""Result files of an experiment, written atomically.

A results folder holds ``runs.csv``, ``summary.csv``, ``config.resolved.yaml``
and the figures.  Every file is written to a temporary name and renamed into
place, so a crash never leaves a half-written file.  A folder whose
``config.resolved.yaml`` differs from the experiment being written is never
overwritten unless the caller passes ``force=True`` (``--force``); the folder
of the same config is refreshed, since the same config and seed give the
same results.

Safety (issue 11)
-----------------
* :func:`resolve_out` turns ``--out`` into the real folder (``..`` and
  symlinks resolved) before anything looks at it.
* A folder that is neither new, empty, nor a commsim results folder is
  never written into, not even with ``--force``; a damaged one
  (``config.resolved.yaml`` unreadable or not a mapping, ``.runs`` not a
  directory) is a clear error.
* A run's files are written into ``<folder>/.commsim-staging/`` first and
  moved into place only when every one was written (:func:`publish`): a full
  disk or an unwritable folder leaves the previous results untouched, and
  the folder never holds tables of one configuration beside figures of
  another.  A crash while moving is finished by the next run
  (:func:`recover`).  A failed write raises :class:`WriteError`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from commsim.config import dump_yaml
from commsim.errors import ConfigError

OWNED = ("runs.csv", "summary.csv", "config.resolved.yaml", "units.csv")
#: Files of a run's results besides OWNED and the figures.
EXTRA = ("failures.csv", "figures.json", "runs.parquet", "summary.parquet", "records-units.csv")
#: Where a run's files are written before they are moved into place.
STAGING = ".commsim-staging"
#: Inside STAGING: written once every file is there; lists what to remove.
_PUBLISHING = ".publishing"
#: Names commsim puts into a folder besides results (never "foreign").
COMMSIM_NAMES = (".runs", "trace.png", ".commsim.lock", STAGING)


class WriteError(RuntimeError):
    """A result file could not be written (full disk, read-only folder...):
    the command ends with exit status 1 and this message."""


def resolve_out(path) -> Path:
    """The folder ``path`` really names (``..`` and symlinks resolved),
    relative to the working directory when inside it (for messages)."""
    real = Path(os.path.realpath(os.fspath(path)))
    try:
        return real.relative_to(Path.cwd().resolve()) if real != Path.cwd().resolve() else Path(".")
    except ValueError:
        return real


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
    edited by the user.  Likewise a whole section the old config lacks whose
    every key holds its default (e.g. ``topology``, added for composition).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old and prefix and prefix != "sweep":
                continue
            if k not in old and not prefix and _default_section(k, new[k]):
                continue
            if k not in old or k not in new:
                out.append(key)
            else:
                out += _differences(old[k], new[k], key)
        return out
    return [] if old == new else [prefix or "(top level)"]


def _default_section(name, values) -> bool:
    """True when ``values`` (as written in a resolved config) are exactly the
    defaults of the registered section ``name``."""
    import yaml

    from commsim.config.load import resolve_section
    from commsim.config.schema import SECTIONS

    section = SECTIONS.get(name) if isinstance(name, str) else None
    if section is None or not isinstance(values, dict):
        return False
    try:
        defaults = yaml.safe_load(dump_yaml({name: resolve_section(section, {}, name, None)}))[name]
    except Exception:  # noqa: BLE001 - a section whose defaults cannot resolve alone
        return False
    return defaults == values


def config_differences(out_dir: Path, resolved: dict, ignore: tuple = ()) -> list[str] | None:
    """None if ``out_dir`` holds no results; else the keys whose values differ
    (an empty list: same configuration)."""
    import yaml

    cfg_file = Path(out_dir) / "config.resolved.yaml"
    if not cfg_file.exists() and not cfg_file.is_symlink():
        return None
    old = read_resolved(cfg_file)
    # Compare as written (YAML round trip), so equal configs compare equal.
    new = yaml.safe_load(dump_yaml(resolved))
    skip = set(PRESENTATION_KEYS) | set(ignore)
    old = {k: v for k, v in old.items() if k not in skip}
    new = {k: v for k, v in new.items() if k not in skip}
    return _differences(old, new)


def read_resolved(cfg_file: Path) -> dict:
    """A results folder's config.resolved.yaml as a mapping; a damaged one
    (unreadable, not YAML text, not a mapping) is a :class:`ConfigError`."""
    import yaml

    def damaged(why: str):
        return ConfigError("--out", f"{str(cfg_file)!r} is damaged ({why}), so the folder's results "
                           "cannot be trusted; move the folder away, or pass --force to replace "
                           "its results")

    try:
        text = cfg_file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    except OSError as exc:
        raise damaged(f"unreadable: {exc.strerror}") from None
    try:
        old = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        raise damaged("not valid YAML") from None
    if not isinstance(old, dict):
        raise damaged(f"a YAML {type(old).__name__}, not a mapping")
    return old


def check_foreign(out_dir: Path, allow: tuple = ()) -> None:
    """Raise :class:`ConfigError` if ``out_dir`` holds files commsim did not
    write (a folder with ``config.resolved.yaml`` in it is commsim's)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("--out", f"{str(out_dir)!r} is a file, not a folder; choose another --out")
    if not out_dir.is_dir() or (out_dir / "config.resolved.yaml").is_file():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in (*COMMSIM_NAMES, *allow))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise ConfigError("--out", f"{str(out_dir)!r} already holds files that are not commsim "
                          f"results ({shown}); commsim writes only into a new or empty folder "
                          "or one of its own results folders: choose another --out")


def check_target(out_dir: Path, resolved: dict, force: bool = False, ignore: tuple = (),
                 locked: bool = False) -> list[str]:
    """Refuse to overwrite results of a different configuration.

    ``locked``: the caller holds the folder's lock (:mod:`.lock`), so an
    interrupted publish may be finished first; without it nothing is
    written, and a folder in the middle of a publish is left for the check
    under the lock.

    Returns the differing keys (empty when the folder is new or holds the
    same configuration); raises :class:`ConfigError` (exit status 2) when
    they differ and ``force`` is not set.  ``plots`` never counts: changing
    figures does not change results.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("--out", f"{str(out_dir)!r} is a file, not a folder; choose another --out")
    if locked:
        recover(out_dir)
    elif (out_dir / STAGING / _PUBLISHING).is_file():
        return []
    from commsim.experiment.store import RunStore

    RunStore(out_dir).check()
    try:
        diff = config_differences(out_dir, resolved, ignore)
    except ConfigError:
        if not force:
            raise
        diff = ["(damaged config.resolved.yaml)"]
    if diff is None:
        # No config.resolved.yaml: a folder commsim did not fill (only the run
        # store or a trace may be there) is someone's data; never write into
        # it, not even with --force.
        check_foreign(out_dir)
        return []
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
    from commsim.experiment.tables import for_writing  # integers as integers (issue 12)

    params = list(result.experiment.sweep)
    runs = for_writing(result.runs.drop(columns=["wall_s"], errors="ignore"), params)
    atomic_write(paths[0], runs.to_csv(index=False))
    atomic_write(paths[1], for_writing(result.summary, params).to_csv(index=False))
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


# ------------------------------------------------------ staged writes ----

def _old_results(out_dir: Path) -> list[str]:
    """Names of the result files a folder holds now (tables and the figures
    its figures.json lists)."""
    names = [n for n in (*OWNED, *EXTRA) if (out_dir / n).is_file()]
    names += [p.name for p in out_dir.glob("records-p*-r*.parquet")]  # --records (.records)
    try:
        manifest = json.loads((out_dir / "figures.json").read_text())
        for rec in manifest if isinstance(manifest, list) else []:
            stem = Path(str(rec.get("file", ""))).stem
            for fmt in rec.get("formats", []) if isinstance(rec, dict) else []:
                name = f"{stem}.{fmt}"
                if stem and "/" not in name and (out_dir / name).is_file():
                    names.append(name)
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return sorted(set(names))


def staging(out_dir: Path) -> Path:
    """A fresh, empty staging folder inside ``out_dir``."""
    stage = Path(out_dir) / STAGING
    try:
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
    except OSError as exc:
        raise WriteError(f"cannot write into {str(out_dir)!r}: {exc.strerror}") from None
    return stage


def discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, out_dir: Path) -> None:
    """Move every file of ``stage`` into ``out_dir``, replacing the folder's
    previous results (tables and figures no longer produced are removed), and
    ``config.resolved.yaml`` last.  Renames need no space, so once the marker
    is written this finishes; :func:`recover` finishes it after a crash."""
    out_dir = Path(out_dir)
    new = sorted(p.name for p in stage.iterdir() if p.is_file() and p.name != _PUBLISHING)
    remove = [n for n in _old_results(out_dir) if n not in new]
    try:
        atomic_write(stage / _PUBLISHING, json.dumps({"remove": remove}))
    except OSError as exc:
        discard(stage)
        raise WriteError(f"cannot write into {str(out_dir)!r}: {exc.strerror}") from None
    _finish(stage, out_dir)


def _finish(stage: Path, out_dir: Path) -> None:
    try:
        plan = json.loads((stage / _PUBLISHING).read_text())
        remove = [str(n) for n in plan.get("remove", []) if "/" not in str(n)]
        cfg = out_dir / "config.resolved.yaml"
        if (stage / cfg.name).exists() and cfg.exists():
            os.unlink(cfg)  # the folder is never claimed by the old config with new files
        for name in remove:
            if (out_dir / name).is_file():
                os.unlink(out_dir / name)
        names = sorted(p.name for p in stage.iterdir() if p.is_file() and p.name != _PUBLISHING)
        for name in sorted(names, key=lambda n: n == cfg.name):
            os.replace(stage / name, out_dir / name)
        os.unlink(stage / _PUBLISHING)
        shutil.rmtree(stage)
    except OSError as exc:
        raise WriteError(f"cannot move results into {str(out_dir)!r}: {exc.strerror}") from None


def recover(out_dir: Path) -> None:
    """Finish a :func:`publish` a crash interrupted, or drop a staging folder
    that never got complete (the previous results are then untouched)."""
    stage = Path(out_dir) / STAGING
    if not stage.is_dir():
        return
    if (stage / _PUBLISHING).is_file():
        _finish(stage, Path(out_dir))
    else:
        discard(stage)


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
    import sys

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
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:  # a figure made with pyplot: release it (bare Figures need no pyplot, issue 14)
        plt.close(fig)
    if _MANIFEST is not None:
        _MANIFEST.append({"file": path.name, "formats": formats, **(meta or {})})
    return path
