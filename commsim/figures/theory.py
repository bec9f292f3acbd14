"""Closed forms drawn beside simulated curves.

:func:`closed_form` answers, for one resolved run config and one metric,
what queueing theory (:mod:`commsim.theory`) predicts, or None when the
config is not a case with a closed form.  Figures draw it as a dashed line
beside the simulated points, labelled with the model it comes from.

Cases (the assumptions under which the model *is* the queue, as stated in
:mod:`commsim.patterns.request_response`): a request-response run with zero
network latency, no bandwidth limit, no loss, no handshake, no chunking and
an encoding that costs no CPU, fed by open-loop (async, Poisson) clients, is
an M/G/c queue with arrival rate ``clients.count x clients.rate`` and the
``server.service_time`` distribution:

* one core: M/G/1 (Pollaczek-Khinchine; M/M/1 for exponential service):
  mean latency (= sojourn), mean wait, utilisation; with exponential service
  the latency percentiles too (the M/M/1 sojourn time is exponential with
  rate mu - lam);
* c cores with exponential service: M/M/c (Erlang C): mean latency and wait,
  utilisation.

Points at or above saturation (rho >= 1) have no steady state: None.
"""

from __future__ import annotations

import math

from commsim import theory

_PERCENTILES = {"latency_p50": 0.50, "latency_p90": 0.90, "latency_p95": 0.95, "latency_p99": 0.99}


def _zero(spec) -> bool:
    if isinstance(spec, dict):
        return False
    try:
        return float(spec) == 0.0
    except (TypeError, ValueError):
        return False


def _queue(config: dict):
    """(lam, service distribution, cores) when ``config`` is an M/G/c queue, else None."""
    if config.get("pattern") != "request_response":
        return None
    net, rr, cl, srv = (config.get(k) or {} for k in ("network", "request_response", "clients", "server"))
    if not (_zero(net.get("latency", 0)) and net.get("bandwidth") is None and not net.get("loss")
            and net.get("handshake", "none") == "none"):
        return None
    if rr.get("chunk_size") is not None or cl.get("mode") != "async":
        return None
    from commsim.network.encoding import Encoding

    if Encoding(rr.get("encoding", "none"), rr.get("size_factor"), rr.get("parse_cpu_per_kb")).cpu_per_kb > 0:
        return None
    from commsim.dists import make_distribution

    service = make_distribution(srv.get("service_time"), "duration", "server.service_time")
    lam = float(cl["count"]) * float(cl["rate"])
    return lam, service, int(srv.get("cores", 1))


def closed_form(config: dict, metric: str) -> tuple[float, str] | None:
    """(predicted value in base units, model name) of ``metric`` at one
    resolved run config, or None when no closed form applies."""
    q = _queue(config)
    if q is None:
        return None
    lam, service, c = q
    mean_s, scv = float(service.mean), float(service.scv)
    if not (mean_s > 0 and math.isfinite(scv)) or lam * mean_s >= c:
        return None
    exponential = getattr(service, "name", "") == "exponential"
    if c == 1:
        model = "M/M/1" if exponential else "M/G/1"
        th = theory.mm1(lam, 1 / mean_s) if exponential else theory.mg1(lam, mean_s, scv)
    elif exponential:
        model = f"M/M/{c}"
        th = theory.mmc(lam, 1 / mean_s, c)
    else:
        return None
    if metric == "latency_mean":
        return th["response"], model
    if metric == "wait_mean":
        return th["wait"], model
    if metric == "server_utilization":
        return th["rho"], model
    if metric == "throughput":
        return lam, model
    if metric in _PERCENTILES and c == 1 and exponential:
        return -math.log(1 - _PERCENTILES[metric]) / (1 / mean_s - lam), model
    return None
