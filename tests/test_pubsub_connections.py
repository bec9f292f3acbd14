"""pubsub's connections to the broker through the one connection module:
network.handshake, keepalive and idle_timeout.

Every scenario is tiny and deterministic (periodic or no publishing,
constant latencies and processing), so handshake counts and bytes are exact.
"""

from __future__ import annotations

import pytest
from test_pubsub import FREE_BROKER, assert_ledgers, run

from commsim.network.connection import handshake_bytes


def one_of_each(network, **pubsub):
    """1 topic, 1 publisher, 1 subscription of 1 consumer: two connections."""
    return run(network=network, **{**FREE_BROKER, "processing_time": 0, **pubsub})


@pytest.mark.parametrize("delivery,mode", [("push", "tls1.3"), ("pull", "tls1.2"),
                                           ("push", "tcp"), ("pull", "tcp")])
def test_one_handshake_per_client_with_exact_bytes_and_broker_tls_cpu(delivery, mode):
    tls = 0.002
    tls_cpu = {"tls_server_cpu": tls} if mode.startswith("tls") else {}  # refused without TLS
    m, model = one_of_each({"latency": "10ms", "handshake": mode, **tls_cpu},
                           delivery=delivery, duration=5, arrivals="periodic", publish_rate=10)
    assert m["connections_opened"] == m["handshakes"] == 2
    up, down = handshake_bytes(mode)
    assert m["bytes_handshake"] == 2 * (up + down)
    # the broker's CPU does nothing but the TLS handshakes (its other costs are 0)
    assert m["broker_cpu_s"] == pytest.approx(2 * tls if mode.startswith("tls") else 0.0,
                                              rel=1e-12)
    assert m["processed"] > 40
    assert_ledgers(m, model)


def test_first_publish_waits_for_the_handshake():
    # periodic publishes every 1 s from t = 1 s; TLS 1.3: 2 round trips of 20 ms
    # before the first publish leaves; every later publish goes at once.
    # publish latency = time to the confirm: 2 x 10 ms (+ 40 ms for the first)
    m, _ = one_of_each({"latency": "10ms", "handshake": "tls1.3", "tls_server_cpu": 0},
                       delivery="push", duration=10.5, arrivals="periodic", publish_rate=1)
    assert m["publish_latency_mean"] == pytest.approx(0.02 + 0.04 / 10, rel=1e-9)


@pytest.mark.parametrize("delivery", ["push", "pull"])
def test_broker_restart_resets_connections_and_clients_reconnect(delivery):
    m, model = one_of_each({"latency": "10ms", "handshake": "tcp"}, delivery=delivery,
                           duration=10, publish_rate=50, broker_restart_at=3, broker_downtime=1)
    assert m["broker_restarts"] == 1
    # each client: once at start, once after the restart
    assert m["connections_opened"] == m["handshakes"] == 4
    up, down = handshake_bytes("tcp")
    assert m["bytes_handshake"] == 4 * (up + down)
    assert_ledgers(m, model)


def test_consumer_restart_reconnects():
    m, model = one_of_each({"latency": "10ms", "handshake": "tcp"}, delivery="push",
                           duration=10, publish_rate=50, crash_at=3, restart_after=1)
    assert m["consumer_crashes"] == 1
    assert m["handshakes"] == 3  # publisher 1, consumer 2
    assert_ledgers(m, model)


def test_pull_without_keepalive_opens_a_connection_per_publish_fetch_and_commit():
    # Zero latency: a handshake and its request happen at the same instant, so
    # the window counts both alike.
    m, model = one_of_each({"handshake": "tcp", "keepalive": False}, delivery="pull",
                           duration=5, publish_rate=20)
    sim = model.sim
    requests = sum(sim.bytes.messages(k) for k in ("publish", "fetch", "commit"))
    assert requests > 100
    assert m["connections_opened"] == m["handshakes"] == requests
    up, down = handshake_bytes("tcp")
    assert m["bytes_handshake"] == requests * (up + down)
    assert_ledgers(m, model)


def test_idle_push_consumer_is_closed_and_reconnects_every_timeout():
    # Nothing is published: the consumer's connection opens at 2 d = 20 ms,
    # idles, is closed tau = 1 s later and reopened at once: opens complete at
    # 0.02 + 1.02 k (11 of them before 10.5 s), closes at 1.02 (k + 1) (10).
    m, model = one_of_each({"latency": "10ms", "handshake": "tcp", "idle_timeout": "1s"},
                           delivery="push", duration=10.5, publish_for=0)
    assert m["handshakes"] == m["connections_opened"] == 11
    assert m["connections_idle_closed"] == 10
    assert_ledgers(m, model)


def test_idle_publisher_pays_a_handshake_per_publish():
    # Publishes every 2 s (from t = 2 s) with tau = 1 s: each finds its
    # connection closed and opens a new one (5 publishes in 10.5 s); each is
    # confirmed 40 ms after its publish time and its connection closed 1 s
    # later: at 3.04, 5.04, 7.04, 9.04 (11.04 is after the end).  The pull
    # consumer always has a fetch held or in flight, so it never idles.
    m, model = one_of_each({"latency": "10ms", "handshake": "tcp", "idle_timeout": "1s"},
                           delivery="pull", duration=10.5, arrivals="periodic",
                           publish_rate=0.5)
    assert m["published"] == 5
    assert m["handshakes"] == 1 + 5
    assert m["connections_idle_closed"] == 4
    assert m["processed"] == 5
    assert_ledgers(m, model)


@pytest.mark.parametrize("delivery", ["push", "pull"])
def test_lossy_handshakes_are_resent_and_everything_balances(delivery):
    m, model = run(duration=10, network={"latency": "5ms", "handshake": "tls1.3", "loss": 0.2,
                                         "max_retries": 1, "idle_timeout": "300ms"},
                   delivery=delivery, publishers=2, subscribers=2, publish_rate=5,
                   broker_restart_at=4, broker_downtime=0.5)
    assert m["dropped"] > 0 and m["handshakes"] >= 8
    assert m["processed"] > 100
    assert_ledgers(m, model)


def test_defaults_add_no_connection_metrics():
    m, _ = run(duration=1)
    assert "handshakes" not in m and "connections_idle_closed" not in m
