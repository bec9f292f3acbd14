"""The ``commsim`` command line.

``commsim run CONFIG [--set KEY=VALUE ...] [--out DIR] [--force] [--jobs N]
[--executor serial|processes|dask] [--scheduler ADDRESS] [--precision 2%]
[--max-replications N] [--precision-metric NAME] [--fresh] [--quiet]``
    run an experiment; write runs.csv, summary.csv, config.resolved.yaml and
    figures into DIR (default ``results/<name>/``).  Finished runs are kept in
    DIR/.runs/, so running the same command again (after Ctrl-C, a crash, or
    an edit) computes only the runs that are missing or changed.
``commsim plot CONFIG|RESULTS_DIR [--out DIR] [--formats png,pdf]``
    redraw an experiment's figures from its results, without simulating
    (the ``plots:`` section is read from CONFIG, so figures can be tuned).
``commsim report [--results DIR] [--out FILE] [--formats png,pdf]``
    write results/REPORT.md: every experiment's table and figures.
``commsim patterns [--markdown] [--write FILE]``
    every pattern with its parameters, defaults and units.
``commsim trace CONFIG [--limit N] [--out DIR]``
    print a ``curl -v``-style trace of the first N messages and draw them as a
    sequence diagram.

A configuration error prints one line naming the key and exits with status 2
before anything is written.  A run that fails is reported with its
parameters; the others go on, and the exit status is 1.
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
    r.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="run sweep points and replications in N processes (0: one per core; default 1)")
    r.add_argument("--executor", choices=("auto", "serial", "processes", "dask"), default="auto",
                   help="where runs execute (auto: serial for --jobs 1, else processes)")
    r.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address for --executor dask, e.g. tcp://scheduler-host:8786")
    r.add_argument("--precision", metavar="P",
                   help="add replications until each point's 95%% CI half-width is below P of the "
                        "mean (e.g. 2%%), up to --max-replications")
    r.add_argument("--max-replications", type=int, metavar="N",
                   help="cap for --precision (default 100)")
    r.add_argument("--precision-metric", action="append", metavar="NAME",
                   help="metric the precision target applies to (repeatable; default throughput "
                        "and latency_mean)")
    r.add_argument("--fresh", action="store_true",
                   help="forget stored runs of this results folder and compute everything again")

    t = sub.add_parser("trace", help="trace the first messages of a run")
    t.add_argument("config")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--limit", type=int, default=20, help="messages to show (default 20)")
    t.add_argument("--out", help="folder for the sequence diagram (default results/<name>)")
    t.add_argument("--force", action="store_true")

    pl = sub.add_parser("plot", help="redraw an experiment's figures from its results (no simulation)")
    pl.add_argument("target", help="the experiment's YAML (its plots: section is used) or a results folder")
    pl.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    pl.add_argument("--out", help="results folder (default results/<name>)")
    pl.add_argument("--formats", default="png", help="comma-separated: png, pdf, svg (default png)")

    rp = sub.add_parser("report", help="write results/REPORT.md from every experiment's results")
    rp.add_argument("--results", default="results", help="folder of experiment results (default results)")
    rp.add_argument("--out", help="report file (default RESULTS/REPORT.md)")
    rp.add_argument("--formats", default="png,pdf",
                    help="figure formats: PNG for the page plus svg or pdf for papers (default png,pdf)")
    rp.add_argument("--no-redraw", action="store_true", help="use the figures already there")

    pa = sub.add_parser("patterns", help="list every pattern with its parameters, defaults and units")
    pa.add_argument("--markdown", action="store_true", help="Markdown (as docs/patterns.md)")
    pa.add_argument("--write", metavar="FILE", help="write to FILE instead of printing")

    from commsim.testbed.cli import add_parsers  # testbed, calibrate, validate (issue 13)
    add_parsers(sub)
    return p


def _formats(text: str) -> tuple[str, ...]:
    fmts = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    bad = [f for f in fmts if f not in ("png", "pdf", "svg")]
    if bad or not fmts:
        raise ConfigError("--formats", f"got {text!r}; expected a comma-separated list of png, pdf, svg")
    return fmts if "png" in fmts else ("png", *fmts)


def _apply_precision(exp, args) -> None:
    from commsim.experiment.precision import resolve_section

    if args.precision is None and args.max_replications is None and not args.precision_metric:
        return
    section = dict(exp.resolved.get("precision") or {})
    if args.precision is not None:
        section["target"] = args.precision
    elif not section:
        flag = "--max-replications" if args.max_replications is not None else "--precision-metric"
        raise ConfigError(flag, "needs a precision target: --precision P (e.g. 2%) or a precision: section")
    if args.max_replications is not None:
        section["max_replications"] = args.max_replications
    if args.precision_metric:
        section["metrics"] = list(args.precision_metric)
    key = "--precision"
    try:
        exp.resolved["precision"] = resolve_section(section, "precision")
    except ConfigError as exc:
        flag = {"precision.target": key, "precision.max_replications": "--max-replications",
                "precision.metrics": "--precision-metric"}.get(exc.key, exc.key)
        raise ConfigError(flag, exc.message) from None


def cmd_run(args) -> int:
    from commsim.config import load
    from commsim.experiment import output
    from commsim.experiment.executors import default_jobs, make_executor
    from commsim.experiment.progress import Progress, Quiet
    from commsim.experiment.report import draw_figures, formats_in_use
    from commsim.experiment.runner import run_experiment
    from commsim.experiment.store import RunStore

    exp = load(args.config, args.overrides)
    _apply_precision(exp, args)
    if args.jobs < 0:
        raise ConfigError("--jobs", f"got {args.jobs}; expected a positive number of processes (0: one per core)")
    jobs = args.jobs or default_jobs()
    out_dir = Path(args.out) if args.out else Path("results") / exp.name
    # Before anything is written: a folder of another configuration is kept
    # unless --force (a detected warm-up is compared after detection).
    diff = output.check_target(out_dir, exp.resolved, args.force,
                               ignore=("warmup",) if exp.warmup_auto else ())
    progress = Quiet() if args.quiet else Progress()
    executor = make_executor(args.executor, jobs, args.scheduler, progress.sim_time)
    say = progress.message
    if diff:
        say(f"replacing results in {out_dir}/ of a different configuration (--force; differs in "
            f"{', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''})")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--out", f"cannot create {str(out_dir)!r}: {exc.strerror}") from None
    store = RunStore(out_dir)
    if args.fresh:
        store.clear()
    total = len(exp.points) * exp.replications
    say(f"{exp.name}: {len(exp.points)} sweep point(s) x {exp.replications} replication(s)"
        f"{' (more until the precision target)' if exp.resolved.get('precision') else ''}"
        f" on {executor.workers} {'worker' if executor.workers == 1 else 'workers'} ({executor.name})")
    try:
        result = run_experiment(exp, progress, executor=executor, store=store)
    except KeyboardInterrupt:
        progress.close()
        print(f"commsim: interrupted; {len(store)} finished run(s) are stored in {store.dir}/: "
              "run the same command again to compute only the missing ones", file=sys.stderr)
        return 130
    finally:
        executor.close()
    paths = output.write_tables(result, out_dir)
    records = draw_figures(result, out_dir, formats_in_use(out_dir), warn=say)
    total = len(result.runs) + len(result.failures)
    say(f"wrote {len(paths) + len(records)} files to {out_dir}/ ({total} runs: {result.computed} computed, "
        f"{result.reused} reused from {store.dir}/)")
    if result.precision:
        short = [p for p in result.precision["points"] if not p["target_met"]]
        say(f"precision {100 * result.precision['target']:g}%: "
            + ("met at every sweep point" if not short else
               f"not met at {len(short)} point(s) after {result.precision['max_replications']} "
               "replications (the cap)"))
    if result.failures:
        say(f"{len(result.failures)} run(s) failed (details in {out_dir}/failures.csv):")
        names = list(exp.sweep)
        for f in result.failures:
            params = ", ".join(f"{k}={f[k]}" for k in names)
            say(f"  {params + ', ' if params else ''}replication={f['replication']}, seed={f['seed']}: "
                f"{f['error']}")
        return 1
    return 0


def cmd_plot(args) -> int:
    import yaml

    from commsim.config import load
    from commsim.experiment import output
    from commsim.experiment.report import draw_figures, load_result

    formats = _formats(args.formats)
    target = Path(args.target)
    if target.is_dir():
        out_dir = Path(args.out) if args.out else target
        result = load_result(out_dir)
    else:
        exp = load(target, args.overrides)
        out_dir = Path(args.out) if args.out else Path("results") / exp.name
        diff = output.config_differences(out_dir, exp.resolved,
                                         ignore=("warmup",) if exp.warmup_auto else ())
        if diff is None:
            raise ConfigError("--out", f"{str(out_dir)!r} holds no results of {exp.name!r}; "
                              f"run `commsim run {args.target}` first")
        if diff:
            raise ConfigError("--out", f"{str(out_dir)!r} holds results of a different configuration "
                              f"(differs in {', '.join(diff[:5])}); run `commsim run {args.target}` first")
        plots = exp.resolved.get("plots")
        result = load_result(out_dir, plots=plots)
        # Keep config.resolved.yaml in step with the figures it now describes.
        cfg_file = out_dir / "config.resolved.yaml"
        old = yaml.safe_load(cfg_file.read_text()) or {}
        if old.get("plots") != plots:
            if plots is None:
                old.pop("plots", None)
            else:
                old["plots"] = plots
            output.atomic_write(cfg_file, output.dump_yaml(old))
    records = draw_figures(result, out_dir, formats)
    for rec in records:
        print(out_dir / rec["file"])
    print(f"{len(records)} figure(s) in {out_dir}/ ({', '.join(formats)}), no simulation", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from commsim.experiment.report import write_report

    formats = _formats(args.formats)
    path, names = write_report(Path(args.results), Path(args.out) if args.out else None, formats,
                               redraw=not args.no_redraw,
                               warn=lambda text: print(text, file=sys.stderr))
    print(f"wrote {path} ({len(names)} experiment(s): {', '.join(names)})", file=sys.stderr)
    return 0


def cmd_patterns(args) -> int:
    from commsim.experiment import reference
    from commsim.experiment.output import atomic_write

    text = reference.markdown() if args.markdown else reference.text()
    if args.write:
        atomic_write(Path(args.write), text)
        print(f"wrote {args.write}", file=sys.stderr)
    else:
        sys.stdout.write(text)
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


COMMANDS = {"run": cmd_run, "trace": cmd_trace, "plot": cmd_plot, "report": cmd_report,
            "patterns": cmd_patterns}
from commsim.testbed.cli import COMMANDS as _TESTBED_COMMANDS  # noqa: E402  (issue 13)
COMMANDS.update(_TESTBED_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"commsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("commsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
