"""``commsim calibrate RESULTS...``: the simulator's parameters from testbed runs.

Header sizes are exact: the relay counts every byte and the server knows the
bodies and frames it wrote, so per pattern

* request and response header = (bytes up or down - bodies) / messages;
* SSE / WebSocket frame overhead = (bytes down - payload) / frames;
* TCP/IP bytes per segment = bytes_transport / segments, and ACKs per
  message = acks / (requests + responses + frames).

Ratios are of sums over every run (so each byte counts once); the spread
over runs is reported beside them (it comes from messages in flight at the
window's edges).

Server CPU is a least-squares fit of each run's ``server_cpu_s`` on its
counts of work: HTTP exchanges (request parsed + response sent; in every
pattern a request has exactly one response, so the two cannot be told
apart and are fitted as one), updates carried in poll responses (encoding),
SSE frames, WebSocket frames, connection-seconds held open
(``connections_max x duration``) and seconds of run (the server's own
timers).  Columns that are zero in every run are left out.  The fit's R^2,
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

WORK = ("exchange", "poll_update", "sse_frame", "ws_frame", "connection_s", "run_s")


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
        up = sum(_num(r["bytes_up"]) for r in rs)
        down = sum(_num(r["bytes_down"]) for r in rs)
        if pattern == "request_response":
            res["request_header"] = (up - sum(_num(r["requests"]) * r["_req_body"] for r in rs)) / req
            res["response_header"] = (down - sum(_num(r["responses"]) * r["_resp_body"]
                                                 for r in rs)) / resp
            per = [(_num(r["bytes_up"]) - _num(r["requests"]) * r["_req_body"]) / _num(r["requests"])
                   for r in rs if _num(r["requests"])]
        elif pattern in ("short_polling", "long_polling"):
            pay = sum(_num(r["bytes_payload"]) for r in rs)
            res["request_header"] = up / req
            res["response_header"] = (down - pay) / resp
            per = [_num(r["bytes_up"]) / _num(r["requests"]) for r in rs if _num(r["requests"])]
        else:
            frames = sum(_num(r["frames"]) for r in rs)
            pay = sum(_num(r["bytes_payload"]) for r in rs)
            res["frame_overhead"] = (down - pay) / frames
            per = [(_num(r["bytes_down"]) - _num(r["bytes_payload"])) / _num(r["frames"])
                   for r in rs if _num(r["frames"])]
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
    return {
        "exchange": _num(r["requests"]),
        "poll_update": _num(r.get("updates_delivered")) if p in ("short_polling", "long_polling")
        else 0.0,
        "sse_frame": frames if p == "sse" else 0.0,
        "ws_frame": frames if p == "push" else 0.0,
        "connection_s": _num(r["connections_max"]) * r["_duration"],
        "run_s": r["_duration"],
    }


def fit_cpu(rows) -> dict:
    """Least squares of server_cpu_s on the work counts (non-negative where
    a plain fit gives a negative cost: that column is dropped and refitted)."""
    X = np.array([[work_counts(r)[k] for k in WORK] for r in rows], dtype=float)
    y = np.array([_num(r["server_cpu_s"]) for r in rows], dtype=float)
    cols = [i for i in range(len(WORK)) if np.any(X[:, i] != 0)]
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
    dof = max(1, len(y) - len(cols))
    sigma2 = ss_res / dof
    try:
        cov = sigma2 * np.linalg.inv(A.T @ A)
        se = np.sqrt(np.maximum(np.diag(cov), 0))
    except np.linalg.LinAlgError:
        se = np.full(len(cols), math.nan)
    costs = {WORK[c]: float(b) for c, b in zip(cols, coef)}
    return {"costs_s": costs, "stderr_s": {WORK[c]: float(s) for c, s in zip(cols, se)},
            "dropped": [w for i, w in enumerate(WORK) if i not in cols],
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan,
            "runs": len(y),
            "residuals": [{"source": r["_source"], "pattern": r["_pattern"],
                           "clients": _num(r.get("clients.count")),
                           "cpu_s": float(yy), "fit_s": float(pp),
                           "rel": float((yy - pp) / yy) if yy else math.nan}
                          for r, yy, pp in zip(rows, y, pred)]}


def per_message(rows, fit) -> dict:
    """Per pattern: the fitted CPU per message the server sends (what the
    simulator's ``server.service_time`` is), averaged over that pattern's runs."""
    costs = fit["costs_s"]
    out: dict = {}
    for r in rows:
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
             f"# Server CPU fit (least squares, R^2 = {fit['r2']:.4f}, {fit['runs']} runs), "
             "seconds per unit of work:"]
    for k, v in fit["costs_s"].items():
        lines.append(f"#   {k:13s} {v * 1e6:9.2f} us +- {fit['stderr_s'][k] * 1e6:.2f}")
    if fit["dropped"]:
        lines.append(f"#   (not fitted: {', '.join(fit['dropped'])})")
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
