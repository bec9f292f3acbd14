"""Compare two sets of results: paired differences of every metric under
common random numbers (``commsim compare``, :func:`compare`).

What is compared
----------------
* **Two results folders** (``commsim compare A B``): sweep points are
  matched on the values of the keys both sweep (keys swept with a single
  value are ignored); points found on one side only are reported and left
  out.
* **Two values of a swept key in one folder** (``commsim compare DIR --key
  pattern --values short_polling sse``): A holds the runs with the first
  value, B those with the second, matched on every other swept key.

Statistics
----------
Replication ``r`` of every sweep point runs with the same seed
(:func:`commsim.rng.derive_run_seed`; each random purpose has its own
stream), so run ``r`` of A and run ``r`` of B saw the same random workload.
The comparison pairs them: for every metric, ``d_r = B_r - A_r`` over the
replications both sides have (NaN on either side drops the pair), and

    diff = mean(d),  95% CI = diff +/- t_{0.975, n-1} s_d / sqrt(n),
    p = two-sided paired t-test of diff = 0.

Pairing is checked, not assumed: the two runs of every pair must carry the
same ``seed``.  If they do not (say the folders were run with different base
seeds) the comparison is refused, unless ``unpaired=True`` (``--unpaired``),
which uses Welch's unpaired t-test (Welch-Satterthwaite degrees of freedom)
and says so in the ``method`` column.

Assumptions: replications are independent and the paired differences
roughly normal (replication means of long windows are, by the CLT); a
difference is "significant" when its 95 % CI excludes zero (p < 0.05),
one test per metric with no correction for multiple comparisons, so among
~30 metrics that truly do not differ about one and a half will be flagged
by chance.  A difference that is the same in every replication (s_d = 0,
e.g. a count fixed by the configuration) has a zero-width interval: it is
significant when non-zero.  Relative differences are ``diff / |mean(A)|``
(with the CI scaled the same way, i.e. mean(A) treated as known), and NaN
when mean(A) is 0.

Output: a table (:data:`COLUMNS`, one row per matched point and metric,
with each metric's unit), sentences like ``latency_p99: B is 37% lower than
A (significant; 95% CI 33% to 41% lower)``, and a figure of the relative
differences with their intervals.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from commsim.errors import ConfigError
from commsim.experiment.stats import t_cdf, t_quantile

if TYPE_CHECKING:  # pandas is imported where tables are built: `import commsim` stays lean (issue 14)
    import pandas as pd

#: Columns of the comparison table (after the matched sweep keys).
COLUMNS = ["metric", "unit", "a_mean", "b_mean", "diff", "diff_ci95_low", "diff_ci95_high",
           "rel_diff", "rel_ci95_low", "rel_ci95_high", "p_value", "significant", "n", "method"]

LEVEL = 0.95


@dataclass
class _Side:
    label: str
    runs: pd.DataFrame
    params: list[str]      # swept keys of this side
    resolved: dict | None  # config.resolved.yaml, when known


# ------------------------------------------------------------------ inputs --


def _load_side(source: Any, what: str) -> _Side:
    """A results folder, a Result, or a runs DataFrame."""
    import pandas as pd

    if isinstance(source, (str, Path)):
        import yaml

        folder = Path(source)
        runs_file, cfg_file = folder / "runs.csv", folder / "config.resolved.yaml"
        if not runs_file.is_file() or not cfg_file.is_file():
            raise ConfigError(what, f"{str(folder)!r} is not a results folder (needs runs.csv and "
                              "config.resolved.yaml; run `commsim run CONFIG --out DIR` first)")
        resolved = yaml.safe_load(cfg_file.read_text()) or {}
        runs = pd.read_csv(runs_file)
        params = [k for k in (resolved.get("sweep") or {}) if k in runs.columns]
        return _Side(folder.name or str(folder), runs, params, resolved)
    runs = getattr(source, "runs", None)
    if isinstance(runs, pd.DataFrame):
        exp = source.experiment
        return _Side(exp.name, runs, [k for k in exp.sweep if k in runs.columns], exp.resolved)
    raise ConfigError(what, f"got {type(source).__name__}; expected a results folder or a Result")


def _match_value(column: pd.Series, text: Any, key: str) -> Any:
    """The value of ``column`` that ``text`` names (exactly, or as a number
    with units of the key's kind, e.g. ``0.1/s`` or ``16KiB``)."""
    import pandas as pd

    values = list(pd.unique(column))
    for v in values:
        if str(v) == str(text):
            return v
    number = None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        number = float(text)
    else:
        from commsim import units

        for parse in (units.parse_number, units.parse_duration, units.parse_size,
                      units.parse_rate, units.parse_bandwidth):
            try:
                number = parse(text, key)
                break
            except ConfigError:
                continue
    if number is not None:
        for v in values:
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) \
                    and math.isclose(float(v), number, rel_tol=1e-9, abs_tol=1e-12):
                return v
    shown = ", ".join(str(v) for v in values)
    raise ConfigError("--values", f"{key} has no value {text!r} in these results (values: {shown})")


def _sides(a, b, key, values) -> tuple[_Side, _Side, list[str], list[str]]:
    """(A, B, keys to match points on, notes)."""
    notes: list[str] = []
    if key is None:
        if b is None:
            raise ConfigError("B", "compare needs two results folders, or one folder with "
                              "--key KEY --values A B")
        if values is not None:
            raise ConfigError("--values", "needs --key (the swept key whose two values to compare)")
        sa, sb = _load_side(a, "A"), _load_side(b, "B")
        if sa.label == sb.label:
            sa.label, sb.label = f"A ({sa.label})", f"B ({sb.label})"

        def varying(side):
            return [k for k in side.params if side.runs[k].nunique(dropna=False) > 1]

        va, vb = varying(sa), varying(sb)
        if set(va) != set(vb):
            only = sorted(set(va) ^ set(vb))
            raise ConfigError("B", f"the folders sweep different keys ({', '.join(only)} swept on "
                              "one side only); compare points of one folder with --key/--values, "
                              "or rerun with the same sweep")
        if sa.resolved is not None and sb.resolved is not None:
            from commsim.experiment.output import _differences

            skip = {"name", "sweep", "plots", "precision", "replications"}
            diff = _differences({k: v for k, v in sa.resolved.items() if k not in skip},
                                {k: v for k, v in sb.resolved.items() if k not in skip})
            if diff:
                notes.append(f"the configurations differ in {', '.join(diff[:8])}"
                             f"{' ...' if len(diff) > 8 else ''}")
            else:
                notes.append("the configurations are identical")
        return sa, sb, va, notes
    if b is not None:
        raise ConfigError("--key", "give one results folder with --key/--values, or two folders "
                          "without them")
    if values is None or len(values) != 2:
        raise ConfigError("--values", f"got {values!r}; expected two values of {key}")
    side = _load_side(a, "A")
    if key not in side.params:
        allowed = ", ".join(side.params) or "none: this experiment has no sweep"
        raise ConfigError("--key", f"{key!r} is not swept in {side.label} (swept keys: {allowed})")
    va, vb = (_match_value(side.runs[key], v, key) for v in values)
    if va == vb:
        raise ConfigError("--values", f"both values are {va!r}; expected two different values")
    rest = [k for k in side.params if k != key]
    ra = side.runs[side.runs[key] == va].drop(columns=[key])
    rb = side.runs[side.runs[key] == vb].drop(columns=[key])
    fa, fb = _fmt(va), _fmt(vb)
    return (_Side(f"{key}={fa}", ra, rest, None), _Side(f"{key}={fb}", rb, rest, None), rest,
            [f"one folder ({side.label}), {key}: A = {fa}, B = {fb}"])


def _fmt(value: Any) -> str:
    """A swept value as written (integral floats without '.0')."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# -------------------------------------------------------------- statistics --


def _paired(a: np.ndarray, b: np.ndarray) -> tuple:
    """(diff, half-width, p, n) of the paired differences b - a."""
    ok = ~(np.isnan(a) | np.isnan(b))
    d = b[ok] - a[ok]
    n = int(d.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(d.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    s = float(d.std(ddof=1))
    if s <= 1e-12 * max(abs(mean), float(np.abs(a[ok]).max(initial=0.0)), 1e-300):
        return mean, 0.0, (1.0 if mean == 0 else 0.0), n
    se = s / math.sqrt(n)
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * se
    return mean, half, 2.0 * t_cdf(-abs(mean / se), n - 1), n


def _welch(a: np.ndarray, b: np.ndarray) -> tuple:
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    na, nb = a.size, b.size
    if na == 0 or nb == 0:
        return math.nan, math.nan, math.nan, min(na, nb)
    mean = float(b.mean() - a.mean())
    if na < 2 or nb < 2:
        return mean, math.nan, math.nan, min(na, nb)
    va, vb = float(a.var(ddof=1)) / na, float(b.var(ddof=1)) / nb
    se2 = va + vb
    if se2 <= 0:
        return mean, 0.0, (1.0 if mean == 0 else 0.0), min(na, nb)
    df = se2 ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    se = math.sqrt(se2)
    return mean, t_quantile(0.5 + LEVEL / 2, df) * se, 2.0 * t_cdf(-abs(mean / se), df), min(na, nb)


def _metrics(ra: pd.DataFrame, rb: pd.DataFrame, only: Sequence[str] | None) -> list[str]:
    import pandas as pd

    from commsim.metrics import METRICS
    from commsim.patterns import registry

    registry()  # the patterns define their families' metrics on import

    names = [c for c in ra.columns if c in METRICS and c in rb.columns
             and pd.api.types.is_numeric_dtype(ra[c]) and pd.api.types.is_numeric_dtype(rb[c])]
    if only:
        unknown = [m for m in only if m not in names]
        if unknown:
            raise ConfigError("--metric", f"{unknown[0]!r} is not a metric of both sides "
                              f"(metrics: {', '.join(names)})")
        names = [m for m in names if m in only]
    return names


def _check_pairs(pairs: pd.DataFrame, keys: list[str]) -> str | None:
    """None if every pair shares its seed, else a description of the first
    pair that does not."""
    bad = pairs[pairs["seed_a"] != pairs["seed_b"]]
    if bad.empty:
        return None
    row = bad.iloc[0]
    where = ", ".join(f"{k}={row[k]}" for k in keys)
    return (f"replication {int(row['replication'])}{' at ' + where if where else ''} ran with seed "
            f"{int(row['seed_a'])} in A and {int(row['seed_b'])} in B")


def compare(a, b=None, *, key: str | None = None, values: Sequence | None = None,
            unpaired: bool = False, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Paired comparison of two result sets; returns the table (one row per
    matched sweep point and metric, columns: the matched sweep keys, then
    :data:`COLUMNS`).

    ``a`` and ``b`` are results folders (or :class:`~commsim.Result`);
    alternatively ``a`` alone with ``key`` and two ``values`` of it.  The
    table's ``attrs`` hold ``a``/``b`` (labels), ``keys`` (the matched sweep
    keys) and ``notes`` (what differs, unmatched points, the method).

    >>> commsim.compare("results/notifications", key="pattern",
    ...                 values=["short_polling", "sse"])          # doctest: +SKIP
    """
    import pandas as pd

    sa, sb, keys, notes = _sides(a, b, key, values)
    names = _metrics(sa.runs, sb.runs, metrics)
    on = [*keys, "replication"]
    for side, what in ((sa, "A"), (sb, "B")):
        missing = [c for c in [*on, "seed"] if c not in side.runs.columns]
        if missing:
            raise ConfigError(what, f"{side.label} runs lack the column(s) {', '.join(missing)}")
    pa = sa.runs.set_index(keys).index.unique() if keys else None
    pb = sb.runs.set_index(keys).index.unique() if keys else None
    if keys:
        common = pa.intersection(pb)
        if len(common) == 0:
            raise ConfigError("B", f"no sweep point of {sa.label} matches one of {sb.label} on "
                              f"{', '.join(keys)}")
        for side, idx in ((sa, pa), (sb, pb)):
            extra = len(idx) - len(common)
            if extra:
                notes.append(f"{extra} sweep point(s) of {side.label} have no match and are left out")
    pairs = sa.runs.merge(sb.runs, on=on, suffixes=("_a", "_b"))
    if pairs.empty:
        raise ConfigError("B", "no replication number occurs on both sides")
    method = "paired-t"
    mismatch = _check_pairs(pairs, keys)
    if mismatch:
        if not unpaired:
            raise ConfigError("B", f"the runs do not pair: {mismatch} (a different base seed?); "
                              "common random numbers need the same seed per replication: rerun "
                              "with the same `seed`, or pass --unpaired for Welch's unpaired t-test")
        method = "welch"
        notes.append("seeds do not pair: Welch's unpaired t-test, not the paired test")
    elif unpaired:
        method = "welch"
        notes.append("--unpaired: Welch's unpaired t-test although the seeds pair")
    n_reps = sorted(set(pairs["replication"]))
    if method == "paired-t":
        notes.append(f"paired t over {len(n_reps)} replication(s) sharing their seeds (CRN)")

    from commsim.metrics import METRICS

    rows = []
    groups = pairs.groupby(keys, sort=False, dropna=False) if keys else [((), pairs)]
    for kv, g in groups:
        kv = kv if isinstance(kv, tuple) else (kv,)
        if method == "welch":
            ga = sa.runs.merge(pd.DataFrame([kv], columns=keys), on=keys) if keys else sa.runs
            gb = sb.runs.merge(pd.DataFrame([kv], columns=keys), on=keys) if keys else sb.runs
        for m in names:
            if method == "paired-t":
                x, y = g[f"{m}_a"].to_numpy(float), g[f"{m}_b"].to_numpy(float)
                diff, half, p, n = _paired(x, y)
            else:
                x, y = ga[m].to_numpy(float), gb[m].to_numpy(float)
                diff, half, p, n = _welch(x, y)
            a_mean = float(np.nanmean(x)) if np.isfinite(x).any() else math.nan
            b_mean = float(np.nanmean(y)) if np.isfinite(y).any() else math.nan
            if abs(diff) <= 1e-12 * max(abs(a_mean), abs(b_mean)):
                diff = 0.0  # summation-order noise of equal means
            scale = abs(a_mean) if a_mean and math.isfinite(a_mean) else math.nan
            row = dict(zip(keys, kv))
            row.update(metric=m, unit=METRICS[m].unit, a_mean=a_mean, b_mean=b_mean, diff=diff,
                       diff_ci95_low=diff - half, diff_ci95_high=diff + half,
                       rel_diff=diff / scale, rel_ci95_low=(diff - half) / scale,
                       rel_ci95_high=(diff + half) / scale, p_value=p,
                       significant=bool(p < 1 - LEVEL) if math.isfinite(p) else False,
                       n=n, method=method)
            rows.append(row)
    table = pd.DataFrame(rows, columns=[*keys, *COLUMNS])
    table.attrs.update(a=sa.label, b=sb.label, keys=keys, notes=notes)
    return table


# ---------------------------------------------------------------- sentences --


def _pct(x: float) -> str:
    return f"{100 * abs(x):.3g}%"


def _quantity(x: float, unit: str) -> str:
    return f"{abs(x):.4g}{'' if unit == '1' else ' ' + unit}"


def sentence(row) -> str:
    """One line for one metric, e.g. ``latency_p99: B is 37% lower than A
    (significant; 95% CI 33% to 41% lower)``."""
    m, diff, half_lo, half_hi = row["metric"], row["diff"], row["diff_ci95_low"], row["diff_ci95_high"]
    if not math.isfinite(diff):
        return f"{m}: no value on one side"
    if int(row["n"]) < 2 or not math.isfinite(half_lo):
        return f"{m}: B - A = {diff:.4g} (one replication: no interval, no test)"
    if diff == 0 and half_lo == 0 and half_hi == 0:
        return f"{m}: no difference (equal in every replication)"
    word = "lower" if diff < 0 else "higher"
    if diff == 0:
        return (f"{m}: B equals A on average (not significant; 95% CI "
                f"{half_lo:.4g} to {half_hi:.4g} {'' if row['unit'] == '1' else row['unit']})")
    rel = math.isfinite(row["rel_diff"])
    size = _pct(row["rel_diff"]) if rel else _quantity(diff, row["unit"])
    lo, hi = ((row["rel_ci95_low"], row["rel_ci95_high"]) if rel else (half_lo, half_hi))
    fmt = _pct if rel else (lambda v: _quantity(v, row["unit"]))

    def signed(v):
        return f"{fmt(v)} {'lower' if v < 0 else 'higher'}" if v else "0"

    ci = f"95% CI {signed(lo)} to {signed(hi)}" if lo * hi < 0 or lo == 0 or hi == 0 else \
        f"95% CI {fmt(min(abs(lo), abs(hi)))} to {fmt(max(abs(lo), abs(hi)))} {word}"
    verdict = "significant" if row["significant"] else "not significant"
    if half_lo == half_hi:
        verdict += ", the same in every replication"
    return f"{m}: B is {size} {word} than A ({verdict}; {ci})"


def describe(table: pd.DataFrame, significant_only: bool = False) -> str:
    """The comparison as text: what A and B are, notes, a sentence per metric
    (grouped by matched sweep point)."""
    keys = table.attrs.get("keys", [])
    lines = [f"A = {table.attrs.get('a', 'A')}", f"B = {table.attrs.get('b', 'B')}"]
    lines += [f"note: {n}" for n in table.attrs.get("notes", [])]
    groups = table.groupby(keys, sort=False, dropna=False) if keys else [((), table)]
    for kv, g in groups:
        kv = kv if isinstance(kv, tuple) else (kv,)
        if keys:
            lines.append("at " + ", ".join(f"{k}={v}" for k, v in zip(keys, kv)) + ":")
        for _, row in g.iterrows():
            if significant_only and not row["significant"]:
                continue
            lines.append(("  " if keys else "") + sentence(row))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ figure --


def figure(table: pd.DataFrame, path: Path, max_points: int = 6) -> Path:
    """Relative difference B vs A of every metric with its 95% CI (one panel
    per matched sweep point, at most ``max_points``); metrics whose A mean is
    zero have no relative difference and are left out of the figure."""
    import pandas as pd
    from matplotlib.figure import Figure

    from commsim.experiment.output import save_figure

    keys = table.attrs.get("keys", [])
    groups = list(table.groupby(keys, sort=False, dropna=False)) if keys else [((), table)]
    groups = groups[:max_points]
    metrics = [m for m in pd.unique(table["metric"])
               if table.loc[table["metric"] == m, "rel_diff"].notna().any()]
    height = 1.2 + 0.22 * max(len(metrics), 1)
    fig = Figure(figsize=(min(3.2 * len(groups) + 2.4, 12), height))
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    ypos = {m: i for i, m in enumerate(reversed(metrics))}
    for ax, (kv, g) in zip(axes, groups):
        kv = kv if isinstance(kv, tuple) else (kv,)
        g = g[g["metric"].isin(metrics)]
        for _, row in g.iterrows():
            if not math.isfinite(row["rel_diff"]):
                continue
            y = ypos[row["metric"]]
            lo, hi = row["rel_ci95_low"], row["rel_ci95_high"]
            err = None if not math.isfinite(lo) else [[100 * (row["rel_diff"] - lo)],
                                                        [100 * (hi - row["rel_diff"])]]
            color = "tab:red" if row["significant"] else "tab:gray"
            ax.errorbar([100 * row["rel_diff"]], [y], xerr=err, fmt="o", color=color, ms=4,
                        capsize=2)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("B - A, % of A (95% CI)")
        ax.set_xscale("symlog", linthresh=10)
        if keys:
            ax.set_title(", ".join(f"{k}={v}" for k, v in zip(keys, kv)), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(metrics)), list(reversed(metrics)), fontsize=8)
    fig.suptitle(f"B = {table.attrs.get('b', 'B')} vs A = {table.attrs.get('a', 'A')} "
                 "(red: significant)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path))


# ---------------------------------------------------------------- the files --


def write(table: pd.DataFrame, out_dir: Path, force: bool = False) -> list[Path]:
    """compare.csv (the table, with units), compare.png and compare.json (what
    was compared) in ``out_dir``.  A folder holding a comparison of other
    inputs, or other files, is kept unless ``force``."""
    from commsim.experiment.output import atomic_write

    out_dir = Path(out_dir)
    inputs = {"a": table.attrs.get("a"), "b": table.attrs.get("b"),
              "keys": table.attrs.get("keys"), "notes": table.attrs.get("notes")}
    if out_dir.is_dir() and not force:
        mine = {"compare.csv", "compare.png", "compare.json"}
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in mine)
        try:
            old = json.loads((out_dir / "compare.json").read_text())
        except (OSError, ValueError):
            old = None
        same = old is not None and old.get("a") == inputs["a"] and old.get("b") == inputs["b"]
        if others or (any((out_dir / f).exists() for f in mine) and not same):
            raise ConfigError("--out", f"{str(out_dir)!r} already holds other results; choose "
                              "another --out, or pass --force to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "compare.csv"
    from commsim.experiment.tables import for_writing  # integers as integers, as in runs.csv

    buf = io.StringIO()
    for_writing(table, list(table.attrs.get("keys") or [])).to_csv(buf, index=False)
    atomic_write(csv, buf.getvalue())
    atomic_write(out_dir / "compare.json", json.dumps(inputs, indent=1) + "\n")
    return [csv, figure(table, out_dir / "compare.png"), out_dir / "compare.json"]


def default_out(table: pd.DataFrame) -> Path:
    import re

    def slug(text):
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(text)).strip("_")

    return Path("results") / "compare" / f"{slug(table.attrs.get('a'))}-vs-{slug(table.attrs.get('b'))}"


def cli(args) -> int:
    """``commsim compare`` (registered in commsim/cli.py)."""
    import sys

    table = compare(args.a, args.b, key=args.key, values=args.values, unpaired=args.unpaired,
                    metrics=args.metric or None)
    sys.stdout.write(describe(table, significant_only=args.significant))
    out = Path(args.out) if args.out else default_out(table)
    paths = write(table, out, force=args.force)
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    """The ``compare`` sub-command's arguments."""
    c = sub.add_parser(
        "compare", help="paired differences of every metric between two results (CRN)",
        description="Compare two results folders (commsim compare A B), or two values of a swept "
                    "key in one folder (commsim compare DIR --key pattern --values short_polling "
                    "sse). Replication r of both sides must share its seed (common random "
                    "numbers): every metric's B - A is tested with a paired t-test over "
                    "replications. Writes compare.csv (with units), compare.png, compare.json.")
    c.add_argument("a", metavar="A", help="results folder (A)")
    c.add_argument("b", metavar="B", nargs="?", help="results folder (B); omit with --key/--values")
    c.add_argument("--key", help="a swept key of A whose two --values are compared")
    c.add_argument("--values", nargs=2, metavar=("VA", "VB"), help="the values of --key: A, then B")
    c.add_argument("--metric", action="append", metavar="NAME",
                   help="compare only this metric (repeatable; default: every metric)")
    c.add_argument("--unpaired", action="store_true",
                   help="Welch's unpaired t-test (needed when the seeds do not pair)")
    c.add_argument("--significant", action="store_true", help="print only significant differences")
    c.add_argument("--out", help="folder for compare.csv/png (default results/compare/A-vs-B)")
    c.add_argument("--force", action="store_true", help="replace a folder holding other results")
