"""One ``commsim run`` per results folder at a time.

A run holds an exclusive ``fcntl.flock`` on ``<folder>/.commsim.lock`` from
before it looks at the folder until its files are in place.  The kernel
drops the lock when the process ends, however it ends (``kill -9``
included), so a dead run never blocks the next one.  The lock file holds
the holder's pid and a digest of its resolved configuration:

* a second run of the *same* configuration waits for the first and then
  reuses its stored runs (nothing is computed twice);
* a second run of a *different* configuration is refused with a clear error
  (exit status 2, nothing written), or waits if asked to (``--wait``), and
  is then checked against what the first left (a different configuration
  still needs ``--force``).

Claiming a folder also proves it writable (the lock file and a probe file in
``.runs/`` are written), so an unwritable folder is refused before anything
is simulated.  If the command then stops with a configuration error, the
folders it created are removed again (:meth:`FolderLock.abandon`).

Locks are advisory and local: two machines writing into one NFS folder are
not protected (flock over NFS depends on the mount).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from commsim.errors import ConfigError

LOCK_NAME = ".commsim.lock"

_HELD: list["FolderLock"] = []


def config_digest(resolved: dict) -> str:
    """Digest of a resolved configuration (as written to config.resolved.yaml)."""
    from commsim.config import dump_yaml

    return hashlib.sha256(dump_yaml(resolved).encode()).hexdigest()[:16]


class FolderLock:
    """The claim of one run on one results folder (see the module docstring)."""

    def __init__(self, out_dir: Path, digest: str):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self.digest = digest
        self.fd: int | None = None
        self._created: list[Path] = []  # folders this claim created, outermost first
        self._created_file = False

    # ------------------------------------------------------------ claim --
    def acquire(self, wait: bool = False, say=None, poll: float = 0.2) -> "FolderLock":
        """Create the folder if needed, lock it, prove it writable.

        Raises :class:`ConfigError` (nothing left behind) if the folder cannot
        be created or written, or is held by a run of another configuration
        and ``wait`` is false.
        """
        say = say or (lambda text: None)
        self._make_dirs()
        told = False
        while True:
            self._open()
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder()
                same = holder.get("digest") == self.digest
                if not (wait or same):
                    self._close()
                    self.abandon()
                    who = f"pid {holder['pid']}" if holder.get("pid") else "another process"
                    raise ConfigError("--out", f"{str(self.out_dir)!r} is in use by another commsim run "
                                      f"({who}) of a different configuration; wait for it to finish, "
                                      "choose another --out, or pass --wait to wait for it") from None
                if not told:
                    why = ("of the same configuration: its runs will be reused" if same
                           else "(--wait)")
                    say(f"waiting for the commsim run (pid {holder.get('pid', '?')}) that holds "
                        f"{self.out_dir}/ {why}")
                    told = True
                self._close()
                time.sleep(poll)
                continue
            # A holder that gave up may have deleted the file we opened: lock
            # the file that is there now.
            try:
                same_file = os.fstat(self.fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            self._close()
        self._write_holder()
        self._probe()
        _HELD.append(self)
        return self

    def _make_dirs(self) -> None:
        missing = []
        p = self.out_dir
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            for d in reversed(missing):
                d.mkdir()
                self._created.append(d)
        except OSError as exc:
            self.abandon()
            raise ConfigError("--out", f"cannot create {str(self.out_dir)!r}: {exc.strerror}") from None

    def _open(self) -> None:
        existed = self.path.exists()
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self.abandon()
            raise ConfigError("--out", f"cannot write into {str(self.out_dir)!r}: {exc.strerror}") from None
        self._created_file = self._created_file or not existed

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _holder(self) -> dict:
        try:
            with open(self.path) as fh:
                data = json.loads(fh.read() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_holder(self) -> None:
        text = json.dumps({"pid": os.getpid(), "digest": self.digest, "since": time.time()})
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, text.encode(), 0)
        except OSError as exc:
            self.abandon()
            raise ConfigError("--out", f"cannot write into {str(self.out_dir)!r}: {exc.strerror}") from None

    def _probe(self) -> None:
        """The run store must be writable too: write (and remove) a probe file."""
        from commsim.experiment.store import STORE_DIR

        runs = self.out_dir / STORE_DIR
        try:
            if not runs.exists():
                runs.mkdir()
                self._created.append(runs)
            fd, tmp = tempfile.mkstemp(dir=runs, prefix=".probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            self.abandon()
            raise ConfigError("--out", f"cannot write into {str(runs)!r}: {exc.strerror}") from None

    # ---------------------------------------------------------- release --
    def release(self) -> None:
        """Drop the lock (the lock file stays: deleting it would race)."""
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                self._close()
        if self in _HELD:
            _HELD.remove(self)

    def abandon(self) -> None:
        """Release, and remove what this claim created (the lock file, an
        empty ``.runs/``, the folders it made), for a command that stops
        before writing anything."""
        holding = self.fd is not None
        if self._created_file and holding:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.release()
        for d in reversed(self._created):
            try:
                d.rmdir()
            except OSError:
                break
        self._created.clear()
        self._created_file = False


def claim(out_dir: Path, resolved: dict, wait: bool = False, say=None) -> FolderLock:
    """Create, lock and prove writable the results folder of a run."""
    return FolderLock(out_dir, config_digest(resolved)).acquire(wait=wait, say=say)


def release_all() -> None:
    """Release every lock this process holds (the CLI calls it on exit)."""
    for held in list(_HELD):
        held.release()
