"""websocket behind a topology (issue 10, item 3; commsim/patterns/websocket_cluster.py).

Exact outcomes where the model fixes them (who is reset by a crash, TLS CPU
per reconnect, heartbeats on the instance holding the connection, zombie
connections getting no reset and finding out on their own schedule), a
Poisson count within 4 standard deviations where it is random (updates
missed during the outage), the ledger, refusals."""

from __future__ import annotations

import math

import pytest
from helpers import balanced, same, resolved

from commsim.errors import ConfigError
from commsim.experiment.runner import simulate

L = 0.01        # one-way latency
TLS = 0.001     # TLS server CPU per handshake
SVC = 50e-6     # server CPU per message


def base(clients=400, duration=20.0, topology=None, **ws):
    raw = {"pattern": "websocket", "duration": duration, "warmup": 2.0, "seed": 3,
           "clients": {"count": clients},
           "network": {"latency": L, "handshake": "tls1.3", "tls_server_cpu": TLS},
           "server": {"cores": clients, "service_time": SVC},
           "workload": {"event_rate": 1.0},
           "websocket": {"ping_interval": 5.0, "idle_timeout": 60.0, "retry": 1.0, **ws}}
    if topology is not None:
        raw["topology"] = topology
    return raw


def run(raw, seed=1):
    return simulate(resolved(raw), seed)




def test_default_topology_is_the_plain_pattern_bit_for_bit():
    plain = run(base())
    one = run(base(topology={"servers": 1, "balancer": "least_connections"}))
    assert type(one.model).__name__ == "WebSocket"
    same(plain.metrics, one.metrics)


def test_heartbeats_run_on_the_instance_holding_the_connection():
    """Cores to spare (no CPU wait): 4 instances do exactly the plain
    server's heartbeat work, split by their clients (round robin: 100 each)."""
    plain = run(base()).metrics
    r = run(base(topology={"servers": 4}))
    m = r.metrics
    assert m["heartbeat_cpu_s"] == pytest.approx(plain["heartbeat_cpu_s"], rel=1e-9)
    assert m["heartbeat_bytes"] == plain["heartbeat_bytes"] > 0
    per = [s.cpu.account.by_purpose.get("heartbeat", 0.0) for s in r.model.cluster.servers]
    assert sum(per) == pytest.approx(m["heartbeat_cpu_s"], rel=1e-12)
    # each instance's share is its 100 clients' pings and pongs: 1/4 up to the
    # clients' start phases (each client's ping count differs by at most one)
    for x in per:
        assert abs(x - m["heartbeat_cpu_s"] / 4) <= 100 * 2 * 20e-6 + 1e-12
    assert [s.active for s in r.model.cluster.servers] == [100] * 4


def test_crash_resets_exactly_the_instances_clients_who_reconnect_with_websocket_retry():
    """Crash of one of 4: its 100 clients (and nobody else) are reset and
    reconnect once, websocket.retry later, on survivors (100 handshakes, 100
    x TLS CPU, none on the dead instance).  A reset client has no stream for
    D = L (reset) + retry + 2 RTT (TCP + TLS 1.3) + TLS + L (connect) +
    service; its updates are Poisson (1/s), so missed ~ Poisson(100 D):
    within 4 standard deviations.  Compared with retry 3 s the outage grows
    by 2 s per client."""
    out = {}
    for retry in (1.0, 3.0):
        r = run(base(retry=retry, topology={"servers": 4, "crash_at": [10.0],
                                            "crash_server": 1}))
        m = r.metrics
        servers = r.model.cluster.servers
        assert m["crashes"] == 1 and m["crash_resets"] == 100
        assert m["reconnects"] == 100 and m["handshakes"] == 100
        assert m["handshake_cpu_s"] == pytest.approx(100 * TLS, abs=1e-9)
        assert servers[1].cpu.account.by_purpose.get("handshake", 0.0) == 0.0
        assert sum(s.active for s in servers) == 400 and servers[1].active == 0
        d = L + retry + 4 * L + TLS + L + SVC
        assert abs(m["missed"] - 100 * d) <= 4 * math.sqrt(100 * d), (m["missed"], 100 * d)
        out[retry] = m
        balanced(m)
    assert out[3.0]["missed"] > out[1.0]["missed"] + 100


def test_forgotten_connections_get_no_reset_and_find_out_by_their_watchdog():
    """No updates and idle_timeout 5 s < ping_interval 10 s: every connection
    is forgotten by the intermediary 5 s after it opens; the server's ping at
    open + 10 s finds it dead and the client gives up pong_timeout later
    (test_websocket's cycle).  A crash at 7 s (all instance 1's connections
    already forgotten) resets nobody: its clients learn at the same instants
    as without the crash and reconnect to the survivor, so the counts are
    those of the run without a crash.  Without heartbeats they stay zombies."""
    ws = dict(ping_interval=10.0, idle_timeout=5.0, pong_timeout=2.0, backoff=1)
    raw = {**base(clients=40, duration=40.0, **ws), "workload": {"event_rate": 0.0}}
    calm = run({**raw, "topology": {"servers": 2}}).metrics
    crash = run({**raw, "topology": {"servers": 2, "crash_at": [7.0],
                                     "crash_server": 1}}).metrics
    assert crash["crashes"] == 1 and crash["crash_resets"] == 0
    for k in ("reconnects", "idle_drops", "handshakes"):
        assert crash[k] == calm[k] > 0, k
    balanced(crash)
    ws["ping_interval"] = None
    raw = {**base(clients=40, duration=40.0, **ws), "workload": {"event_rate": 0.0}}
    m = run({**raw, "topology": {"servers": 2, "crash_at": [7.0], "crash_server": 1}}).metrics
    assert m["crash_resets"] == 0 and m["reconnects"] == 0
    balanced(m)


def test_ledger_balances_under_random_crashes_restarts_loss_and_scale_out():
    raw = base(clients=300, duration=30.0, ping_interval=3.0, idle_timeout=5.0,
               topology={"servers": 3, "mtbf": 5.0, "mttr": 2.0, "balancer": "consistent_hash",
                         "scale_out_at": 15.0, "scale_out_servers": 2, "reconnect_jitter": 0.5})
    raw["network"]["loss"] = 0.05
    raw["network"]["max_retries"] = 1
    raw["workload"].update({"online_time": {"dist": "exponential", "mean": 10.0},
                            "offline_time": {"dist": "exponential", "mean": 3.0}})
    m = run(raw).metrics
    assert m["crashes"] > 3 and m["crash_resets"] > 0 and m["dropped"] > 0
    assert m["servers_end"] == 5 and m["duplicates"] == 0
    balanced(m)


def test_same_seed_same_results_and_jobs_are_refused():
    raw = base(clients=200, duration=10.0, topology={"servers": 3, "mtbf": 3.0, "mttr": 1.0,
                                                      "balancer": "random"})
    same(run(raw).metrics, run(raw).metrics)
    raw["workload"]["job_rate"] = 0.1
    with pytest.raises(ConfigError, match="workload.job_rate"):
        resolved(raw)
