"""The request-response server against queueing theory.

With zero latency and no encoding, handshake or bandwidth, a request-response
run is an M/G/c queue fed by a Poisson stream (async clients).  Each check
runs R independent replications and compares the replication mean with the
closed form.

Tolerance: the 99% Student-t interval over the replications,
``t(0.995, R-1) * s / sqrt(R)`` (t = 3.25 for R = 10), must contain the
theoretical value.  Each test also asserts that interval is narrower than a
few percent of the theoretical value, so a model error of that size cannot
hide behind a wide interval.  A warm-up of a few hundred mean service times
removes the empty-start bias (the relaxation time of M/M/1 at rho = 0.8 is
about 1 / (mu (1 - sqrt(rho))^2) = 90 service times).
"""


import pytest

import commsim
from commsim import theory
from helpers import within_t

MEAN_S = 0.001  # 1 ms mean service time
R = 10


def run_queue(lam, service, cores=1, duration=40.0, reps=R, seed=7):
    exp = commsim.load({
        "pattern": "request_response", "seed": seed,
        "duration": duration, "warmup": 2.0, "replications": reps,
        "clients": {"count": 1, "mode": "async", "rate": lam},
        "server": {"cores": cores, "service_time": service},
    })
    return commsim.run_experiment(exp).runs


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_wait_and_response(rho):
    lam = rho / MEAN_S
    runs = run_queue(lam, {"dist": "exponential", "mean": MEAN_S})
    th = theory.mm1(lam, 1 / MEAN_S)
    within_t(runs["wait_mean"], th["wait"], 0.10)
    within_t(runs["latency_mean"], th["response"], 0.08)
    within_t(runs["server_utilization"], rho, 0.02)


def test_mmc_erlang_c():
    c, rho = 4, 0.75
    lam = rho * c / MEAN_S
    runs = run_queue(lam, {"dist": "exponential", "mean": MEAN_S}, cores=c, duration=20.0)
    th = theory.mmc(lam, 1 / MEAN_S, c)
    within_t(runs["wait_mean"], th["wait"], 0.08)
    within_t(runs["latency_mean"], th["response"], 0.04)


def test_md1():
    rho = 0.7
    lam = rho / MEAN_S
    runs = run_queue(lam, MEAN_S)
    th = theory.md1(lam, MEAN_S)
    within_t(runs["wait_mean"], th["wait"], 0.05)


def test_mg1_pollaczek_khinchine_lognormal():
    rho, cv = 0.6, 2.0
    lam = rho / MEAN_S
    runs = run_queue(lam, {"dist": "lognormal", "mean": MEAN_S, "cv": cv}, duration=60.0)
    th = theory.mg1(lam, MEAN_S, cv ** 2)
    within_t(runs["wait_mean"], th["wait"], 0.15)


def test_littles_law_in_window():
    """L = lambda W over the measured window, at the server."""
    runs = run_queue(0.8 / MEAN_S, {"dist": "exponential", "mean": MEAN_S}, reps=3)
    for _, row in runs.iterrows():
        little = row["throughput"] * row["server_sojourn_mean"]
        assert row["server_jobs_mean"] == pytest.approx(little, rel=0.02)


def test_sync_clients_closed_loop_bound():
    """Closed loop: n clients, think Z, service S on one core: throughput
    = n / (Z + R) (the response-time law); with n = 20, Z = 10 ms the
    offered load n / Z = 2000/s exceeds 1/S = 1000/s, so the server
    saturates: throughput ~ 1/S (30,000 completions: Poisson-like noise
    ~ 0.6%, tolerance 2%) and utilisation near 1."""
    runs = run_queue_closed(n=20, think=0.01, service=MEAN_S)
    row = runs.iloc[0]
    assert row["throughput"] == pytest.approx(1 / MEAN_S, rel=0.02)
    assert row["server_utilization"] > 0.97
    law = 20 / (0.01 + row["latency_mean"])
    assert row["throughput"] == pytest.approx(law, rel=0.01)
    # Blocked time is the time spent waiting for responses: n x R x X / n per client.
    assert row["client_blocked_fraction"] == pytest.approx(
        row["throughput"] * row["latency_mean"] / 20, rel=0.01)


def run_queue_closed(n, think, service):
    exp = commsim.load({
        "pattern": "request_response", "duration": 30.0, "warmup": 1.0,
        "clients": {"count": n, "mode": "sync", "think_time": {"dist": "exponential", "mean": think}},
        "server": {"service_time": {"dist": "exponential", "mean": service}},
    })
    return commsim.run_experiment(exp).runs
