"""Request-response's run-ahead mode (RequestResponse._run_ahead: open-loop
clients over constant-latency hops, e.g. the M/M/1 of
experiments/precision_demo.yaml) against the event-driven path it replaces:
every metric equal (counts, bytes, CPU time, latency samples in order of
arrival, throughput), except the event count (the point of the mode) and the
CPU's sums of times (wait, sojourn, jobs present: added per job as admitted,
or per batch with ``sum()``), which may differ in the last bits of a double
(relative 1e-12; a changed service time moves them far more)."""

from __future__ import annotations

import pytest

from commsim.config import load
from commsim.experiment.runner import simulate
from commsim.patterns import request_response
from helpers import same_but_events, stops_exactly

REORDERED = {"server_jobs_mean", "server_sojourn_mean", "wait_mean"}


def _cfg(**over) -> dict:
    cfg = {"pattern": "request_response", "duration": 20, "warmup": 2,
           "clients": {"count": 100, "mode": "async", "rate": "8/s"},
           "network": {"latency": 0},
           "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}}}
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def _run(cfg: dict, ahead: bool, monkeypatch, seed: int = 3) -> dict:
    with monkeypatch.context() as m:
        m.setattr(request_response, "RUN_AHEAD", ahead)
        r = simulate(load(cfg).points[0].config, seed)
    assert r.model.ahead is ahead
    return r.metrics


CASES = {
    "M/M/1, rho 0.8": _cfg(),
    "no warm-up": _cfg(warmup=0),
    "20 ms latency": _cfg(network={"latency": "20ms"}),
    "M/M/3, body sizes drawn": _cfg(
        server={"cores": 3, "service_time": {"dist": "exponential", "mean": "3ms"}},
        request_response={"request_body": {"dist": "exponential", "mean": "2KiB"},
                          "response_body": "10KiB"}),
    "overloaded (1.2x)": _cfg(clients={"rate": "12/s"}),
    "constant service, 5 ms latency": _cfg(server={"service_time": "1ms"},
                                           network={"latency": "5ms"}),
    "shorter than a batch (10 ms)": _cfg(duration=0.01, warmup=0),
    "an encoding's sizes (no parse CPU)": _cfg(request_response={
        "encoding": "protobuf", "parse_cpu_per_kb": 0,
        "response_body": {"dist": "uniform", "low": "100B", "high": "5KiB"}}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_ahead_equals_the_event_driven_path(name, monkeypatch):
    cfg = CASES[name]
    ahead, events = _run(cfg, True, monkeypatch), _run(cfg, False, monkeypatch)
    assert ahead["events"] < events["events"] / 3 or events["events"] < 50
    same_but_events(ahead, events, REORDERED)


def test_the_cases_exercise_what_they_claim(monkeypatch):
    """Requests in flight at the end (latency), a queue (overload), and the
    M/M/1's mean wait against theory (rho / (mu - lambda) = 4 ms; 16,000
    customers of a queue whose waits are correlated over ~1/(mu(1-rho)^2) =
    25 ms: about 700 independent stretches, so 15 % is 4 standard errors)."""
    late = _run(CASES["20 ms latency"], True, monkeypatch)
    assert late["in_flight"] > 0 and late["sent"] > late["delivered"]
    assert _run(CASES["overloaded (1.2x)"], True, monkeypatch)["wait_mean"] > 0.5
    mm1 = _run(CASES["M/M/1, rho 0.8"], True, monkeypatch)
    assert mm1["wait_mean"] == pytest.approx(0.004, rel=0.15)


@pytest.mark.parametrize("over", [
    {"clients": {"mode": "sync"}},
    {"network": {"handshake": "tcp"}},
    {"network": {"loss": 0.01}},
    {"network": {"bandwidth": "100Mbps"}},
    {"network": {"latency": {"dist": "uniform", "low": "1ms", "high": "3ms"}}},
    {"network": {"segment_overhead": "40B"}},
    {"request_response": {"chunk_size": "1KiB", "request_body": "4KiB"}},
    {"request_response": {"encoding": "json"}},
    {"server": {"cpu_per_request": "10us"}},
    {"topology": {"servers": 2}},
], ids=lambda o: ".".join([*o, *next(iter(o.values()))]))
def test_run_ahead_only_where_exact(over):
    """Anything beyond one message each way through a FIFO CPU keeps the
    event-driven path."""
    cfg = _cfg(duration=1, warmup=0, **over)
    config = load(cfg).points[0].config
    assert getattr(simulate(config, 3).model, "ahead", False) is False
    assert request_response.exchanges_ahead(config) is False
    assert request_response.exchanges_ahead(load(_cfg()).points[0].config) is True


def test_records_and_traces_keep_the_event_driven_path():
    config = load(_cfg(duration=1, warmup=0)).points[0].config
    assert simulate(config, 3, records=True).model.ahead is False


def test_a_run_continued_past_its_window_fails_instead_of_standing_still():
    r = simulate(load(_cfg(duration=1, warmup=0)).points[0].config, 3)
    assert r.model.ahead
    with pytest.raises(RuntimeError, match="ran ahead to the end of the window"):
        r.sim.env.run(until=r.sim.end + 1)


def test_run_ahead_overload_stops_where_the_event_driven_path_stops(monkeypatch):
    """2x the server's capacity: the run queue reaches max_run_queue (2,000)
    and the run stops there.  Near the limit the batches shrink to one
    request, woken at its arrival at the server, so the stop is the event
    path's, at the same instant, with the same counts, bytes and latencies
    (the responses of the 2,000 jobs queued then, 2 s of work, are not
    counted on either path), but for the job in service then."""
    cfg = _cfg(clients={"rate": "20/s"}, warmup=0, network={"latency": "3ms"})
    cfg["max_run_queue"] = 2000
    config = load(cfg).points[0].config
    ahead = simulate(config, 3).metrics
    monkeypatch.setattr(request_response, "RUN_AHEAD", False)
    events = simulate(config, 3).metrics
    assert events["requests"] - events["responses"] > 1900
    # The job in service at the stop (one core), its sojourn under 3x the
    # mean (the queue grew steadily), moves the sojourn mean by under 3/n.
    stops_exactly(ahead, events, REORDERED, 3 / events["responses"])


def test_run_ahead_events():
    """A wake-up per batch (5 ms, or 2,048 requests' worth), not 2 per request."""
    m = simulate(load(_cfg()).points[0].config, 3).metrics
    assert m["events"] <= 22.0 / (2048 / 800.0) + 5
