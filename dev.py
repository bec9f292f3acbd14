#!/usr/bin/env python3
"""Set up and run commsim with nothing but Python 3.11+.

    python3 dev.py demo     # set up .venv, run the demo experiment into results/
    python3 dev.py test     # set up .venv, run the test suite
    python3 dev.py slow     # the heavier validation runs (marked slow)
    python3 dev.py bench    # engine speed vs a bare SimPy loop

The first call creates a virtual environment in .venv (Debian's system Python
refuses a global ``pip install``) and installs commsim with its test extras;
later calls reuse it, reinstalling only when pyproject.toml changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".installed"

COMMANDS = {
    "demo": [str(PY), "-m", "commsim", "run", "experiments/request_response.yaml"],
    "test": [str(PY), "-m", "pytest", "-n", "2", "-q"],
    "slow": [str(PY), "-m", "pytest", "-n", "2", "-q", "-m", "slow"],
    "bench": [str(PY), "benchmarks/bench_core.py"],
}


def setup() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"commsim needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    pyproject = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.stat().st_mtime >= pyproject.stat().st_mtime and PY.exists():
        return
    if not PY.exists():
        print("creating .venv ...", file=sys.stderr)
        try:
            venv.create(VENV, with_pip=True)
        except Exception as exc:  # e.g. Debian without python3-venv
            sys.exit(f"could not create a virtual environment ({exc}); "
                     "on Debian/Ubuntu install python3-venv first")
    print("installing commsim and its dependencies into .venv ...", file=sys.stderr)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "-e", ".[test]"], cwd=ROOT, check=True)
    STAMP.touch()


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    setup()
    return subprocess.run(COMMANDS[argv[0]] + argv[1:], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
