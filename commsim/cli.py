"""The ``commsim`` command line.

``commsim run CONFIG [--set KEY=VALUE ...] [--out DIR] [--force]``
    run an experiment; write runs.csv, summary.csv, config.resolved.yaml and
    figures into DIR (default ``results/<name>/``).
``commsim trace CONFIG [--limit N] [--out DIR]``
    print a ``curl -v``-style trace of the first N messages and draw them as a
    sequence diagram.

A configuration error prints one line naming the key and exits with status 2
before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from commsim.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="commsim", description="Simulate backend communication patterns.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an experiment")
    r.add_argument("config")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable); sweep.KEY=[..] sets a sweep")
    r.add_argument("--out", help="results folder (default results/<name>)")
    r.add_argument("--force", action="store_true",
                   help="replace a results folder that holds a different configuration")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    t = sub.add_parser("trace", help="trace the first messages of a run")
    t.add_argument("config")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--limit", type=int, default=20, help="messages to show (default 20)")
    t.add_argument("--out", help="folder for the sequence diagram (default results/<name>)")
    t.add_argument("--force", action="store_true")
    return p


def _progress(quiet: bool):
    if quiet:
        return None

    def report(done: int, total: int) -> None:
        print(f"  run {done}/{total}", file=sys.stderr, flush=True)

    return report


def cmd_run(args) -> int:
    from commsim.config import load
    from commsim.experiment import output
    from commsim.experiment.runner import run_experiment
    from commsim.patterns import registry

    exp = load(args.config, args.overrides)
    out_dir = Path(args.out) if args.out else Path("results") / exp.name
    output.check_target(out_dir, exp.resolved, args.force)
    total = len(exp.points) * exp.replications
    if not args.quiet:
        print(f"{exp.name}: {len(exp.points)} sweep point(s) x {exp.replications} replication(s)",
              file=sys.stderr)
    result = run_experiment(exp, _progress(args.quiet))
    paths = output.write_tables(result, out_dir)
    patterns = {p.config["pattern"] for p in exp.points}
    for name in sorted(patterns):
        fig_fn = registry()[name].figures
        if fig_fn is not None:
            paths += fig_fn(result, out_dir)
    if not args.quiet:
        print(f"wrote {len(paths)} files to {out_dir}/ ({total} runs)", file=sys.stderr)
    return 0


def cmd_trace(args) -> int:
    from commsim.config import load
    from commsim.experiment import trace

    exp = load(args.config, args.overrides)
    if args.limit < 1:
        raise ConfigError("--limit", f"got {args.limit}; expected a positive integer")
    out_dir = Path(args.out) if args.out else Path("results") / exp.name
    text, fig_path = trace.trace(exp.points[0].config, args.limit, out_dir)
    print(text)
    print(f"sequence diagram: {fig_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        return cmd_trace(args)
    except ConfigError as exc:
        print(f"commsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("commsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
