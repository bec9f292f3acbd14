"""Every network condition in the stateful pattern: loss with retransmission
on the client <-> balancer hop, handshakes per connection (L4 balancer, TLS
at the server), keep-alive; checked against closed forms."""

from __future__ import annotations

import math

import pytest
from helpers import resolved, within_t

from commsim.engine import Simulation
from commsim.engine.simulation import call_at
from commsim.experiment.runner import collect, simulate
from commsim.network.connection import handshake_bytes, round_trips
from commsim.patterns.stateful import StatefulModel

L, LB, S = 2e-3, 0.2e-3, 1e-3   # one way client <-> balancer, balancer <-> server, service

# No queueing anywhere (64 cores per server, 40 clients): every latency is
# the sum of the hops, the CPU work and the retransmission waits.
QUIET = {
    "pattern": "stateful", "duration": "20s", "warmup": "2s",
    "clients": {"count": 40, "mode": "sync", "think_time": {"dist": "exponential", "mean": "0.2s"}},
    "server": {"cores": 64, "service_time": "1ms"},
    "network": {"latency": "2ms"},
    "stateful": {"servers": 4, "requests_per_session": 1e9, "login_cpu": "2ms",
                 "backend_latency": "0.2ms"},
}


def config(**sections) -> dict:
    return resolved(QUIET, **sections)


def _ledger(m):
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]


def test_without_loss_every_request_takes_exactly_the_hops():
    """Control for the loss test: every client logged in during the warm-up,
    so every operation in the window is one request: 2 (L + LB) + S exactly."""
    m, _ = simulate(config(), 1)
    assert m["logins"] == 0 and m["failed_requests"] == 0
    assert m["latency_mean"] == pytest.approx(2 * (L + LB) + S, abs=1e-12)
    assert m["latency_p99"] == pytest.approx(2 * (L + LB) + S, abs=1e-12)


@pytest.mark.parametrize("p", [0.1, 0.25])
def test_loss_adds_rto_p_over_1_minus_p_per_message(p):
    """Loss p on the client's links, RTO r: each message is sent a geometric
    number of times, so it waits r * p / (1 - p) more on average and its bytes
    go on the wire 1 / (1 - p) times.  An operation is two client-link
    messages (request, response); the backend hop is lossless.  8
    replications of ~3,900 operations; the 99 % Student-t interval must hold
    the closed form and be narrower than 10 % of it.  max_retries 12: a message
    is given up on with probability p^13 (< 1e-7), so nothing fails."""
    r = 0.05
    extra, retx = [], []
    for seed in range(8):
        m, _ = simulate(config(network={"loss": p, "rto": r, "max_retries": 12}), seed)
        assert m["logins"] == 0 and m["failed_requests"] == 0 and m["dropped"] == 0
        _ledger(m)
        extra.append((m["latency_mean"] - (2 * (L + LB) + S)) / 2)
        # Every message crosses the client link once and the backend hop once
        # with the same size, so the client links' first transmissions are
        # half of the bytes sent once; retransmissions happen only there.
        once = m["bytes_total"] - m["bytes_retransmitted"]
        retx.append(m["bytes_retransmitted"] / (once / 2))
    within_t(extra, r * p / (1 - p), 0.1)
    within_t(retx, p / (1 - p), 0.1)


def test_a_message_given_up_on_fails_its_operation_and_the_client_goes_on():
    """max_retries 0 and loss 0.3: 1 - 0.7^2 = 51 % of the operations lose
    their request or their response and fail (the client's TCP gave up); sync
    clients keep working and the ledger balances.  ~3,500 operations: the
    binomial sd of the fraction is 0.0085; the tolerance 0.03 also covers the
    few operations that log in again after a lost login answer (four
    messages instead of two: measured 0.518)."""
    m, _ = simulate(config(network={"loss": 0.3, "rto": "50ms", "max_retries": 0}), 3)
    _ledger(m)
    ops = m["throughput"] * 20 + m["failed_requests"]
    assert m["failed_requests"] / ops == pytest.approx(1 - 0.7 ** 2, abs=0.03)
    assert m["dropped"] > 1000


def _one_client(**network):
    """One client, constant 1 s think time, warm-up 0: every operation is known."""
    return resolved(QUIET, duration="10.5s", warmup="0s",
                    clients={"count": 1, "mode": "sync", "think_time": "1s"},
                    network={**({"tls_server_cpu": "3ms"}  # refused without TLS
                                if str(network.get("handshake")).startswith("tls") else {}),
                             **network})


@pytest.mark.parametrize("mode", ["tcp", "tls1.2", "tls1.3"])
def test_without_keepalive_each_operation_pays_the_handshake(mode):
    """Each operation opens a connection: round_trips(mode) round trips of
    2 (L + LB) before its first message (the flights cross both hops), the TLS
    CPU on the server the balancer picked, and exactly the handshake's bytes
    on each of the two hops."""
    tls = 3e-3 if mode.startswith("tls") else 0.0
    m, _ = simulate(_one_client(handshake=mode, keepalive=False), 1)
    n_ops = m["throughput"] * 10.5
    assert n_ops == 10 and m["logins"] == 1 and m["failed_requests"] == 0
    k = round_trips(mode)
    rtt = 2 * (L + LB)
    request = k * rtt + tls + rtt + S
    login_op = request + rtt + 2e-3          # the first operation logs in first
    assert m["latency_mean"] == pytest.approx((9 * request + login_op) / 10, abs=1e-12)
    assert m["handshakes"] == m["connections_opened"] == 10
    up, down = handshake_bytes(mode)
    assert m["bytes_handshake"] == 10 * 2 * (up + down)
    assert m["server_cpu_s"] == pytest.approx(10 * (tls + S) + 2e-3, abs=1e-12)
    _ledger(m)


def test_keepalive_opens_one_connection_per_client():
    m, _ = simulate(_one_client(handshake="tls1.3", keepalive=True), 1)
    assert m["handshakes"] == m["connections_opened"] == 1
    up, down = handshake_bytes("tls1.3")
    assert m["bytes_handshake"] == 2 * (up + down)
    rtt = 2 * (L + LB)
    first = 2 * rtt + 3e-3 + 2 * rtt + 2e-3 + S   # handshake, login, request
    assert m["latency_mean"] == pytest.approx((9 * (rtt + S) + first) / 10, abs=1e-12)


def test_l4_balancer_with_keepalive_keeps_a_client_on_one_server():
    """Round robin per request breaks stateful mode (a 401 and a relogin at
    nearly every request); per kept-alive connection (L4) every request of a
    client goes to the server its connection went to: no relogin at all."""
    base = {"mode": "stateful", "balancer": "round_robin", "requests_per_session": 10}
    per_request, _ = simulate(config(stateful=base), 2)
    per_conn, _ = simulate(config(stateful=base, network={"handshake": "tcp"}), 2)
    assert per_request["relogins"] > 0.5 * per_request["logins"]
    assert per_conn["relogins"] == 0 and per_conn["failed_requests"] == 0
    # without keep-alive each operation reconnects, and round robin is back
    fresh, _ = simulate(config(stateful=base, network={"handshake": "tcp", "keepalive": False}), 2)
    assert fresh["relogins"] > 0.5 * fresh["logins"]


def test_crash_closes_the_connections_to_the_dead_server():
    """Keep-alive, sticky, no session ends, server 1 crashes at 10 s and stays
    down: exactly the clients whose connection went to it reconnect, once each,
    to a survivor; the attempts made before the balancer noticed (0.5 s) are
    refused by the dead server and fail."""
    cfg = config(duration="20s", warmup="0s",
                 stateful={"mode": "stateless", "crash_at": "10s", "crash_server": 1,
                           "mttr": None, "detect_time": "0.5s"},
                 network={"handshake": "tls1.3", "tls_server_cpu": "1ms"})
    sim = Simulation(cfg, 4)
    model = StatefulModel(sim)
    snap = {}
    call_at(sim.env, 10.0 - 1e-9, lambda _e: snap.update(
        victims={cid for cid, c in model.conns.pin.items() if c.server.index == 1}))
    sim.run()
    m = collect(sim, model)
    victims = snap["victims"]
    assert 5 <= len(victims) <= 20                  # ~40 clients over 4 servers
    assert m["handshakes"] == 40 + len(victims)     # the first connections, then one each
    moved = {cid for cid, c in model.conns.pin.items() if cid in victims}
    assert all(model.conns.pin[cid].server.index != 1 for cid in moved)
    assert all(c.server.index != 1 for c in model.conns.pin.values())
    refused = m["connections_opened"] - m["handshakes"]
    assert refused > 0 and m["failed_requests"] >= refused
    _ledger(m)


def test_everything_at_once_balances_and_is_reproducible():
    cfg = resolved(QUIET, server={"cores": 1, "service_time": {"dist": "exponential",
                                                               "mean": "5ms"}},
                   clients={"count": 80},
                   network={"loss": 0.05, "rto": "30ms", "max_retries": 2, "handshake": "tls1.2",
                            "keepalive": False, "bandwidth": "20Mbps"},
                   stateful={"mode": "stateful", "mtbf": "4s", "mttr": "1s",
                             "requests_per_session": 5, "scale_out_at": "8s"})
    a, _ = simulate(cfg, 9)
    b, _ = simulate(cfg, 9)
    clean = lambda d: {k: v for k, v in d.items() if not (isinstance(v, float) and math.isnan(v))}
    assert clean(a) == clean(b)
    _ledger(a)
    assert a["dropped"] > 0 and a["handshakes"] > 0 and a["failed_requests"] > 0
    assert a["servers_end"] == 6


def test_idle_timeout_closes_connections_idle_longer_than_tau():
    """network.idle_timeout in stateful: with zero latency a sync client's
    connection is idle for exactly its think time, so an operation pays a new
    connection (and handshake) with probability P(think > tau) = exp(-tau/m)
    independently.  5 replications of ~5,900 operations (binomial sd of a
    fraction ~0.006); the 99 % Student-t interval must hold the closed form
    and be narrower than 5 % of it.  Every close but the last per client is
    followed by a reconnect."""
    tau, mean = 0.5, 1.0
    raw = {"pattern": "stateful", "duration": 60, "warmup": 5,
           "clients": {"count": 100, "mode": "sync",
                       "think_time": {"dist": "exponential", "mean": mean}},
           "server": {"cores": 100, "service_time": 0},
           "network": {"handshake": "tcp", "idle_timeout": tau},
           "stateful": {"servers": 4, "requests_per_session": 1e9, "login_cpu": 0,
                        "backend_latency": 0}}
    fractions = []
    for seed in range(1, 6):
        m, _ = simulate(resolved(raw), seed)
        ops = m["throughput"] * 60
        assert ops > 5000 and m["failed_requests"] == 0
        assert abs(m["connections_idle_closed"] - m["handshakes"]) <= 100
        _ledger(m)
        fractions.append(m["handshakes"] / ops)
    within_t(fractions, math.exp(-tau / mean), 0.05)
    # without the timeout: one connection per client, opened at its first
    # operation (in the warm-up but for a client whose first think time
    # exceeds 5 s: P = exp(-5) = 0.7 %)
    m, _ = simulate(resolved(dict(raw, network={"handshake": "tcp"})), 1)
    assert m["handshakes"] <= 5 and "connections_idle_closed" not in m
