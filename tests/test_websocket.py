"""The websocket pattern against its closed forms.

Tolerances: heartbeats are periodic from each connection's opening, so with
one core per client (no CPU wait) the pings and pongs in the window form a
lattice and their count, bytes and CPU are exact.  Idle drops without
heartbeats: each client's updates are Poisson (rate lambda, a thinning of the
shared Poisson stream, so independent across clients); a connection dies at
the first silence of length tau, whose time from the opening T has
E[T] = (e^(lambda tau) - 1)/lambda and Var[T] = (e^(2 lambda tau) - 1 -
2 lambda tau e^(lambda tau))/lambda^2 (renewal argument on the gaps; checked
by Monte Carlo to 0.01 %).  The mean of n independent lifetimes is compared
within 4 standard errors (two-sided miss probability 6e-5).
"""

from __future__ import annotations

import math

import pytest

import commsim
from commsim.engine import Simulation
from commsim.errors import ConfigError
from commsim.patterns import registry

D = 0.02


def run(cfg: dict, seed: int = 1) -> dict:
    config = commsim.load(cfg).points[0].config
    sim = Simulation(config, seed)
    model = registry()["websocket"].model(sim)
    sim.run()
    return model.metrics()


def cfg(clients=100, duration=100.0, warmup=2.0, rate=0.1, network=None, **ws):
    return {"pattern": "websocket", "duration": duration, "warmup": warmup,
            "clients": {"count": clients},
            "server": {"cores": clients, "service_time": 0},
            "network": {"latency": D, **(network or {})},
            "workload": {"event_rate": rate}, "websocket": ws}


def test_heartbeat_bytes_and_cpu_are_exact_and_nothing_drops():
    # interval 10 s < idle timeout 60 s: every connection stays alive.
    # bytes = clients x window / interval x (ping + pong) = 100 x 10 x 8.
    m = run(cfg(ping_interval="10s", idle_timeout="60s", ping_size="2B", pong_size="6B",
                heartbeat_cpu="20us"))
    assert m["heartbeat_bytes"] == 100 * (100 / 10) * (2 + 6)
    assert m["heartbeat_cpu_s"] == pytest.approx(100 * 10 * 2 * 20e-6, rel=1e-9)
    assert m["idle_drops"] == 0 and m["reconnects"] == 0
    assert m["missed"] == 0 and m["updates_delivered"] == m["updates_created"] > 900


def test_no_heartbeats_idle_drops_at_the_rate_the_timeout_implies():
    # lambda tau = 0.1: every connection dies once (no heartbeat: the client
    # never learns, a zombie), after a mean (e^0.1 - 1)/0.01 = 10.517 s.
    lam, tau, n = 0.01, 10.0, 1000
    m = run(cfg(clients=n, duration=300.0, warmup=1.0, rate=lam, ping_interval=None,
                idle_timeout=tau))
    assert m["idle_drops"] == n
    x = lam * tau
    mean = (math.exp(x) - 1) / lam
    var = (math.exp(2 * x) - 1 - 2 * x * math.exp(x)) / lam ** 2
    assert abs(m["idle_lifetime_mean"] - mean) < 4 * math.sqrt(var / n)
    assert m["reconnects"] == 0 and m["heartbeat_bytes"] == 0
    # after the drop every update of the client is lost
    assert m["missed"] > 0.9 * (m["updates_created"] - n * mean * lam)


def test_heartbeats_slower_than_the_timeout_drop_every_connection():
    # No updates: a connection dies tau after opening; the ping due at
    # open + I finds it dead, the client gives up pong_timeout later, waits
    # retry (backoff 1) and reconnects: cycle = I + pong_timeout + retry + d.
    n, interval, tau, pt, retry = 100, 10.0, 5.0, 2.0, 1.0
    cycle = interval + pt + retry + D
    duration = 20 * cycle
    m = run(cfg(clients=n, duration=duration, rate=0.0, ping_interval=interval,
                idle_timeout=tau, pong_timeout=pt, retry=retry, backoff=1))
    assert m["idle_lifetime_mean"] == pytest.approx(tau, rel=1e-9)
    assert abs(m["reconnects"] - n * duration / cycle) <= n
    assert abs(m["idle_drops"] - n * duration / cycle) <= n


def test_backoff_grows_the_reconnect_wait():
    # Same cycle with backoff 2 from 1 s, capped at 4 s: waits 1, 2, 4, 4, ...
    # (no connection ever proves healthy), so fewer reconnects than backoff 1.
    base = dict(clients=50, duration=300.0, rate=0.0, ping_interval="10s", idle_timeout="5s",
                pong_timeout="2s", retry="1s", retry_max="4s")
    flat = run(cfg(backoff=1, **base))
    grown = run(cfg(backoff=2, **base))
    n_flat = 300 / (10 + 2 + 1 + D)
    n_grown = 300 / (10 + 2 + 4 + D)
    assert abs(flat["reconnects"] - 50 * n_flat) <= 50
    assert abs(grown["reconnects"] - 50 * n_grown) <= 2 * 50


def test_ledger_balances_under_loss_handshakes_and_offline_clients():
    network = {"loss": 0.1, "max_retries": 1, "handshake": "tls1.3"}
    m = run({**cfg(clients=100, duration=60.0, rate=0.2, network=network,
                   ping_interval="5s", idle_timeout="8s"),
             "workload": {"event_rate": "0.2/s",
                          "online_time": {"dist": "exponential", "mean": "20s"},
                          "offline_time": {"dist": "exponential", "mean": "5s"}}})
    assert m["dropped"] > 0
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]
    assert m["handshakes"] > 100 and m["handshake_cpu_s"] > 0
    assert m["duplicates"] == 0


def test_bad_keys_are_refused():
    with pytest.raises(ConfigError) as err:
        commsim.load(cfg(retry="10s", retry_max="1s"))
    assert err.value.key == "websocket.retry_max"
    with pytest.raises(ConfigError) as err:
        commsim.load(cfg(network={"handshake": "tcp", "keepalive": False}))
    assert err.value.key == "network.keepalive"
    with pytest.raises(ConfigError) as err:
        commsim.load(cfg(backoff=0.5))
    assert err.value.key == "websocket.backoff"
