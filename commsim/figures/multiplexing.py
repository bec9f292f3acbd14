"""Standard figures of a multiplexing experiment (drawn when their keys are swept).

* ``plt_vs_loss.png``: page load time against loss, one line per protocol
  (panels: every other swept key, e.g. proxy and latency);
* ``plt_vs_rtt.png``: page load time against the round-trip time;
* ``hol_vs_loss.png``: head-of-line blocked time per page against loss;
* ``connections_client_tier.png`` / ``connections_backend_tier.png``: most
  connections open at once at each tier, per proxy type and protocol (at the
  lowest swept loss and latency, since loss barely changes them);
* ``backend_connections_vs_rate.png`` / ``latency_vs_rate.png``: with
  ``clients.rate`` swept (API workload), connections and latency against the
  request rate, one line per proxy type.
"""

from __future__ import annotations

from pathlib import Path

PROTO = "multiplexing.protocol"
PROXY = "multiplexing.proxy"
LOSS = "network.loss"
LAT = "network.latency"
RATE = "clients.rate"


def multiplexing_figures(result, out_dir) -> list[Path]:
    from commsim.experiment.output import save_figure
    from commsim.experiment.plots import bar_plot, line_plot

    out_dir = Path(out_dir)
    s = result.summary.copy()
    params = [p for p in result.params if p in s.columns]
    swept = set(params)
    paths: list[Path] = []
    hue = PROTO if PROTO in swept else None

    def others(*used):
        return [p for p in params if p not in used]

    def save(fig, name):
        paths.append(save_figure(fig, out_dir / name))

    plt = "page_load_time" in s.columns and s["page_load_time"].notna().any()
    if LOSS in swept and plt:
        save(line_plot(s, LOSS, "page_load_time", hue, scale=1e3, xscale=100,
                       xlabel="loss per transmission (%)", ylabel="page load time (ms)",
                       title="Page load time vs loss", facet=others(LOSS, hue)),
             "plt_vs_loss.png")
        # Per run (so the replications give a CI), then summarised like a metric.
        from commsim.experiment.stats import summarize

        duration = float(result.experiment.resolved["duration"])
        runs = result.runs.copy()
        pages = runs["throughput"] * duration
        runs["hol_per_page"] = runs["hol_blocked_s"] / pages.where(pages > 0)
        per = summarize(runs, params, ["hol_per_page"])
        s = s.drop(columns=[c for c in ("hol_per_page", "hol_per_page_ci95") if c in s.columns])
        s = s.merge(per[params + ["hol_per_page", "hol_per_page_ci95"]], on=params, how="left")
        save(line_plot(s, LOSS, "hol_per_page", hue, scale=1e3, xscale=100,
                       xlabel="loss per transmission (%)",
                       ylabel="head-of-line blocked time per page (ms)",
                       title="Head-of-line blocking (message-ms per page)",
                       facet=others(LOSS, hue)),
             "hol_vs_loss.png")
    if LAT in swept and plt:
        save(line_plot(s, LAT, "page_load_time", hue, scale=1e3, xscale=2e3,
                       xlabel="round-trip time (ms)", ylabel="page load time (ms)",
                       title="Page load time vs round-trip time", facet=others(LAT, hue)),
             "plt_vs_rtt.png")
    if PROXY in swept and RATE in swept:
        for metric, ylabel, name, scale in (
                ("backend_connections_peak", "backend connections open at once (peak)",
                 "backend_connections_vs_rate.png", 1.0),
                ("latency_mean", "mean request latency (ms)", "latency_vs_rate.png", 1e3)):
            save(line_plot(s, RATE, metric, PROXY, scale=scale, ylabel=ylabel,
                           xlabel="requests per second per client",
                           title="API client through a proxy", facet=others(RATE, PROXY)),
                 name)
    if PROXY in swept:
        sub = s
        for key in (LOSS, LAT):
            if key in swept:
                sub = sub[sub[key] == sub[key].min()]
        rest = [p for p in params if p not in (PROXY, hue, LOSS, LAT)]
        if RATE in swept:
            sub = sub[sub[RATE] == sub[RATE].max()]
            rest = [p for p in rest if p != RATE]
        for metric, tier, name in (("client_connections_peak", "client tier",
                                    "connections_client_tier.png"),
                                   ("backend_connections_peak", "proxy-to-backend tier",
                                    "connections_backend_tier.png")):
            save(bar_plot(sub, PROXY, metric, hue, ylabel="connections open at once (peak)",
                          title=f"Connections, {tier}", xlabel="proxy", facet=rest),
                 name)
    return paths
