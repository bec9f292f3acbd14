"""``commsim calibrate RESULTS...``: the simulator's parameters from testbed runs.

Header sizes are exact: the relay counts every byte and the server knows the
bodies and frames it wrote, so per pattern

* request and response header = (bytes up or down - bodies) / messages;
* SSE / WebSocket frame overhead = (bytes down - payload) / frames;
* TCP/IP bytes per segment = bytes_transport / segments, and ACKs per
  message = acks / (requests + responses + frames).

Each size is the median over runs of the run's own ratio, and the spread
(min, max) is reported beside it: a run's ratio is off by the messages in
flight at its window's edges (the server counts a frame when it writes it,
the relay when it forwards it), which is large only in overloaded runs.

Server CPU is a least-squares fit, one per pattern (so each pattern's
fixed costs stay its own), of each run's ``server_cpu_s`` on its counts of
work: HTTP exchanges (request parsed + response sent;
in every pattern a request has exactly one response, so the two cannot be
told apart and are fitted as one; a held long poll costs more than a short
one: its timer and wake-up), updates carried in poll responses (encoding),
SSE frames, WebSocket frames, KiB of bodies, connection-seconds held open
(``connections_max x duration``) and seconds of run (the server's own
timers).  Columns that are zero in every run, or a linear combination of
the columns before them (not identifiable from the runs), are left out.  The fit's R^2,
each coefficient's standard error and each run's residual are reported.

The preset is YAML the config loader reads (``include: PRESET`` at the top
of an experiment): header sizes per pattern section, ``network.latency``
(half the loopback RTT), ``server.cores: 1`` and ``server.service_time``,
the fitted mean CPU per message the server sends, per pattern in comments
and in the ``calibration.json`` written beside it (the simulator's
notification patterns have one CPU cost per message sent; until per-kind
CPU keys reach them, ``commsim validate`` sets service_time per pattern
from that file).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from commsim.errors import ConfigError

WORK = ("rr_exchange", "short_poll", "long_poll", "poll_update", "sse_frame", "ws_frame",
        "payload_kib", "connection_s", "run_s")


def read_runs(folders: list[Path]):
    """Every run row of the testbed results, with its pattern and sizes."""
    import pandas as pd
    import yaml

    rows = []
    for folder in folders:
        runs_csv = Path(folder) / "runs.csv"
        cfg_file = Path(folder) / "config.resolved.yaml"
        if not runs_csv.exists() or not cfg_file.exists():
            raise ConfigError(str(folder), "not a testbed results folder (runs.csv and "
                              "config.resolved.yaml expected; run `commsim testbed CONFIG`)")
        if not (Path(folder) / "testbed.json").exists():
            raise ConfigError(str(folder), "holds simulator results, not testbed results "
                              "(no testbed.json)")
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
        runs = pd.read_csv(runs_csv)
        for rec in runs.to_dict("records"):
            def val(key, default=None):
                if key in rec:
                    return rec[key]
                node = cfg
                for part in key.split("."):
                    if not isinstance(node, dict) or part not in node:
                        return default
                    node = node[part]
                return node
            rec["_pattern"] = val("pattern")
            rec["_duration"] = float(val("duration"))
            rr = cfg.get("request_response") or {}
            body = val("request_response.response_body", rr.get("response_body", 0))
            req_body = val("request_response.request_body", rr.get("request_body", 0))
            rec["_resp_body"] = float(body.get("mean", 0) if isinstance(body, dict) else body or 0)
            rec["_req_body"] = float(req_body.get("mean", 0) if isinstance(req_body, dict)
                                     else req_body or 0)
            rec["_source"] = str(folder)
            rows.append(rec)
    if not rows:
        raise ConfigError("RESULTS", "no runs found")
    return rows


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(v) else v


def header_sizes(rows) -> dict:
    """Per pattern: request/response header, frame overhead (sums over runs)."""
    out: dict = {}
    by: dict = {}
    for r in rows:
        by.setdefault(r["_pattern"], []).append(r)
    for pattern, rs in by.items():
        res: dict = {}
        req = sum(_num(r["requests"]) for r in rs)
        resp = sum(_num(r["responses"]) for r in rs)
        if pattern == "request_response":
            per = [(_num(r["bytes_up"]) - _num(r["requests"]) * r["_req_body"]) / _num(r["requests"])
                   for r in rs if _num(r["requests"])]
            res["request_header"] = float(np.median(per))
            res["response_header"] = float(np.median(
                [(_num(r["bytes_down"]) - _num(r["responses"]) * r["_resp_body"])
                 / _num(r["responses"]) for r in rs if _num(r["responses"])]))
        elif pattern in ("short_polling", "long_polling"):
            per = [_num(r["bytes_up"]) / _num(r["requests"]) for r in rs if _num(r["requests"])]
            res["request_header"] = float(np.median(per))
            res["response_header"] = float(np.median(
                [(_num(r["bytes_down"]) - _num(r["bytes_payload"])) / _num(r["responses"])
                 for r in rs if _num(r["responses"])]))
        else:
            per = [(_num(r["bytes_down"]) - _num(r["bytes_payload"])) / _num(r["frames"])
                   for r in rs if _num(r["frames"])]
            res["frame_overhead"] = float(np.median(per))
        res["spread"] = [min(per), max(per)] if per else None
        segs = sum(_num(r["segments"]) for r in rs)
        msgs = req + resp + sum(_num(r.get("frames")) for r in rs)
        res["tcpip_bytes_per_segment"] = sum(_num(r["bytes_transport"]) for r in rs) / segs
        res["acks_per_message"] = sum(_num(r["acks"]) for r in rs) / msgs if msgs else math.nan
        res["wire_over_app"] = (sum(_num(r["bytes_wire"]) for r in rs)
                                / sum(_num(r["bytes_total"]) for r in rs))
        res["runs"] = len(rs)
        out[pattern] = res
    return out


def work_counts(r) -> dict:
    p = r["_pattern"]
    frames = _num(r.get("frames"))
    exchanges = _num(r["requests"])
    return {
        "rr_exchange": exchanges if p == "request_response" else 0.0,
        "short_poll": exchanges if p == "short_polling" else 0.0,
        "long_poll": exchanges if p == "long_polling" else 0.0,
        "poll_update": _num(r.get("updates_delivered")) if p in ("short_polling", "long_polling")
        else 0.0,
        "sse_frame": frames if p == "sse" else 0.0,
        "ws_frame": frames if p == "push" else 0.0,
        "payload_kib": _num(r.get("bytes_payload")) / 1024,
        "connection_s": _num(r["connections_max"]) * r["_duration"],
        "run_s": r["_duration"],
    }


def _lstsq(rows, names):
    X = np.array([[work_counts(r)[k] for k in names] for r in rows], dtype=float)
    y = np.array([_num(r["server_cpu_s"]) for r in rows], dtype=float)
    # Columns in WORK order, each kept only if it is not a linear combination
    # of those kept before it (e.g. KiB of bodies when every update has the
    # same size): such a cost is not identifiable from these runs.
    cols = []
    for i in range(len(names)):
        if not np.any(X[:, i] != 0):
            continue
        trial = cols + [i]
        scaled = X[:, trial] / np.abs(X[:, trial]).max(axis=0)
        if np.linalg.matrix_rank(scaled, tol=1e-6) == len(trial):
            cols = trial
    while True:
        A = X[:, cols]
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        neg = [c for c, b in zip(cols, coef) if b < 0]
        if not neg or len(cols) == 1:
            break
        cols.remove(neg[0])
    pred = A @ coef
    resid = y - pred
    ss_res = float(resid @ resid)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    dof = len(y) - len(cols)
    try:
        cov = (ss_res / dof if dof > 0 else math.nan) * np.linalg.inv(A.T @ A)
        se = np.sqrt(np.maximum(np.diag(cov), 0))
    except np.linalg.LinAlgError:
        se = np.full(len(cols), math.nan)
    return {"costs_s": {names[c]: float(b) for c, b in zip(cols, coef)},
            "stderr_s": {names[c]: float(s) for c, s in zip(cols, se)},
            "dropped": [w for i, w in enumerate(names) if i not in cols],
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan,
            "runs": len(y),
            "residuals": [{"source": r["_source"], "pattern": r["_pattern"],
                           "clients": _num(r.get("clients.count")),
                           "cpu_s": float(yy), "fit_s": float(pp),
                           "rel": float((yy - pp) / yy) if yy else math.nan}
                          for r, yy, pp in zip(rows, y, pred)]}


def fit_cpu(rows) -> dict:
    """Least squares of server_cpu_s on the work counts, one fit per pattern
    (its own message count, updates in polls, payload KiB, connection-seconds,
    seconds of run); a column whose cost comes out negative is dropped and
    the fit redone.  Returns {pattern: fit}."""
    out = {}
    for pattern in sorted({r["_pattern"] for r in rows}):
        rs = [r for r in rows if r["_pattern"] == pattern]
        out[pattern] = _lstsq(rs, WORK)
    return out


def per_message(rows, fits) -> dict:
    """Per pattern: the fitted CPU per message the server sends (what the
    simulator's ``server.service_time`` is), averaged over that pattern's runs."""
    out: dict = {}
    for r in rows:
        costs = fits[r["_pattern"]]["costs_s"]
        w = work_counts(r)
        cpu = sum(costs.get(k, 0.0) * v for k, v in w.items())
        p = r["_pattern"]
        sent = _num(r["responses"]) + _num(r.get("frames"))
        if p == "request_response":
            sent = _num(r["responses"])
        acc = out.setdefault(p, [0.0, 0.0])
        acc[0] += cpu
        acc[1] += sent
    return {p: (c / n if n else math.nan) for p, (c, n) in out.items()}


def calibrate(folders: list[Path], out: Path) -> str:
    rows = read_runs(folders)
    headers = header_sizes(rows)
    fit = fit_cpu(rows)
    service = per_message(rows, fit)
    rtts = [_num(r.get("loopback_rtt")) for r in rows if _num(r.get("loopback_rtt")) > 0]
    rtt = float(np.median(rtts)) if rtts else 0.0
    result = {"headers": headers, "cpu_fit": fit, "service_time_per_pattern_s": service,
              "loopback_rtt_s": rtt, "sources": [str(f) for f in folders]}
    lines = ["# commsim calibration preset, fitted by `commsim calibrate` from "
             f"{len(rows)} testbed runs ({', '.join(str(f) for f in folders)}).",
             "# Use it from an experiment with a top-level `include: <this file>` (the "
             "experiment's own keys win).",
             "# Server CPU, least squares per pattern, seconds per unit of work:"]
    for p, f in fit.items():
        lines.append(f"#   {p} (R^2 = {f['r2']:.4f}, {f['runs']} runs): " + ", ".join(
            f"{k} {v * 1e6:.2f} +- {f['stderr_s'][k] * 1e6:.2f} us" for k, v in f["costs_s"].items()))
    lines.append("# CPU per message sent, per pattern (server.service_time for that pattern):")
    for p, v in service.items():
        lines.append(f"#   {p:16s} {v * 1e6:8.1f} us")
    ratios = ", ".join(f"{p} {h['wire_over_app']:.3f}" for p, h in headers.items())
    lines.append(f"# Bytes on the wire / application bytes (TCP/IP headers, ACKs): {ratios}")
    lines.append("network:")
    lines.append(f"  latency: {rtt / 2 * 1e6:.1f}us   # half the measured loopback RTT")
    lines.append("server:")
    lines.append("  cores: 1")
    mean_service = float(np.nanmean(list(service.values()))) if service else 0.0
    lines.append(f"  service_time: {mean_service * 1e6:.1f}us   # mean of the per-pattern values above")
    for p, h in headers.items():
        lines.append(f"{p}:")
        for key in ("request_header", "response_header", "frame_overhead"):
            if key in h:
                lines.append(f"  {key}: {h[key]:.1f}B")
    text = "\n".join(lines) + "\n"
    from commsim.experiment.output import atomic_write
    atomic_write(out, text)
    atomic_write(out.with_suffix(".json"), json.dumps(result, indent=1, default=float))
    return text
