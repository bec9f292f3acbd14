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
from pathlib import Path

from commsim.config import dump_yaml
from commsim.errors import ConfigError

OWNED = ("runs.csv", "summary.csv", "config.resolved.yaml")


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


def check_target(out_dir: Path, resolved: dict, force: bool = False) -> None:
    """Refuse to overwrite results of a different configuration."""
    cfg_file = Path(out_dir) / "config.resolved.yaml"
    if force or not cfg_file.exists():
        return
    if cfg_file.read_text() != dump_yaml(resolved):
        raise ConfigError("--out", f"{str(out_dir)!r} holds results of a different configuration; "
                          "choose another --out, or pass --force to replace them")


def write_tables(result, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / "runs.csv", out_dir / "summary.csv", out_dir / "config.resolved.yaml"]
    atomic_write(paths[0], result.runs.to_csv(index=False))
    atomic_write(paths[1], result.summary.to_csv(index=False))
    atomic_write(paths[2], dump_yaml(result.experiment.resolved))
    return paths


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure atomically (PNG) and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)
