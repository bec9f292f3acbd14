"""The ``commsim`` command line.

``commsim run CONFIG [--set KEY=VALUE ...] [--out DIR] [--force] [--jobs N]
[--executor serial|processes|dask] [--scheduler ADDRESS] [--precision 2%]
[--max-replications N] [--precision-metric NAME] [--fresh] [--quiet] [--allow-large]``
    run an experiment; write runs.csv, summary.csv, config.resolved.yaml and
    figures into DIR (default ``results/<name>/``).  Finished runs are kept in
    DIR/.runs/, so running the same command again (after Ctrl-C, a crash, or
    an edit) computes only the runs that are missing or changed.
``commsim plot CONFIG|RESULTS_DIR [--out DIR] [--formats png,pdf]``
    redraw an experiment's figures from its results, without simulating
    (the ``plots:`` section is read from CONFIG, so figures can be tuned).
``commsim report [--results DIR] [--out FILE] [--formats png,pdf]``
    write results/REPORT.md and the self-contained results/report.html: every
    experiment's key metrics, stability flags, narrative and figures.
``commsim patterns [--markdown] [--write FILE]``
    every pattern with its parameters, defaults and units.
``commsim summary RESULTS_DIR [--all]``
    print a finished experiment's key metrics per sweep point (as after a run).
``commsim metrics [--markdown] [--write FILE]``
    every metric with its unit, meaning and the patterns that report it.
``commsim trace CONFIG [--limit N] [--client N] [--connection K] [--out DIR]``
    print a ``curl -v``-style trace of the first N messages (of one client or
    one connection) and draw them as a sequence diagram.

A configuration error prints one line naming the key and exits with status 2
before anything is written.  A run that fails is reported with its
parameters; the others go on, and the exit status is 1 (also when a file or
figure could not be written, or the runs were aborted: out of memory, a lost
worker or Dask scheduler).  Warnings and errors reach stderr even with
``--quiet``.
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
    r.add_argument("--wait", action="store_true",
                   help="if another commsim run is writing into the results folder, wait for it "
                        "(a run of the same configuration is always waited for)")
    r.add_argument("--allow-large", action="store_true",
                   help="run even beyond the work limits (docs/experiments.md, 'Work estimate')")
    r.add_argument("--records", action="store_true",
                   help="also write per-operation records of every run as Parquet "
                        "(records-p<point>-r<rep>.parquet; docs/experiments.md, 'Per-operation "
                        "records')")
    r.add_argument("--parquet", action="store_true",
                   help="also write runs.parquet and summary.parquet")

    t = sub.add_parser("trace", help="trace the first messages of a run")
    t.add_argument("config")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--limit", type=int, default=20, help="messages to show (default 20)")
    t.add_argument("--client", type=int, metavar="N", help="only messages to or from client N")
    t.add_argument("--connection", type=int, metavar="K", help="only messages of connection #K")
    t.add_argument("--out", help="folder for the sequence diagram (default results/<name>)")
    t.add_argument("--force", action="store_true")
    t.add_argument("--allow-large", action="store_true", help="trace even beyond the work limits")

    pl = sub.add_parser("plot", help="redraw an experiment's figures from its results (no simulation)")
    pl.add_argument("target", help="the experiment's YAML (its plots: section is used) or a results folder")
    pl.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    pl.add_argument("--out", help="results folder (default results/<name>)")
    pl.add_argument("--formats", default="png", help="comma-separated: png, pdf, svg (default png)")

    rp = sub.add_parser("report", help="write results/REPORT.md and results/report.html from every experiment's results")
    rp.add_argument("--results", default="results", help="folder of experiment results (default results)")
    rp.add_argument("--out", help="report file (default RESULTS/REPORT.md)")
    rp.add_argument("--formats", default="png,pdf",
                    help="figure formats: PNG for the page plus svg or pdf for papers (default png,pdf)")
    rp.add_argument("--no-redraw", action="store_true", help="use the figures already there")

    pa = sub.add_parser("patterns", help="list every pattern with its parameters, defaults and units")
    pa.add_argument("--markdown", action="store_true", help="Markdown (as docs/patterns.md)")
    pa.add_argument("--write", metavar="FILE", help="write to FILE instead of printing")

    su = sub.add_parser("summary", help="print a finished experiment's key metrics (as after a run)")
    su.add_argument("results", help="a results folder (holding summary.csv and config.resolved.yaml)")
    su.add_argument("--all", action="store_true", help="every sweep point, however many")

    me = sub.add_parser("metrics", help="list every metric with its unit, meaning and patterns")
    me.add_argument("--markdown", action="store_true", help="Markdown (as docs/metrics.md)")
    me.add_argument("--write", metavar="FILE", help="write to FILE instead of printing")

    from commsim.experiment import capacity, compare  # issue 12: each sub-command in its module
    compare.add_parser(sub)
    capacity.add_parser(sub)

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
    from commsim.experiment import lock, output
    from commsim.experiment.executors import RunAborted, make_executor
    from commsim.experiment.progress import Progress, Quiet
    from commsim.experiment.report import draw_figures, formats_in_use
    from commsim.experiment.runner import ExperimentFailed, check_jobs, run_experiment
    from commsim.experiment.store import RunStore

    exp = load(args.config, args.overrides, allow_large=args.allow_large)
    _apply_precision(exp, args)
    if args.records or args.parquet:  # refused before anything runs (issue 12, records)
        from commsim.experiment import records as op_records

        op_records.check(exp, args.records, args.parquet)
    if args.precision or args.max_replications:  # more replications: estimate again
        from commsim.config import estimate as work

        exp.estimate = work.estimate(exp.points, exp.replications, exp.resolved.get("precision"))
        if not args.allow_large:
            work.check(exp.estimate)
    if exp.estimate is not None and exp.estimate.big and not args.quiet:
        print(f"commsim: {exp.estimate.text()}", file=sys.stderr)
    try:
        jobs = check_jobs(args.jobs)
    except ConfigError as exc:
        raise ConfigError("--jobs", exc.message) from None
    # The real folder (`newdir/..` is the working directory), checked before
    # anything is written: a folder of another configuration is kept unless
    # --force, and one that is not commsim's is never written into.
    out_dir = output.resolve_out(args.out if args.out else Path("results") / exp.name)
    ignore = ("warmup",) if exp.warmup_auto else ()
    try:
        output.check_target(out_dir, exp.resolved, args.force, ignore=ignore)
    except ConfigError as exc:
        shown = args.out and str(Path(args.out)) != str(out_dir)
        raise ConfigError(exc.key, exc.message + (f" (--out {args.out} is {str(out_dir)!r})"
                                                  if shown else "")) from None
    warn = (lambda text: print(text, file=sys.stderr))

    class QuietButWarnings(Quiet):  # --quiet hides progress, never a warning
        def message(self, text: str) -> None:
            if text.startswith("warning:"):
                warn(text)

    progress = QuietButWarnings() if args.quiet else Progress()
    say = progress.message
    executor = make_executor(args.executor, jobs, args.scheduler, progress.sim_time)
    try:
        # Held until the files are in place; dropped by the kernel if we die.
        claim = lock.claim(out_dir, exp.resolved, wait=args.wait, say=warn)
        try:
            diff = output.check_target(out_dir, exp.resolved, args.force, ignore=ignore, locked=True)
        except ConfigError:
            claim.abandon()
            raise
    except ConfigError:
        executor.close()
        raise
    if diff:
        say(f"replacing results in {out_dir}/ of a different configuration (--force; differs in "
            f"{', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''})")
    store = RunStore(out_dir, warn=warn)
    if args.fresh:
        store.clear()
    say(f"{exp.name}: {len(exp.points)} sweep point(s) x {exp.replications} replication(s)"
        f"{' (more until the precision target)' if exp.resolved.get('precision') else ''}"
        f" on {executor.workers} {'worker' if executor.workers == 1 else 'workers'} ({executor.name})")
    kept = (lambda: f"{len(store)} finished run(s) are stored in {store.dir}/ and the folder's "
            "results are unchanged: run the same command again to compute only the missing ones")
    # Everything is written beside the results first, then moved into place:
    # a failed write leaves the previous results as they were.  Records are
    # written there by each run as it finishes (issue 12, records).
    stage = output.staging(out_dir) if args.records else None
    sink = op_records.Sink(stage, exp) if args.records else None
    try:
        result = run_experiment(exp, progress, executor=executor, store=store, records=sink)
    except ExperimentFailed as exc:
        result = exc.result
    except ConfigError:  # found while running (e.g. warm-up detection): leave no folder behind
        if stage is not None:
            output.discard(stage)
        claim.abandon()
        raise
    except KeyboardInterrupt:
        progress.close()
        if stage is not None:
            output.discard(stage)
        print(f"commsim: interrupted; {kept()}", file=sys.stderr)
        return 130
    except RunAborted as exc:
        progress.close()
        if stage is not None:
            output.discard(stage)
        print(f"commsim: error: {exc}; {kept()}", file=sys.stderr)
        return 1
    except BaseException:
        if stage is not None:
            output.discard(stage)
        raise
    finally:
        executor.close()
    stage = stage if stage is not None else output.staging(out_dir)
    figure_errors: list[str] = []
    try:
        paths = output.write_tables(result, stage)
        if args.records:
            paths += sink.finish()
        if args.parquet:
            paths += op_records.write_parquet_tables(result, stage)
        records = draw_figures(result, stage, formats_in_use(out_dir),
                               warn=lambda text: (figure_errors.append(text), warn(text)))
    except OSError as exc:
        output.discard(stage)
        raise output.WriteError(f"cannot write the results into {str(out_dir)!r}: {exc.strerror}; "
                                f"{kept()}") from None
    output.publish(stage, out_dir)
    claim.release()
    total = len(result.runs) + len(result.failures)
    say(f"wrote {len(paths) + len(records)} files to {out_dir}/ ({total} runs: {result.computed} computed, "
        f"{result.reused} reused from {store.dir}/)")
    status = 0
    if not args.quiet:  # the family's key metrics per sweep point, with stability flags (issue 12)
        from commsim.experiment.keymetrics import screen

        print(screen(result, out_dir), file=sys.stderr)
    if result.precision:
        short = [p for p in result.precision["points"] if not p["target_met"]]
        (warn if short else say)(
            f"{'warning: ' if short else ''}precision {100 * result.precision['target']:g}%: "
            + ("met at every sweep point" if not short else
               f"not met at {len(short)} point(s) after {result.precision['max_replications']} "
               "replications (the cap)"))
    if store.damaged:
        warn(f"warning: {len(store.damaged)} damaged stored run(s) were computed again")
    if figure_errors:
        warn(f"commsim: error: {len(figure_errors)} figure(s) could not be drawn (above); the tables "
             f"and the other figures are in {out_dir}/")
        status = 1
    if result.failures:
        warn(f"{len(result.failures)} run(s) failed (details in {out_dir}/failures.csv):")
        names = list(exp.sweep)
        for f in result.failures:
            params = ", ".join(f"{k}={f[k]}" for k in names)
            warn(f"  {params + ', ' if params else ''}replication={f['replication']}, seed={f['seed']}: "
                 f"{f['error']}")
        status = 1
    return status


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
        exp = load(target, args.overrides, allow_large=True)  # nothing is simulated
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
    from commsim.figures import sidetables

    before = len(sidetables.missing)
    records = draw_figures(result, out_dir, formats)  # warns for each figure it could not draw
    for rec in records:
        print(out_dir / rec["file"])
    missing = sidetables.missing[before:]
    print(f"{len(records)} figure(s) in {out_dir}/ ({', '.join(formats)}), no simulation", file=sys.stderr)
    if missing:
        names = sorted({m.figure for m in missing})
        print(f"commsim: error: {len(names)} figure(s) not drawn ({', '.join(names)}): their side "
              f"tables ({', '.join(sorted({m.path.name for m in missing}))}) are not in {out_dir}/; "
              "figures never re-simulate: run `commsim run CONFIG --out "
              f"{out_dir}` again to record them (runs stored in {out_dir}/.runs/ by this version "
              "of commsim are reused)", file=sys.stderr)
        return 1
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
        try:
            atomic_write(Path(args.write), text)
        except OSError as exc:
            raise ConfigError("--write", f"cannot write {args.write!r}: {exc.strerror}") from None
        print(f"wrote {args.write}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_summary(args) -> int:
    from commsim.experiment.keymetrics import screen
    from commsim.experiment.report import load_result

    result = load_result(Path(args.results))
    print(screen(result, args.results.rstrip("/"), max_rows=10**9 if args.all else 30))
    return 0


def cmd_metrics(args) -> int:
    from commsim.experiment import metricsref
    from commsim.experiment.output import atomic_write

    text = metricsref.markdown() if args.markdown else metricsref.text()
    if args.write:
        atomic_write(Path(args.write), text)
        print(f"wrote {args.write}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_trace(args) -> int:
    from commsim.config import load
    from commsim.experiment import trace

    exp = load(args.config, args.overrides, allow_large=args.allow_large)
    if args.limit < 1:
        raise ConfigError("--limit", f"got {args.limit}; expected a positive integer")
    from commsim.experiment import output

    out_dir = output.resolve_out(args.out if args.out else Path("results") / exp.name)
    output.check_foreign(out_dir, allow=("trace.png",))  # `--out newdir/..` is the working directory
    if args.client is not None and args.client < 0:
        raise ConfigError("--client", f"got {args.client}; expected a client id (0 or more)")
    if args.connection is not None and args.connection < 1:
        raise ConfigError("--connection", f"got {args.connection}; expected a connection id "
                          "(1 or more, as the trace numbers them)")
    try:
        text, fig_path = trace.trace(exp.points[0].config, args.limit, out_dir, client=args.client,
                                     connection=args.connection)
    except OSError as exc:
        raise output.WriteError(f"cannot write the sequence diagram into {str(out_dir)!r}: "
                                f"{exc.strerror}") from None
    print(text)
    print(f"sequence diagram: {fig_path}", file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from commsim.experiment import compare

    return compare.cli(args)


def cmd_capacity(args) -> int:
    from commsim.experiment import capacity

    return capacity.cli(args)


COMMANDS = {"run": cmd_run, "trace": cmd_trace, "plot": cmd_plot, "report": cmd_report,
            "patterns": cmd_patterns, "metrics": cmd_metrics, "summary": cmd_summary,
            "compare": cmd_compare, "capacity": cmd_capacity}
from commsim.testbed.cli import COMMANDS as _TESTBED_COMMANDS  # noqa: E402  (issue 13)
COMMANDS.update(_TESTBED_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 1 runs failed, a figure or a file could not be
    written, or the runs were aborted (out of memory, lost workers); 2 a
    configuration or command-line error, before anything was written;
    130 interrupted (finished runs are kept)."""
    from commsim.experiment.executors import RunAborted
    from commsim.experiment.lock import release_all
    from commsim.experiment.output import WriteError

    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"commsim: error: {exc}", file=sys.stderr)
        return 2
    except (WriteError, RunAborted) as exc:
        print(f"commsim: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file a command reads or writes (report, plot, summary ...)
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"commsim: error: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("commsim: error: out of memory; finished runs are stored: run the same command "
              "again to compute only the missing ones", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("commsim: interrupted", file=sys.stderr)
        return 130
    finally:
        release_all()


def entry() -> None:
    """The ``commsim`` program (console script, ``python -m commsim``):
    :func:`main`, then exit.  Everything is written, closed and released by
    then, so the objects left are frozen out of the garbage collector first:
    the interpreter's final collections would otherwise walk every object of
    pandas and matplotlib, about 0.2 s of CPU for nothing (issue 14).  Only
    here, where the process ends: in-process callers of :func:`main` keep a
    normal collector."""
    status = main()
    import gc

    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
