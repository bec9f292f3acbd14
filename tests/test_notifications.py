"""Notification patterns against their closed forms.

Tolerances
----------
* Counts that the model fixes (requests of periodic polls, header bytes,
  SSE requests = clients + reconnects) are compared exactly.
* A fraction of independent Bernoulli trials (the empty fraction of short
  polls: disjoint windows of a Poisson stream are independent) is compared
  within 4 binomial standard deviations, sqrt(p (1 - p) / n)
  (two-sided miss probability 6e-5).
* Means of correlated samples (latencies of updates answered by the same
  poll, drops of the same client queue) use R independent replications:
  the 99 % Student-t interval t(0.995, R-1) s / sqrt(R) must contain the
  closed form AND be narrower than a stated fraction of it, so a model error
  of that size cannot hide behind a wide interval.

Latency is over updates created inside the window; the tests let the model
run past the window's end (``drain``) until every such update has arrived,
so late updates are not censored out of the mean.
"""

from __future__ import annotations

import math

import pytest

import commsim
from commsim import theory
from commsim.engine import Simulation
from commsim.errors import ConfigError
from commsim.patterns import registry
from helpers import event_driven, within_t


def build(cfg: dict, seed: int = 1):
    config = commsim.load(cfg).points[0].config
    sim = Simulation(config, seed)
    model = registry()[config["pattern"]].model(sim)
    return sim, model


def run(cfg: dict, seed: int = 1, drain: float = 0.0) -> dict:
    """Metrics of one run; with ``drain`` the run goes on that long past its
    window (the window's updates still on their way arrive and count).
    The run-ahead modes end at the window's end, so a drained run takes the
    event-driven path (helpers.event_driven)."""
    if drain:
        with event_driven():
            sim, model = build(cfg, seed)
    else:
        sim, model = build(cfg, seed)
    sim.run()
    if drain:
        sim.env.run(until=sim.end + drain)
    return model.metrics()


# ------------------------------------------------------------ short polling --

def short_cfg(clients=200, rate=1.0, interval=1.0, latency=0.05, duration=100.0, **extra):
    cfg = {"pattern": "short_polling", "duration": duration, "warmup": interval,
           "clients": {"count": clients},
           "network": {"latency": latency},
           "server": {"cores": 1, "service_time": 0},
           "short_polling": {"interval": interval},
           "workload": {"event_rate": rate}}
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


def test_short_polling_requests_exact():
    # Client c polls at phase_c + k T; a window of D = 100 T after a warm-up of
    # T holds exactly D / T polls of every client: 200 x 100 = 20,000.
    m = run(short_cfg())
    assert m["requests"] == 200 * 100
    assert m["responses"] == 200 * 100


def test_short_polling_empty_fraction():
    # Each poll covers a disjoint window of length T of a Poisson stream
    # (the warm-up of one interval makes the first window full), so empties
    # are independent Bernoulli(p), p = exp(-lambda T) = 0.3679.
    # n = 20,000 polls: sd = sqrt(0.3679 * 0.6321 / 20000) = 0.0034; 4 sd = 0.0136.
    lam, T = 1.0, 1.0
    m = run(short_cfg(rate=lam, interval=T))
    p = theory.short_polling(lam, T, 0.05)["empty_fraction"]
    n = m["requests"]
    tol = 4 * math.sqrt(p * (1 - p) / n)
    assert abs(m["empty_fraction"] - p) < tol
    assert tol < 0.04 * p
    assert m["empty_responses"] == round(m["empty_fraction"] * n)
    # Every empty poll is wasted CPU (zero service here, so wasted CPU is 0).
    assert m["server_cpu_wasted_s"] == 0.0


def test_short_polling_mean_latency():
    # T/2 + one way: the wait for the next poll is uniform on [0, T).
    # Per update sd = T / sqrt(12) = 0.289; ~20,000 updates per replication.
    lam, T, one_way = 1.0, 1.0, 0.05
    expected = theory.short_polling(lam, T, one_way)["latency_mean"]
    lat = [run(short_cfg(rate=lam, interval=T, latency=one_way, duration=40.0), seed=s,
               drain=T + 3 * one_way)["latency_mean"] for s in range(8)]
    within_t(lat, expected, 0.01)


def test_short_polling_wasted_cpu_counts_empty_polls():
    # With a constant service time d every empty poll wastes exactly d.
    m = run(short_cfg(rate=0.5, server={"service_time": "1ms"}))
    assert m["server_cpu_wasted_s"] == pytest.approx(m["empty_responses"] * 1e-3, rel=1e-9)
    assert m["server_cpu_s"] == pytest.approx(m["requests"] * 1e-3, rel=1e-9)


def test_header_arithmetic_exact():
    # 1,000 clients, one poll a second, 871 bytes of headers per exchange
    # (600 request + 271 response), no updates: exactly 871,000 bytes/s.
    m = run(short_cfg(clients=1000, rate=0, duration=10.0,
                      short_polling={"request_header": "600B", "response_header": "271B"}))
    assert m["bandwidth"] == 871_000
    assert m["bytes_total"] == 871_000 * 10
    assert m["bytes_payload"] == 0
    assert m["empty_fraction"] == 1.0


def test_short_polling_jitter_keeps_the_rate():
    # Gaps uniform in [T - j, T + j] have mean T: the poll rate stays 1/T.
    # Per client, polls in D = 100 T differ from D / T by at most 1 plus the
    # renewal-count noise (gap sd = j / sqrt(3) = 0.29 T): sd of the total
    # over 200 clients = sqrt(200 * 100 * 0.29^2 / 1) = 41; allow 4 sd + 200.
    m = run(short_cfg(short_polling={"jitter": "0.5s"}))
    assert abs(m["requests"] - 20_000) < 4 * 41 + 200


# ------------------------------------------------------------- long polling --

def long_cfg(clients=100, rate=1.0, timeout=1.0, one_way=0.1, duration=100.0):
    return {"pattern": "long_polling", "duration": duration, "warmup": 5.0,
            "clients": {"count": clients},
            "network": {"latency": one_way},
            "server": {"cores": 1, "service_time": 0},
            "long_polling": {"timeout": timeout},
            "workload": {"event_rate": rate}}


@pytest.mark.parametrize("rate,timeout", [(1.0, 1.0), (0.2, 2.0)])
def test_long_polling_against_renewal_theory(rate, timeout):
    one_way = 0.1
    th = theory.long_polling(rate, timeout, 2 * one_way)
    reqs, lat, empty = [], [], []
    for s in range(8):
        m = run(long_cfg(rate=rate, timeout=timeout, one_way=one_way), seed=s, drain=timeout + 1.0)
        # requests counted over [warmup, end + drain): rate per client-second.
        reqs.append(m["requests"] / (100 * (100.0 + timeout + 1.0)))
        lat.append(m["latency_mean"])
        empty.append(m["empty_fraction"])
    within_t(reqs, th["requests_per_second"], 0.01)
    within_t(lat, th["latency_mean"], 0.02)
    within_t(empty, th["empty_fraction"], 0.05)


def test_long_polling_holds_one_connection_per_client():
    m = run(long_cfg(rate=0.01, timeout=30.0))
    # At such a low rate nearly every client's poll is held at once.
    assert 95 <= m["connections_max"] <= 100
    assert m["server_memory_max"] == m["connections_max"] * 16 * 1024


# ---------------------------------------------------------------------- SSE --

def sse_cfg(clients=100, rate=1.0, one_way=0.03, service="1ms", duration=100.0, warmup=2.0, **sse):
    # A warm-up of 2 s: clients first connect in [0, 1 s); updates created
    # before a stream opens are replayed later, with a longer latency.
    return {"pattern": "sse", "duration": duration, "warmup": warmup,
            "clients": {"count": clients},
            "network": {"latency": one_way},
            "server": {"cores": 1, "service_time": service},
            "sse": sse,
            "workload": {"event_rate": rate}}


def test_sse_latency_is_one_way_plus_service():
    # Frames of all clients form one Poisson stream (100/s) into a one-core
    # server with a constant 1 ms service: M/D/1, so latency = one way +
    # response time of M/D/1 (1 ms + a 56 us queueing delay at rho = 0.1).
    one_way, d = 0.03, 0.001
    expected = one_way + theory.md1(100.0, d)["response"]
    lat = []
    for s in range(6):
        m = run(sse_cfg(one_way=one_way, service=d), seed=s, drain=1.0)
        lat.append(m["latency_mean"])
        assert m["requests"] == 0  # the one request per client was sent at t = 0, before the window
        assert m["missed"] == 0
    within_t(lat, expected, 0.002)
    m = run(sse_cfg(rate=0.01, one_way=one_way, service=d), drain=1.0)
    # At 1 update/s in all, almost none queue: the median is exactly one way + service.
    assert m["latency_p50"] == pytest.approx(one_way + d, abs=1e-9)


@pytest.mark.parametrize("resume", [True, False])
def test_sse_requests_are_clients_plus_reconnects(resume):
    # No warm-up: the window holds each client's first request.
    m = run(sse_cfg(connection_lifetime={"dist": "exponential", "mean": "10s"}, retry="1s",
                    resume=resume, warmup=0.0))
    assert m["reconnects"] > 500  # ~100 clients x 100 s / 11 s
    assert m["requests"] == 100 + m["reconnects"]
    if resume:
        assert m["missed"] == 0
    else:
        # Lost: updates created while a stream is down (about 1 s retry + one
        # RTT out of every ~11 s).
        assert 0.05 < m["missed"] / m["updates_created"] < 0.15


def test_sse_resume_with_offline_clients_loses_nothing():
    cfg = sse_cfg(duration=60.0, retry="0s")
    cfg["workload"].update({"online_time": {"dist": "exponential", "mean": "5s"},
                            "offline_time": {"dist": "exponential", "mean": "2s"}})
    cfg["sse"]["resume"] = True
    m = run(cfg, drain=30.0)
    assert m["missed"] == 0
    assert m["duplicates"] == 0
    assert m["updates_delivered"] == m["updates_created"]


# --------------------------------------------------------------------- push --

def test_push_slow_client_drops_match_mm1k():
    # Each client: Poisson updates at 1/s, exponential processing with mean
    # 0.8 s, 2 waiting slots: M/M/1/K with K = 3, P(block) = 0.1734.
    # 100 clients x 150 s = 15,000 arrivals per replication (binomial sd
    # 0.003; the queue makes drops of one client positively correlated, so
    # replications, not the binomial formula, set the interval).
    lam, mean_s, buffer = 1.0, 0.8, 2
    expected = theory.mm1k(lam, 1 / mean_s, buffer + 1)["p_block"]
    fracs = []
    for s in range(8):
        sim, model = build({"pattern": "push", "duration": 150.0, "warmup": 20.0,
                            "clients": {"count": 100, "buffer": buffer,
                                        "service_time": {"dist": "exponential", "mean": mean_s}},
                            "network": {"latency": "10ms"},
                            "server": {"cores": 1, "service_time": 0},
                            "workload": {"event_rate": lam}}, seed=s)
        sim.run()
        fracs.append(model.client_drops / model.client_arrivals)
        m = model.metrics()
        assert m["missed"] >= model.client_drops - 100  # drops of updates created in the window
    within_t(fracs, expected, 0.05)


def test_push_offline_clients_miss_updates():
    # Online 80% of the time (exp 8 s on, 2 s off): about 20 % of the updates
    # find the client offline and are lost.
    cfg = {"pattern": "push", "duration": 200.0, "clients": {"count": 50},
           "network": {"latency": "10ms"}, "server": {"service_time": 0},
           "workload": {"event_rate": 1.0, "online_time": {"dist": "exponential", "mean": "8s"},
                        "offline_time": {"dist": "exponential", "mean": "2s"}}}
    m = run(cfg)
    frac = m["missed"] / m["updates_created"]
    # 10,000 updates but correlated through the on/off periods: allow +/-0.04.
    assert abs(frac - 0.2) < 0.04


# -------------------------------------------------------- shared behaviour --

@pytest.mark.parametrize("pattern", ["short_polling", "long_polling", "sse", "push"])
def test_common_random_numbers_and_ledger(pattern):
    cfg = {"pattern": pattern, "duration": 30.0, "clients": {"count": 50},
           "network": {"latency": "20ms"}, "server": {"service_time": "100us"},
           "workload": {"event_rate": 0.5, "job_rate": 0.05,
                        "job_duration": {"dist": "exponential", "mean": "3s"}}}
    m1 = run(cfg)
    m2 = run(cfg)
    assert m1 == pytest.approx(m2, nan_ok=True)  # same config and seed: same results
    assert m1["sent"] == m1["delivered"] + m1["dropped"] + m1["in_flight"]
    # The update stream does not depend on the pattern.
    ref = run({**cfg, "pattern": "push"})
    assert m1["updates_created"] == ref["updates_created"]
    assert m1["jobs"] > 0
    if pattern in ("sse", "push"):
        assert m1["polls_per_job"] == 0
    else:
        assert m1["polls_per_job"] >= 1


def test_jobs_polls_per_job_short_polling():
    # A job of length J is noticed by the first poll after it ends; the polls
    # sent from submission to notice are about J / T + 1/2 + ... : with
    # exponential J of mean 5 s and T = 1 s, E[polls] = E[J]/T + 1/2 +- 0.5.
    cfg = {"pattern": "short_polling", "duration": 300.0, "clients": {"count": 50},
           "network": {"latency": "1ms"}, "server": {"service_time": 0},
           "workload": {"event_rate": 0, "job_rate": 0.02,
                        "job_duration": {"dist": "exponential", "mean": "5s"}}}
    m = run(cfg)
    assert m["jobs"] > 200
    assert 5.0 < m["polls_per_job"] < 6.5
    assert 0.3 < m["job_notify_delay"] < 0.7  # T/2 + one way


@pytest.mark.parametrize("pattern", ["sse", "push"])
def test_streams_refuse_keepalive_false(pattern):
    # A stream is one long-lived connection: keep-alive (reuse for a later
    # request) has no meaning there, so false is refused, naming the key.
    with pytest.raises(ConfigError) as err:
        build({"pattern": pattern, "network": {"handshake": "tcp", "keepalive": False}})
    assert err.value.key == "network.keepalive"


def test_jitter_larger_than_interval_is_rejected():
    with pytest.raises(ConfigError) as err:
        commsim.load({"pattern": "short_polling",
                      "short_polling": {"interval": "1s", "jitter": "2s"}})
    assert err.value.key == "short_polling.jitter"


def test_updates_created_identical_across_patterns_at_the_end():
    # Short polling draws updates lazily; the window's last updates (after the
    # last polls) must still be counted, exactly as in the other patterns.
    counts = set()
    for pattern in ("short_polling", "long_polling", "sse", "push"):
        m = run({"pattern": pattern, "duration": 7.3, "clients": {"count": 300},
                 "network": {"latency": "20ms"}, "server": {"service_time": 0},
                 **({"short_polling": {"interval": "5s"}} if pattern == "short_polling" else {}),
                 "workload": {"event_rate": 2.0}})
        counts.add(m["updates_created"])
    assert len(counts) == 1


@pytest.mark.parametrize("pattern", ["short_polling", "long_polling", "sse", "push"])
def test_broadcasts_reach_every_client(pattern):
    # Broadcasts only (no per-client updates): each one is an update for each
    # of the 40 clients, and with a drain every one of them arrives once.
    m = run({"pattern": pattern, "duration": 30.0, "warmup": 2.0, "clients": {"count": 40},
             "network": {"latency": "10ms"}, "server": {"service_time": 0},
             **({"long_polling": {"timeout": "5s"}} if pattern == "long_polling" else {}),
             "workload": {"event_rate": 0, "broadcast_rate": 0.5}}, drain=3.0)
    assert m["updates_created"] > 0 and m["updates_created"] % 40 == 0
    assert m["updates_delivered"] == m["updates_created"]
    assert m["missed"] == 0 and m["duplicates"] == 0


@pytest.mark.parametrize("pattern", ["sse", "push"])
def test_a_client_never_holds_two_connections(pattern):
    """Clients that go offline for ~20 ms, less than the 50 ms a connect
    takes to be answered, come back while their first connect is in flight;
    the server must still count at most one connection per client."""
    row = commsim.run({"pattern": pattern, "duration": 20, "warmup": 2,
                       "clients": {"count": 100}, "network": {"latency": "25ms"},
                       "workload": {"event_rate": "1/s",
                                    "online_time": {"dist": "exponential", "mean": "1s"},
                                    "offline_time": {"dist": "exponential", "mean": "20ms"}}}
                      ).runs.iloc[0]
    assert row["reconnects"] > 100  # the race is exercised
    assert row["connections_max"] <= 100


def test_push_process_time_is_arrival_plus_mm1_sojourn_and_delivery_ratio():
    # Push to clients that process updates in exponential time 0.5 s with an
    # unbounded buffer: each client is M/M/1 with lambda = 1, mu = 2, so
    # time-to-process = time-to-arrive + the M/M/1 sojourn 1/(mu - lambda) = 1 s,
    # while latency (time-to-arrive) stays one way + service.  Means of
    # correlated samples (a client's queue): 6 independent replications, the
    # 99 % t interval must contain it and be narrower than 5 %.
    def one(seed):
        return run({"pattern": "push", "duration": 200, "warmup": 20,
                    "clients": {"count": 50, "service_time": {"dist": "exponential", "mean": 0.5},
                                "buffer": 100000},
                    "network": {"latency": 0.03}, "server": {"cores": 50, "service_time": 0},
                    "workload": {"event_rate": 1.0}}, seed=seed, drain=60)
    ms = [one(s) for s in range(1, 7)]
    for m in ms:
        assert m["latency_mean"] == pytest.approx(0.03, rel=1e-9)
        assert m["delivery_ratio"] == 1.0
    within_t([m["process_time_mean"] - m["latency_mean"] for m in ms], 1.0, 0.05)
    # polling clients have no processing queue: NaN; the ratio is still defined
    m = run(short_cfg(clients=20, duration=10.0), drain=3)
    assert math.isnan(m["process_time_mean"])
    assert m["delivery_ratio"] == 1.0


def test_delivery_ratio_counts_what_offline_push_clients_miss():
    m = run({"pattern": "push", "duration": 50, "warmup": 5, "clients": {"count": 100},
             "workload": {"event_rate": "1/s",
                          "online_time": {"dist": "exponential", "mean": "3s"},
                          "offline_time": {"dist": "exponential", "mean": "1s"}}}, drain=2)
    assert m["delivery_ratio"] == pytest.approx(m["updates_delivered"] / m["updates_created"])
    # about a quarter of the time offline: about a quarter missed
    assert 0.65 < m["delivery_ratio"] < 0.85
