"""Each pattern family's key metrics, defined once, and the tables built from them.

The on-screen summary after ``commsim run``, REPORT.md and report.html all
show, per sweep point, the few metrics that answer a family's question (for
notifications: what it costs in bandwidth and wasted CPU, what it misses,
how late it delivers), with 95 % confidence half-widths and human units
(:mod:`commsim.humanize`), and the stability flag of
:mod:`commsim.experiment.stability`.

A family is the pattern module a pattern comes from
(``commsim.patterns.<family>``); a pattern of an unknown family gets
:data:`DEFAULT`.  A metric a run does not report (or reports as NaN
everywhere) is left out of the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One key metric: ``column`` of summary.csv shown as ``label``.

    ``per_window``: divide by the window length (CPU-seconds -> cores,
    thread-seconds -> threads); ``unit`` then names the result.
    ``better``: ``"lower"`` or ``"higher"`` (for the narrative), or ``""``.
    """

    column: str
    label: str
    better: str = "lower"
    per_window: bool = False
    unit: str | None = None


FAMILIES: dict[str, tuple[Key, ...]] = {
    "notifications": (
        Key("bandwidth", "bandwidth"),
        Key("server_cpu_wasted_s", "wasted CPU", per_window=True, unit="cores"),
        Key("missed", "missed"),
        Key("delivery_ratio", "delivered", "higher"),
        Key("latency_p50", "latency p50"),
        Key("latency_p99", "latency p99"),
        Key("connections_max", "connections"),
    ),
    "sync_async": (
        Key("throughput", "throughput", "higher"),
        Key("latency_p50", "latency p50"),
        Key("latency_p99", "latency p99"),
        Key("io_blocked_s", "threads blocked", per_window=True, unit="1"),
        Key("server_cpu_wasted_s", "wasted CPU", per_window=True, unit="cores"),
        Key("threads_max", "threads max"),
    ),
    "request_response": (
        Key("throughput", "throughput", "higher"),
        Key("latency_mean", "latency mean"),
        Key("latency_p99", "latency p99"),
        Key("server_utilization", "server busy"),
        Key("bandwidth", "bandwidth"),
        Key("client_blocked_fraction", "clients blocked"),
    ),
    "sidecar": (
        Key("throughput", "throughput", "higher"),
        Key("latency_p90", "latency p90"),
        Key("latency_p99", "latency p99"),
        Key("hop_added_p90", "added per hop p90"),
        Key("proxy_vcpu_per_krps", "proxy vCPU per 1000/s"),
        Key("mesh_vcpu_per_krps", "mesh vCPU per 1000/s"),
        Key("success_rate", "success", "higher"),
    ),
    "pubsub": (
        Key("throughput", "throughput", "higher"),
        Key("latency_p99", "latency p99"),
        Key("missed", "missed"),
        Key("duplicates", "duplicates"),
        Key("backlog", "backlog"),
        Key("broker_utilization", "broker busy"),
    ),
    "stateful": (
        Key("throughput", "throughput", "higher"),
        Key("latency_p99", "latency p99"),
        Key("availability", "availability", "higher"),
        Key("relogins", "relogins"),
        Key("imbalance", "imbalance"),
        Key("bytes_per_request", "bytes per request"),
    ),
    "multiplexing": (
        Key("page_load_time", "page load"),
        Key("object_latency_mean", "object latency"),
        Key("latency_p99", "latency p99"),
        Key("hol_blocked_s", "HOL blocked"),
        Key("client_connections_peak", "connections"),
        Key("bandwidth", "bandwidth"),
    ),
}

DEFAULT: tuple[Key, ...] = (
    Key("throughput", "throughput", "higher"),
    Key("latency_mean", "latency mean"),
    Key("latency_p99", "latency p99"),
    Key("server_utilization", "server busy"),
    Key("bandwidth", "bandwidth"),
)

#: What "cheapest" means per family (resource metrics), for the narrative.
COST = {"notifications": ("bandwidth", "server_cpu_wasted_s"), "sync_async": ("server_cpu_wasted_s",),
        "sidecar": ("mesh_vcpu_per_krps",), "request_response": ("bandwidth",),
        "multiplexing": ("bandwidth",), "stateful": ("bytes_per_request",), "pubsub": ("bytes_per_message",)}

#: Sentences said once per family in the reports: what the numbers mean.
CAVEATS = {
    "notifications": "Latency counts delivered updates only: compare it together with `missed` "
                     "and the delivered share.",
}


def family_of(pattern_name: str) -> str:
    from commsim.patterns import registry

    p = registry().get(pattern_name)
    mod = getattr(getattr(p, "model", None), "__module__", "") or ""
    parts = mod.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["commsim", "patterns"] else pattern_name


def families(result) -> list[str]:
    names = sorted({str(p.config["pattern"]) for p in result.experiment.points})
    return list(dict.fromkeys(family_of(n) for n in names))


def keys_for(result) -> list[Key]:
    out: list[Key] = []
    seen = set()
    for fam in families(result):
        for k in FAMILIES.get(fam, DEFAULT):
            if k.column not in seen:
                seen.add(k.column)
                out.append(k)
    s = result.summary
    return [k for k in out if k.column in s.columns and s[k.column].notna().any()]


def _window(result, row) -> float:
    d = row.get("duration") if "duration" in result.experiment.sweep else None
    if d is None or (isinstance(d, float) and math.isnan(d)):
        d = result.experiment.resolved.get("duration")
    return float(d)


def values(result, key: Key) -> tuple[list[float], list[float], str]:
    """Means, CI half-widths (NaN with one replication) and base unit of
    one key metric, row by row."""
    from commsim.humanize import metric_unit

    s = result.summary
    means, cis = [], []
    ci_col = f"{key.column}_ci95"
    for _, row in s.iterrows():
        f = 1.0 / _window(result, row) if key.per_window else 1.0
        means.append(float(row[key.column]) * f)
        ci = row.get(ci_col, math.nan)
        cis.append(float(ci) * f if ci is not None else math.nan)
    unit = key.unit if key.unit is not None else metric_unit(key.column)
    return means, cis, unit


def unstable(result) -> list[tuple[bool, str]]:
    s = result.summary
    if "unstable" not in s.columns:
        return [(False, "")] * len(s)
    out = []
    for _, row in s.iterrows():
        flag = row["unstable"]
        flag = bool(flag) if not (isinstance(flag, float) and math.isnan(flag)) else False
        reason = row.get("unstable_reason", "")
        out.append((flag, "" if not isinstance(reason, str) else reason))
    return out


def params_of(result) -> list[str]:
    return [p for p in result.experiment.sweep if p in result.summary.columns]


def table(result, keys: list[Key] | None = None) -> tuple[list[str], list[list[str]], list[bool]]:
    """(header, rows of cells, unstable flag per row): the swept values as
    written, then each key metric ``mean ± ci`` in one human unit per column
    (named in the header)."""
    from commsim import humanize

    keys = keys_for(result) if keys is None else keys
    params = params_of(result)
    written = humanize.written_values(result.experiment)
    s = result.summary
    header = list(params)
    cols = []
    for k in keys:
        means, cis, unit = values(result, k)
        cells, label = humanize.column(means, unit, cis)
        header.append(f"{k.label} ({label})" if label and label not in k.label else k.label)
        cols.append(cells)
    flags = [f for f, _ in unstable(result)]
    rows = []
    for i, (_, row) in enumerate(s.iterrows()):
        cells = [humanize.param(p, row[p], written) for p in params]
        cells += [c[i] for c in cols]
        rows.append(cells)
    return header, rows, flags


# ---------------------------------------------------------------- screen ----

def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def screen(result, out_dir=None, max_rows: int = 30) -> str:
    """The summary printed after ``commsim run``: key metrics per sweep
    point (mean ± 95% half-width when there are replications), unstable
    points marked ``!`` and explained; a sweep of more than ``max_rows``
    points shows its first and last rows and says where the rest is."""
    from commsim import humanize

    header, rows, flags = table(result)
    if not rows:
        return ""
    reps = sorted({int(r) for r in result.summary["replications"]})
    header = ["", *header]
    rows = [["!" if f else "", *r] for r, f in zip(rows, flags)]
    shown = rows
    skipped = 0
    if len(rows) > max_rows:
        # the unstable rows are listed below anyway; keep first and last rows
        head = max_rows // 2
        shown = rows[:head] + [["", "...", *[""] * (len(header) - 2)]] + rows[-(max_rows - head):]
        skipped = len(rows) - max_rows
    fams = ", ".join(families(result))
    ci = ("mean ± 95% CI half-width over " + "/".join(map(str, reps)) + " replications"
          if max(reps) > 1 else "one replication each (no CI: set replications >= 2)")
    out = [f"Key metrics ({fams}; {ci}):", *_text_table(header, shown)]
    where = f"{out_dir}/summary.csv" if out_dir is not None else "result.summary"
    if skipped:
        see = f"`commsim summary {out_dir} --all` prints them all; " if out_dir is not None else ""
        out.append(f"({skipped} of {len(rows)} sweep points not shown: {see}every metric of every point "
                   f"is in {where})")
    bad = [(i, r) for i, (f, r) in enumerate(unstable(result)) if f]
    if bad:
        params = params_of(result)
        written = humanize.written_values(result.experiment)
        out.append(f"! {len(bad)} of {len(rows)} point(s) NOT in steady state "
                   "(their means describe this window, not the system):")
        for i, reason in bad[:10]:
            row = result.summary.iloc[i]
            at = ", ".join(f"{p}={humanize.param(p, row[p], written)}" for p in params) or "the point"
            out.append(f"  {at}: {reason}")
        if len(bad) > 10:
            out.append(f"  ... and {len(bad) - 10} more (column unstable_reason of {where})")
    return "\n".join(out)
