"""Sub-commands ``commsim testbed``, ``commsim calibrate`` and ``commsim
validate`` (registered by :mod:`commsim.cli`; nothing here imports aiohttp
until a sub-command runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from commsim.errors import ConfigError


def add_parsers(sub) -> None:
    t = sub.add_parser("testbed", help="run an experiment on a real server and real clients "
                       "on 127.0.0.1 (needs commsim[testbed])")
    t.add_argument("config")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--out", help="results folder (default results/<name>_testbed)")
    t.add_argument("--force", action="store_true",
                   help="replace a results folder that holds a different configuration")
    c = sub.add_parser("calibrate", help="fit header sizes and server CPU costs from testbed "
                       "results; write a YAML preset")
    c.add_argument("results", nargs="+", help="testbed results folders")
    c.add_argument("--out", default="calibration.yaml", help="preset file (default calibration.yaml)")
    c.add_argument("--force", action="store_true", help="replace an existing preset file")
    v = sub.add_parser("validate", help="testbed vs calibrated simulator on the same sweep: "
                       "table and figure")
    v.add_argument("config")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument("--preset", required=True, help="calibrated preset (commsim calibrate)")
    v.add_argument("--testbed", help="existing testbed results of CONFIG (default: run them)")
    v.add_argument("--out", help="folder for the comparison (default results/<name>_validation)")
    v.add_argument("--force", action="store_true")
    v.add_argument("--sim-only", action="store_true",
                   help="only the calibrated simulator (full scale, beyond the testbed's reach)")


def cmd_testbed(args) -> int:
    from commsim.config import load
    from commsim.experiment import output
    from commsim.testbed import require_aiohttp

    require_aiohttp()
    from commsim.testbed.run import run_testbed

    exp = load(args.config, args.overrides)
    out_dir = Path(args.out) if args.out else Path("results") / f"{exp.name}_testbed"
    output.check_target(out_dir, exp.resolved, args.force)
    say = lambda text: print(text, file=sys.stderr)  # noqa: E731
    _result, paths = run_testbed(exp, out_dir, say)
    say(f"wrote {len(paths) + 1} files to {out_dir}/")
    return 0


def cmd_calibrate(args) -> int:
    from commsim.testbed.calibrate import calibrate

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError("--out", f"{str(out)!r} exists; choose another --out or pass --force")
    text = calibrate([Path(r) for r in args.results], out)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_validate(args) -> int:
    from commsim.testbed import require_aiohttp
    from commsim.testbed.validate import simulate_only, validate

    if args.sim_only:
        print(simulate_only(args.config, args.overrides, Path(args.preset),
                            Path(args.out) if args.out else None,
                            say=lambda text: print(text, file=sys.stderr)), end="")
        return 0
    if not args.testbed:
        require_aiohttp()
    table = validate(args.config, args.overrides, Path(args.preset),
                     Path(args.testbed) if args.testbed else None,
                     Path(args.out) if args.out else None, args.force,
                     say=lambda text: print(text, file=sys.stderr))
    print(table)
    return 0


COMMANDS = {"testbed": cmd_testbed, "calibrate": cmd_calibrate, "validate": cmd_validate}
