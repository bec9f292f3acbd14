"""Is a sweep point in steady state?  The ``unstable`` column of summary.csv.

A point whose offered load exceeds its capacity has no steady state: its
queue grows for as long as it runs, so its latency is set by the window
length, not by the system (a thread pool offered 7,500 requests/s shows p50
1.2 s with a 1.5 s window and 2.7 s with 6 s).  Such points are flagged,
never silently averaged into a "result".  :func:`assess` adds two columns
to a summary table:

``unstable``
    True when any check below fires (False when none does, including when a
    check's metrics are absent);
``unstable_reason``
    the checks that fired, ``"; "``-separated, in words with numbers
    (empty when stable).

The checks use metrics every run already reports (means over replications):

1. **Work in = work out** (``requests``, ``responses``: messages sent in the
   window).  In steady state requests minus responses in the window is the
   change of the number in the system between window start and end, which
   is O(mean number in system) and averages 0; a queue that grows makes it
   a fixed fraction of the requests.  Flag when the deficit exceeds 2 % of
   the requests *and* 3 sqrt(requests) (three Poisson standard deviations of
   the request count, so small windows do not flag by chance).  Stable
   points of experiments/sync_vs_async.yaml stay below 0.5 % up to 94 %
   utilisation; the thread pool at 3,000/s and above (capacity 2,437/s) is
   at 19-68 %, thread_per_call at 7,500/s (capacity 7,273/s) at 4 %.
2. **Backlog** (pub/sub: ``backlog`` of ``copies``): the same rule for
   copies neither processed nor missed at the end.  Notification patterns:
   the same rule for ``updates_resolved`` (updates delivered or missed at a
   time inside the window, whatever their creation time) against
   ``updates_created``: in steady state their difference is the change of
   the number of updates in the system over the window and averages 0; a
   queue of frames or responses that grows makes it a fixed fraction.  (Not
   ``updates_pending``: the window's updates still on their way at its end
   are about creation rate x mean latency in any steady state, so a
   threshold on them would flag short windows, not growing queues.)
3. **Latency rising with time** (``latency_trend``, the later half of the
   window's samples over the earlier half): flag above 1.5.  Stable points
   above give 0.95-1.07; the sampling noise of the ratio of two means of
   >= 20 samples each with coefficient of variation 1 is about
   sqrt(2/20) = 0.32 at the minimum sample count and 0.14 at 200 samples,
   so 1.5 is beyond three standard deviations for all but the smallest
   windows.  (Censoring at the window end hides part of the rise in an
   overloaded run, so this check complements check 1 rather than replaces it.)
4. **A saturated server with open-loop load** (``server_utilization``
   >= :data:`SATURATED` = 0.99): work that arrives whether or not the server
   keeps up cannot queue for ever, so a server busy 99 % of the window is at
   or past its capacity (an M/M/1 at 99 % relaxes in about
   1/(mu (1 - sqrt(rho))^2), 80 s at 500 jobs/s: longer than most windows).
   Open loop: ``clients.mode: async`` (request patterns), and the
   notification patterns whose server work comes at a rate set by clients
   and updates, not by the server's pace (:data:`OPEN_LOOP_PATTERNS`: short
   polling polls on schedule; SSE, push and WebSocket send a frame per
   update).  A closed loop at 100 % is a stable system whose clients wait
   instead: sync clients, and long polling (each client holds one poll, and
   a response carries everything pending, so a busier server sends fewer,
   fuller responses; its latency, not its queue, grows with the load).

5. **Stopped for overload** (``stopped``, at ``stopped_at``): a CPU's run queue reached
   ``max_run_queue`` jobs (default 1,000,000), so the run was stopped there
   rather than left to grow its queue, and its memory, without bound
   (a short-polling server offered 2.5x its capacity held 3.4 GB after 10
   minutes).  The window ends at the stop: its metrics are rates and counts of
   the run up to there (CPU busy time counts the jobs in service at the stop
   up to their finish), and they are not a result.

The capacity search (:mod:`commsim.experiment.capacity`) calls
:func:`reasons` on each probe's mean row with the probe's config: a probe
is stable exactly when its summary.csv row would be.

These are heuristics on one window, documented as such: a point near
capacity (utilisation 0.95-0.99) may be stable in theory yet far from its
steady state within a short window; flagging it is the intent.
"""

from __future__ import annotations

import math

#: Check 1 and 2: a deficit above this fraction of the inflow ...
DEFICIT_FRACTION = 0.02
#: ... and above this many Poisson standard deviations (sqrt(inflow)).
DEFICIT_SIGMAS = 3.0
#: Check 3: later-half over earlier-half mean latency above this.
TREND_LIMIT = 1.5
#: Check 4: utilisation at or above which open-loop load is past capacity.
SATURATED = 0.99
#: Notification patterns whose server work is open loop (check 4).
OPEN_LOOP_PATTERNS = ("short_polling", "sse", "push", "websocket")


def _num(row, name) -> float:
    try:
        v = float(row[name])
    except (KeyError, TypeError, ValueError):
        return math.nan
    return v


def _deficit(inflow: float, outflow: float) -> float | None:
    """Fraction of ``inflow`` not matched by ``outflow`` when it is
    significant, else None."""
    if not (inflow > 0) or math.isnan(outflow):
        return None
    gap = inflow - outflow
    if gap > DEFICIT_FRACTION * inflow and gap > DEFICIT_SIGMAS * math.sqrt(inflow):
        return gap / inflow
    return None


def reasons(row, config: dict | None = None) -> list[str]:
    """The checks that fire for one summary row (a mapping of column to
    value); ``config`` is the point's resolved run config, if known."""
    from commsim.humanize import number

    out = []
    req, resp = _num(row, "requests"), _num(row, "responses")
    d = _deficit(req, resp)
    if d is not None:
        out.append(f"queue growing: {number(resp)} responses to {number(req)} requests in the window "
                   f"({100 * d:.0f}% unanswered)")
    copies, backlog = _num(row, "copies"), _num(row, "backlog")
    if copies > 0 and not math.isnan(backlog):
        if _deficit(copies, copies - backlog) is not None:
            out.append(f"backlog growing: {number(backlog)} of {number(copies)} copies "
                       f"({100 * backlog / copies:.0f}%) unprocessed at the end")
    created, resolved = _num(row, "updates_created"), _num(row, "updates_resolved")
    d = _deficit(created, resolved)
    if d is not None:
        out.append(f"backlog growing: {number(resolved)} updates delivered or missed in the window "
                   f"against {number(created)} created ({100 * d:.0f}% short)")
    tr = _num(row, "latency_trend")
    if tr > TREND_LIMIT:
        out.append(f"latency rising: the later half of the window's samples average {tr:.2f}x the earlier half")
    stopped = _num(row, "stopped")
    if stopped > 0:
        share = "" if stopped >= 1 else f" in {100 * stopped:.0f}% of the replications"
        out.append(f"run stopped at {_num(row, 'stopped_at'):.3g} s{share}: a CPU run queue "
                   "reached max_run_queue jobs (the offered load exceeds capacity)")
    util = _num(row, "server_utilization")
    if util >= SATURATED and open_loop(config):
        out.append(f"server saturated: CPU busy {100 * util:.1f}% of the window with open-loop load")
    return out


def open_loop(config: dict | None) -> bool:
    """Does the point's load arrive regardless of the server's pace (check 4)?"""
    config = config or {}
    clients = config.get("clients") or {}
    return clients.get("mode") == "async" or config.get("pattern") in OPEN_LOOP_PATTERNS


def assess(summary, experiment=None):
    """``summary`` with the columns ``unstable`` and ``unstable_reason``
    (replacing them if present)."""
    s = summary.copy()
    if s.empty:
        s["unstable"] = []
        s["unstable_reason"] = []
        return s
    params = list(experiment.sweep) if experiment is not None else []
    configs = {}
    if experiment is not None:
        for p in experiment.points:
            configs[tuple(_norm(p.params.get(k)) for k in params)] = p.config
    flags, texts = [], []
    for _, row in s.iterrows():
        cfg = configs.get(tuple(_norm(row.get(k)) for k in params))
        if cfg is None and experiment is not None and len(experiment.points) == 1:
            cfg = experiment.points[0].config
        found = reasons(row, cfg)
        flags.append(bool(found))
        texts.append("; ".join(found))
    s["unstable"] = flags
    s["unstable_reason"] = texts
    return s


def _norm(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
