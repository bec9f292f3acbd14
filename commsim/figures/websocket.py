"""Figure of a websocket experiment: what heartbeats cost against what they save.

Drawn from ``result.summary`` (means over replications) when the experiment
sweeps ``websocket.ping_interval`` (``null``, no heartbeats, is drawn at the
right, past the largest interval):

* ``heartbeat_tradeoff.png``: left, bytes per second per 1,000 clients spent
  on heartbeats and on reconnect handshakes, and server CPU (ms per second)
  on each; right, reconnects per client per hour and the fraction of updates
  missed; the idle timeout is marked.
"""

from __future__ import annotations

import math
from pathlib import Path

X = "websocket.ping_interval"


def figures(result, out_dir) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from commsim.experiment.output import save_figure

    df = result.summary
    if X not in df.columns or len(df) < 2:
        return []
    res = result.experiment.resolved
    dur = res["duration"]
    idle = res["websocket"]["idle_timeout"]
    df = df.copy()
    finite = [v for v in df[X] if v is not None and not (isinstance(v, float) and math.isnan(v))]
    x_none = max(finite) * 1.5 if finite else 1.0
    df["_x"] = [x_none if v is None or (isinstance(v, float) and math.isnan(v)) else v
                for v in df[X]]
    df = df.sort_values("_x")
    clients = df["updates_created"] * 0 + res["clients"]["count"]
    per_k = 1000.0 / clients

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(df["_x"], df["heartbeat_bytes"] / dur * per_k, "o-", label="heartbeat bytes/s")
    a.plot(df["_x"], df["bytes_handshake"] / dur * per_k, "s--", label="handshake bytes/s")
    a.set_ylabel("bytes per second per 1,000 clients")
    a2 = a.twinx()
    a2.plot(df["_x"], df["heartbeat_cpu_s"] / dur * 1e3 * per_k, "o:", color="tab:green",
            label="heartbeat CPU")
    a2.plot(df["_x"], df["handshake_cpu_s"] / dur * 1e3 * per_k, "s:", color="tab:red",
            label="handshake CPU")
    a2.set_ylabel("server CPU, ms per second per 1,000 clients")
    lines = a.get_legend_handles_labels()
    lines2 = a2.get_legend_handles_labels()
    a.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, ncol=2, loc="upper center",
             bbox_to_anchor=(0.5, -0.16))
    a.set_title("What heartbeats cost (and the reconnects they avoid)")

    missed = df["missed"] / df["updates_created"].where(df["updates_created"] > 0)
    b.plot(df["_x"], df["reconnects"] / clients / dur * 3600, "o-", label="reconnects per client-hour")
    b.set_ylabel("reconnects per client per hour")
    b2 = b.twinx()
    b2.plot(df["_x"], missed, "s--", color="tab:red", label="updates missed (fraction)")
    b2.set_ylabel("fraction of updates missed")
    lines = b.get_legend_handles_labels()
    lines2 = b2.get_legend_handles_labels()
    b.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, ncol=2, loc="upper center",
             bbox_to_anchor=(0.5, -0.16))
    b.set_title("What they save")
    for ax in (a, b):
        if idle is not None:
            ax.axvline(idle, color="grey", ls=":", lw=1)
            ax.text(idle, ax.get_ylim()[1], " idle timeout", color="grey", va="top", fontsize=8)
        ticks = sorted(set(df["_x"]))
        ax.set_xticks(ticks)
        ax.set_xticklabels([("none" if t == x_none else f"{t:g}") for t in ticks])
        ax.set_xlabel("ping interval (s)")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return [save_figure(fig, Path(out_dir) / "heartbeat_tradeoff.png",
                        {"x": X, "y": ["heartbeat_bytes", "bytes_handshake", "heartbeat_cpu_s",
                                       "handshake_cpu_s", "reconnects", "missed"]})]
