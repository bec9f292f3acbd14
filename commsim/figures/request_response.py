"""Figures of ``experiments/request_response.yaml``: latency, bandwidth and
server CPU by encoding, chunk size and keep-alive, and bytes by category."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from commsim.experiment.plots import (MAX_BARS, _labelled, _restrict, bar_plot, line_plot,
                                      stacked_bar_plot)

# ------------------------------------------------------- request-response ---

ENC = "request_response.encoding"
CHUNK = "request_response.chunk_size"
KEEP = "network.keepalive"
COUNT = "clients.count"
HANDSHAKE = "network.handshake"


def _duration(result, summary: pd.DataFrame):
    """The measured window of each summary row (seconds), or None."""
    if "duration" in summary.columns:
        return summary["duration"].to_numpy(dtype=float)
    exp = getattr(result, "experiment", None)
    resolved = getattr(exp, "resolved", None) or {}
    d = resolved.get("duration")
    return float(d) if d is not None else None


def request_response_figures(result, out_dir) -> list[Path]:
    """The standard figures of a request-response experiment.

    Drawn only when their key is swept (``result.params``):

    * ``latency_by_encoding.png``, ``bandwidth_by_encoding.png``,
      ``server_cpu_by_encoding.png``: grouped bars per encoding;
    * ``latency_keepalive.png``: keep-alive against a new connection per
      request (against client count when that is swept too);
    * ``latency_by_chunk_size.png``: chunked uploads;
    * ``latency_vs_clients.png``, ``throughput_vs_clients.png``: load curves;

    and always ``bytes_by_category.png``: header / payload / handshake /
    framing bytes per operation at every sweep point, stacked.
    """
    from commsim.experiment.output import save_figure

    out_dir = Path(out_dir)
    s = result.summary
    params = [p for p in result.params if p in s.columns]
    swept = set(params)
    paths: list[Path] = []

    def first(*keys):
        return next((k for k in keys if k in swept), None)

    def others(*used):
        return [p for p in params if p not in used]

    def save(fig, name):
        paths.append(save_figure(fig, out_dir / name))

    lat = "latency_mean" in s.columns
    if ENC in swept:
        hue = first(KEEP, CHUNK, HANDSHAKE, COUNT)
        if lat:
            save(bar_plot(s, ENC, "latency_mean", hue, scale=1e3, ylabel="mean latency (ms)",
                          title="Latency by body encoding", facet=others(ENC, hue)),
                 "latency_by_encoding.png")
        if "bandwidth" in s.columns:
            save(bar_plot(s, ENC, "bandwidth", hue, scale=1 / 1024, ylabel="bandwidth (KiB/s)",
                          title="Bytes on the wire per second by encoding", facet=others(ENC, hue)),
                 "bandwidth_by_encoding.png")
        if "server_utilization" in s.columns:
            save(bar_plot(s, ENC, "server_utilization", hue, scale=100,
                          ylabel="server CPU utilisation (%)",
                          title="Server CPU by encoding (parse + serialise + service)",
                          facet=others(ENC, hue)),
                 "server_cpu_by_encoding.png")

    if KEEP in swept and lat:
        if COUNT in swept:
            fig = line_plot(s, COUNT, "latency_mean", KEEP, scale=1e3, ylabel="mean latency (ms)",
                            title="Keep-alive vs a new connection per request",
                            facet=others(COUNT, KEEP))
        else:
            hue = first(HANDSHAKE, ENC, CHUNK)
            fig = bar_plot(s, KEEP, "latency_mean", hue, scale=1e3, ylabel="mean latency (ms)",
                           title="Keep-alive vs a new connection per request",
                           facet=others(KEEP, hue))
        save(fig, "latency_keepalive.png")

    if CHUNK in swept and lat:
        hue = first(ENC, KEEP, COUNT)
        save(bar_plot(s, CHUNK, "latency_mean", hue, scale=1e3,
                      ylabel="mean latency per upload (ms)", title="Chunked uploads",
                      facet=others(CHUNK, hue)),
             "latency_by_chunk_size.png")

    if COUNT in swept and pd.api.types.is_numeric_dtype(s[COUNT]):
        hue = first(ENC, KEEP, CHUNK, HANDSHAKE)
        if lat:
            save(line_plot(s, COUNT, "latency_mean", hue, scale=1e3, ylabel="mean latency (ms)",
                           title="Latency against load", facet=others(COUNT, hue)),
                 "latency_vs_clients.png")
        if "throughput" in s.columns:
            save(line_plot(s, COUNT, "throughput", hue, ylabel="throughput (operations/s)",
                           title="Throughput against load", facet=others(COUNT, hue)),
                 "throughput_vs_clients.png")

    parts = [(c, c[len("bytes_"):]) for c in
             ("bytes_header", "bytes_payload", "bytes_handshake", "bytes_framing")
             if c in s.columns and (c != "bytes_framing" or (s[c].fillna(0) != 0).any())]
    if parts:
        duration = _duration(result, s)
        ops = None
        if duration is not None and "throughput" in s.columns:
            ops = s["throughput"].to_numpy(dtype=float) * duration
        if ops is not None and np.all(ops > 0):
            scale = 1 / 1024 / ops
            ylabel = "KiB per operation"
        else:
            scale = 1 / 1024
            ylabel = "KiB in the measurement window"
        title = "Bytes on the wire by category" + (
            " (bytes sent in the window / operations completed)" if ops is not None
            and np.all(ops > 0) else "")
        rows, keys, note = _restrict(_labelled(s, params), params, MAX_BARS)
        scale = np.broadcast_to(np.asarray(scale, dtype=float), (len(s),))[
            s.index.get_indexer(rows.index)]
        if note:
            title += f"\n({note})"
        save(stacked_bar_plot(rows, parts, keys, scale=scale, ylabel=ylabel, title=title),
             "bytes_by_category.png")
    return paths
