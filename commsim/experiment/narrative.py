"""A few generated sentences of conclusion per experiment (REPORT.md, report.html).

Three kinds, each only when the data supports it:

* **Which variant is cheapest / fastest where.**  The *variant* is the first
  swept key with text values (``pattern``, ``sync_async.io_model``,
  ``sidecar.mode`` ...).  For each setting of the other swept keys the
  variant with the lowest mean of the family's cost metric
  (:data:`commsim.experiment.keymetrics.COST`) and of its tail latency is
  found among the points that are in steady state and, where the family
  reports ``delivery_ratio``, deliver at least 99 % of their updates (a
  pattern that loses updates is not "cheapest"; an update still on its way
  at the window's end is not lost, see commsim/metrics/notifications.py).  The sentence names the winner and how
  many settings it wins.
* **Unstable points**, by variant, with the smallest swept value where they
  start.
* **Agreement with theory** where :mod:`commsim.theory` has a closed form
  for the configuration: M/M/c (or M/D/1) for a request-response server with
  open-loop clients and no encoding cost (server sojourn time), and the
  thread-pool saturation throughput for ``sync_async``'s thread pool.
"""

from __future__ import annotations

import math

from commsim import humanize
from commsim.experiment import keymetrics as km

DELIVERY_MIN = 0.99


def _is_text(col) -> bool:
    import pandas as pd

    return not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _variant(result) -> str | None:
    s = result.summary
    for p in km.params_of(result):
        if _is_text(s[p]) and s[p].nunique() > 1:
            return p
    return None


def _ok_rows(result) -> list[bool]:
    """Rows that count for 'best': steady state and (if known) >= 99 % delivered."""
    s = result.summary
    from commsim.metrics.notifications import delivered_share

    flags = [not f for f, _ in km.unstable(result)]
    for i, share in enumerate(delivered_share(s)):
        if share < DELIVERY_MIN:  # NaN (no updates, or not a notification pattern): nothing lost
            flags[i] = False
    return flags


def _label(result, col: str) -> str:
    for k in km.keys_for(result):
        if k.column == col:
            return k.label
    return col.replace("_", " ")


def _ci(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(v) else v


def best_sentence(result, column: str, lower: bool = True) -> str | None:
    s = result.summary
    var = _variant(result)
    if var is None or column not in s.columns or not s[column].notna().any():
        return None
    others = [p for p in km.params_of(result) if p != var]
    ok = _ok_rows(result)
    wins: dict[str, int] = {}
    settings = shared = 0
    groups = s.groupby(others, sort=False, dropna=False) if others else [((), s)]
    for _key, g in groups:
        ci_col = f"{column}_ci95"
        cand = [(float(r[column]) * (1 if lower else -1), _ci(r.get(ci_col)), str(r[var]))
                for i, r in g.iterrows() if ok[s.index.get_loc(i)] and not math.isnan(float(r[column]))]
        if not cand:
            continue
        settings += 1
        best = min(cand)
        # tied: within the sum of the two 95% half-widths (exactly equal without CIs)
        tied = sorted({c[2] for c in cand if c[0] <= best[0] + best[1] + c[1]})
        for v in tied:
            wins[v] = wins.get(v, 0) + 1
        if len(tied) > 1:
            shared += 1
    if not wins:
        return None
    what = f"{'lowest' if lower else 'highest'} {_label(result, column)}"
    over = f" of {' x '.join(others)}" if others else ""
    order = sorted(wins.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(order) == 1 or (order[0][1] == settings and not shared):
        every = f" at every setting{over} ({settings})" if others else ""
        return f"`{order[0][0]}` has the {what}{every}."
    parts = ", ".join(f"`{v}` {n}" for v, n in order)
    return (f"The {what}, best or tied within the 95% CIs, at how many of the {settings} "
            f"setting(s){over}: {parts}.")


def baseline_sentence(result, column: str) -> str | None:
    """What each variant adds to ``column`` over the variant ``none`` (the
    baseline without the mechanism), averaged over the settings of the other
    swept keys where both are in steady state."""
    s = result.summary
    var = _variant(result)
    if var is None or column not in s.columns or "none" not in set(s[var].astype(str)):
        return None
    others = [p for p in km.params_of(result) if p != var]
    ok = _ok_rows(result)
    diffs: dict[str, list[float]] = {}
    groups = s.groupby(others, sort=False, dropna=False) if others else [((), s)]
    for _key, g in groups:
        vals = {str(r[var]): float(r[column]) for i, r in g.iterrows() if ok[s.index.get_loc(i)]}
        base = vals.pop("none", math.nan)
        for v, x in vals.items():
            if not (math.isnan(base) or math.isnan(x)):
                diffs.setdefault(v, []).append(x - base)
    if not diffs:
        return None
    unit = humanize.metric_unit(column)
    parts = []
    for v, d in diffs.items():
        mean = sum(d) / len(d)
        parts.append(f"`{v}` {'adds' if mean >= 0 else 'removes'} {humanize.quantity(abs(mean), unit)}")
    n = max(len(d) for d in diffs.values())
    return (f"Over `none`: {', '.join(parts)} to the {_label(result, column)}"
            + (f" (mean over {n} settings of {' x '.join(others)})." if others else "."))


def unstable_sentence(result) -> str | None:
    flags = km.unstable(result)
    bad = [i for i, (f, _) in enumerate(flags) if f]
    if not bad:
        n = len(flags)
        return f"All {n} point(s) are in steady state by the checks of docs/metrics.md." if n else None
    s = result.summary
    var = _variant(result)
    params = km.params_of(result)
    written = humanize.written_values(result.experiment)
    numeric = [p for p in params if p != var and not _is_text(s[p]) and not __import__("pandas").api.types.is_bool_dtype(s[p])]
    by: dict[str, list] = {}
    for i in bad:
        row = s.iloc[i]
        by.setdefault(str(row[var]) if var else "", []).append(row)
    parts = []
    for v, rows in by.items():
        if numeric:
            p = numeric[0]
            lo = min(float(r[p]) for r in rows)
            parts.append(f"{'`' + v + '` ' if v else ''}at {p} >= {humanize.param(p, lo, written)} "
                         f"({len(rows)} point(s))")
        else:
            parts.append(f"`{v}` ({len(rows)} point(s))" if v else f"{len(rows)} point(s)")
    return (f"**{len(bad)} of {len(flags)} point(s) are not in steady state** (a queue or backlog grows "
            f"over the window, so their latency reflects the window length): {'; '.join(parts)}.")


# ----------------------------------------------------------------- theory ----

def _mmc_sentences(result) -> list[str]:
    from commsim import theory

    out = []
    s = result.summary
    if "server_sojourn_mean" not in s.columns:
        return out
    from commsim.experiment.stability import _norm

    checked, agree, worst, models = 0, 0, 0.0, set()
    rows = list(s.iterrows())
    for point in result.experiment.points:
        cfg = point.config
        rr, cl, sv, net = (cfg.get("request_response") or {}), cfg.get("clients") or {}, cfg.get("server") or {}, cfg.get("network") or {}
        st = sv.get("service_time")
        if (cl.get("mode") != "async" or rr.get("encoding") != "none" or rr.get("parse_cpu_per_kb")
                or net.get("handshake") != "none" or rr.get("chunk_size")):
            continue
        lam = float(cl["count"]) * float(cl["rate"])
        c = int(sv["cores"])
        try:
            if isinstance(st, dict) and st.get("dist") == "exponential":
                th = theory.mmc(lam, 1 / float(st["mean"]), c) if c > 1 else theory.mm1(lam, 1 / float(st["mean"]))
                model = "M/M/c" if c > 1 else "M/M/1"
            elif isinstance(st, (int, float)) and c == 1 and st > 0:
                th = theory.md1(lam, float(st))
                model = "M/D/1"
            else:
                continue
        except ValueError:
            continue
        match = [r for _, r in rows if all(_norm(r[k]) == _norm(v) for k, v in point.params.items())]
        if not match:
            continue
        row = match[0]
        sim, ci = float(row["server_sojourn_mean"]), float(row.get("server_sojourn_mean_ci95", math.nan))
        checked += 1
        models.add(model)
        rel = abs(sim - th["response"]) / th["response"]
        worst = max(worst, rel)
        if not math.isnan(ci) and abs(sim - th["response"]) <= ci:
            agree += 1
    if checked:
        out.append(f"Theory ({', '.join(sorted(models))}, commsim/theory.py): the server's mean sojourn time matches the closed form "
                   f"within the 95% CI at {agree} of {checked} point(s); largest difference "
                   f"{100 * worst:.1f}%.")
    return out


def _thread_pool_sentences(result) -> list[str]:
    from commsim import theory

    s = result.summary
    if "sync_async.io_model" not in s.columns or "throughput" not in s.columns:
        return []
    flags = km.unstable(result)
    pts = [(i, r) for i, (_, r) in enumerate(s.iterrows())
           if r["sync_async.io_model"] == "thread_pool" and flags[i][0]]
    if not pts:
        return []
    cfg = next(p.config for p in result.experiment.points if p.params.get("sync_async.io_model") == "thread_pool")
    sa = cfg["sync_async"]

    def mean(d):
        return float(d["mean"]) if isinstance(d, dict) else float(d)

    cpu = mean(sa["cpu_before"]) + mean(sa["cpu_after"])
    wait = int(sa["ios_per_request"]) * mean(sa["io_time"])
    try:
        x = theory.thread_pool_saturation(int(sa["threads"]), cpu, wait, float(cfg["server"]["cores"]))
    except (ValueError, KeyError, TypeError):
        return []
    plateau = sum(float(r["throughput"]) for _, r in pts) / len(pts)
    return [f"Theory (thread-pool saturation, commsim/theory.py): overloaded, the thread pool completes "
            f"{humanize.number(plateau)}/s on average against a closed-form capacity of "
            f"{humanize.number(x)}/s ({100 * (plateau - x) / x:+.1f}%)."]


def _mean(d) -> float | None:
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return float(d)
    if isinstance(d, dict) and "mean" in d and d.get("dist") in ("constant", "exponential", None):
        return float(d["mean"]) if d.get("dist") != "constant" else float(d.get("value", d["mean"]))
    return None


def _polling_sentences(result) -> list[str]:
    """Short and long polling against their closed forms (latency_mean and
    empty_fraction), where the workload is the one the formulas assume:
    per-client Poisson updates only, clients always online, no jitter."""
    from commsim import theory
    from commsim.experiment.stability import _norm

    s = result.summary
    if "empty_fraction" not in s.columns or "latency_mean" not in s.columns:
        return []
    rows = list(s.iterrows())
    found: dict[str, list[tuple[float, float]]] = {}
    for point in result.experiment.points:
        cfg = point.config
        name = cfg["pattern"]
        w = cfg.get("workload") or {}
        one_way = _mean((cfg.get("network") or {}).get("latency"))
        if (name not in ("short_polling", "long_polling") or one_way is None or w.get("online_time")
                or float(w.get("broadcast_rate") or 0) > 0 or float(w.get("job_rate") or 0) > 0
                or not float(w.get("event_rate") or 0) > 0):
            continue
        try:
            if name == "short_polling":
                sec = cfg["short_polling"]
                if float(sec.get("jitter") or 0) > 0:
                    continue
                th = theory.short_polling(float(w["event_rate"]), float(sec["interval"]), one_way)
            else:
                th = theory.long_polling(float(w["event_rate"]), float(cfg["long_polling"]["timeout"]), 2 * one_way)
        except (ValueError, KeyError, TypeError):
            continue
        match = [r for _, r in rows if all(_norm(r[k]) == _norm(v) for k, v in point.params.items())]
        if not match or math.isnan(float(match[0]["latency_mean"])):
            continue
        row = match[0]
        found.setdefault(name, []).append(
            (abs(float(row["latency_mean"]) - th["latency_mean"]) / th["latency_mean"],
             abs(float(row["empty_fraction"]) - th["empty_fraction"])))
    out = []
    for name, diffs in found.items():
        lat = max(d[0] for d in diffs)
        emp = max(d[1] for d in diffs)
        out.append(f"Theory (`{name}`, commsim/theory.py): mean latency within {100 * lat:.1f}% and the "
                   f"empty-response fraction within {emp:.3f} of the closed form at all {len(diffs)} "
                   "point(s) (largest differences; the formulas leave out server CPU and transmission time).")
    return out


def sentences(result) -> list[str]:
    fams = km.families(result)
    out = []
    for fam in fams:
        for col in km.COST.get(fam, ()):
            t = best_sentence(result, col, lower=True)
            if t:
                out.append(t)
                break
        for col in ("latency_p99", "page_load_time", "latency_p90"):
            t = best_sentence(result, col, lower=True)
            if t:
                out.append(t)
                break
    for col in ("latency_p90", "page_load_time"):
        if any(k.column == col for k in km.keys_for(result)):
            b = baseline_sentence(result, col)
            if b:
                out.append(b)
                break
    u = unstable_sentence(result)
    if u:
        out.append(u)
    try:
        out += _mmc_sentences(result) + _thread_pool_sentences(result) + _polling_sentences(result)
    except Exception:  # a narrative must never lose the report
        pass
    for fam in fams:
        if fam in km.CAVEATS:
            out.append(km.CAVEATS[fam])
    return out
