"""Composition (issue 10, item 3): SSE and push behind N instances and a load
balancer (commsim/nodes/cluster.py, commsim/patterns/notifications/clustered.py).

Exact outcomes where the model fixes them (round robin's spread, who is
reset by a crash, TLS CPU per reconnect), a Poisson count within 4 standard
deviations where it is random (updates missed without resume), the ledger
under crashes, loss and restarts, and refusals."""

from __future__ import annotations

import math

import pytest
from helpers import balanced, resolved

from commsim.errors import ConfigError
from commsim.experiment.runner import simulate

L = 0.01        # one-way latency
TLS = 0.001     # TLS server CPU per handshake
SVC = 50e-6     # server CPU per message


def base(pattern="sse", clients=400, duration=20.0, **topology):
    raw = {"pattern": pattern, "duration": duration, "warmup": 2.0, "seed": 3,
           "clients": {"count": clients},
           "network": {"latency": L, "handshake": "tls1.3", "tls_server_cpu": TLS},
           "server": {"cores": 8, "service_time": SVC},
           "workload": {"event_rate": 1.0}}
    if pattern == "sse":
        raw["sse"] = {"retry": 1.0}
    if topology:
        raw["topology"] = topology
    return raw


def run(raw, seed=1, **sections):
    return simulate(resolved(raw, **sections), seed)



def test_default_topology_is_the_plain_pattern_bit_for_bit():
    for pattern in ("sse", "push"):
        plain = run(base(pattern)).metrics
        one = run(base(pattern, servers=1, balancer="least_connections")).metrics
        assert type(run(base(pattern, servers=1)).model).__name__ in ("ServerSentEvents", "Push")
        assert set(plain) == set(one)
        for k, v in plain.items():
            assert v == one[k] or (isinstance(v, float) and math.isnan(v) and math.isnan(one[k])), k


def test_round_robin_spreads_clients_evenly():
    r = run(base(servers=4, balancer="round_robin"))
    assert [s.active for s in r.model.cluster.servers] == [100, 100, 100, 100]
    # least connections does the same from empty servers
    r = run(base(servers=4, balancer="least_connections"))
    assert [s.active for s in r.model.cluster.servers] == [100, 100, 100, 100]


def test_sse_crash_with_resume_reconnects_exactly_the_crashed_servers_clients():
    r = run(base(servers=4, crash_at=[10.0], crash_server=1, reconnect_jitter=2.0))
    m = r.metrics
    servers = r.model.cluster.servers
    assert m["crashes"] == 1
    # Round robin gave server 1 exactly clients/4; every one of them, and nobody else, reconnects.
    assert m["crash_resets"] == 100
    assert m["reconnects"] == 100
    assert m["handshakes"] == 100  # the initial handshakes were in the warm-up
    # ... each paying one TLS handshake on a survivor, none on the dead one.
    assert m["handshake_cpu_s"] == pytest.approx(100 * TLS, abs=1e-9)
    assert servers[1].cpu.account.by_purpose.get("handshake", 0.0) == 0.0
    assert sum(s.active for s in servers) == 400 and servers[1].active == 0
    # With resume nothing is missed (Last-Event-ID replay), nothing twice.
    assert m["missed"] == 0 and m["duplicates"] == 0
    # Updates created during the outage wait for the reconnect: the storm's tail
    # is about retry + jitter (<= 1 + 2 s + set-up), far above the steady latency.
    assert 1.0 < m["latency_storm_p99"] < 3.2
    assert m["latency_p50"] < 0.05
    balanced(m)


def test_sse_crash_without_resume_misses_the_updates_of_the_outage():
    """Constant latency and CPU, cores to spare: a reset client has no stream
    from the crash for D = L (the reset) + retry + 2 RTT (TCP + TLS 1.3) +
    TLS CPU + L (the connect) + one service time (the opening response).
    Its updates are Poisson (rate 1/s), so missed ~ Poisson(100 x D):
    within 4 standard deviations."""
    clients, retry = 4000, 1.0
    raw = base(clients=clients, servers=4, crash_at=[10.0])
    raw["sse"] = {"retry": retry, "resume": False}
    m = run(raw).metrics
    assert m["crash_resets"] == clients // 4
    d = L + retry + 4 * L + TLS + L + SVC
    mean = clients // 4 * 1.0 * d
    assert abs(m["missed"] - mean) <= 4 * math.sqrt(mean), (m["missed"], mean)
    balanced(m)


def test_push_crash_loses_the_outage_and_reconnects_at_once():
    m = run(base("push", servers=4, crash_at=[10.0])).metrics
    assert m["crash_resets"] == 100 and m["reconnects"] == 100
    # push reconnects at once: outage = 6 L + TLS + service, about 6 updates lost in all
    d = 6 * L + TLS + SVC
    assert abs(m["missed"] - 100 * d) <= 4 * math.sqrt(100 * d) + 1
    balanced(m)


def test_jitter_spreads_the_storm():
    peak = {}
    for jitter in (0.0, 5.0):
        m = run(base(clients=2000, servers=4, crash_at=[10.0], reconnect_jitter=jitter,
                     timeseries_bin=0.5)).metrics
        assert m["crash_resets"] == 500
        peak[jitter] = m["reconnect_rate_peak"]
        if jitter == 0.0:  # all 500 reconnect in one instant: one bin holds them all
            assert peak[jitter] == 500 / 0.5
            assert m["handshake_cpu_peak"] == pytest.approx(500 * TLS / 0.5)
    # uniform over 5 s in 0.5 s bins: ~50 per bin, so a peak of ~2 x 60/s..
    assert peak[5.0] < peak[0.0] / 4


@pytest.mark.parametrize("pattern", ["sse", "push", "short_polling", "long_polling"])
def test_ledger_balances_under_random_crashes_restarts_loss_and_scale_out(pattern):
    raw = base(pattern, clients=300, duration=30.0, servers=3, mtbf=5.0, mttr=2.0,
               balancer="consistent_hash", scale_out_at=15.0, scale_out_servers=2)
    raw["network"]["loss"] = 0.05
    raw["network"]["max_retries"] = 1   # links give up: senders re-send
    raw["server"] = {"cores": 1, "service_time": 0.003}  # run queues to lose at crashes
    raw["workload"]["online_time"] = {"dist": "exponential", "mean": 10.0}
    raw["workload"]["offline_time"] = {"dist": "exponential", "mean": 2.0}
    r = run(raw)
    m = r.metrics
    assert m["crashes"] >= 3 and m["crash_resets"] > 0
    assert m["servers_end"] == 5
    balanced(m)
    assert m["duplicates"] == 0
    # Every assignment points at an up instance, and the counts agree.
    pins = r.model.pinned if pattern.endswith("polling") else r.model.assigned
    assigned = [s for s in pins if s is not None]
    assert all(s.up for s in assigned)
    assert sorted(s.active for s in r.model.cluster.servers) == sorted(
        sum(1 for a in assigned if a is s) for s in r.model.cluster.servers)


def test_nothing_up_backs_off_until_the_restart():
    m = run(base(servers=1, crash_at=[10.0], mttr=3.0, reconnect_backoff=0.5)).metrics
    assert m["crash_resets"] == 400
    assert m["missed"] == 0            # resume: the outage is replayed
    assert m["reconnects"] > 400       # tries while nothing was up
    assert m["latency_storm_p99"] > 3.0


def test_scale_out_new_instances_take_new_connections():
    raw = base(servers=2, balancer="least_connections", scale_out_at=8.0, scale_out_servers=2)
    raw["sse"]["connection_lifetime"] = {"dist": "exponential", "mean": 5.0}
    r = run(raw)
    new = r.model.cluster.servers[2:]
    assert all(s.active > 50 for s in new)


def test_bad_topology_keys_are_refused():
    with pytest.raises(ConfigError, match="topology.sidecar"):  # built elsewhere: test_topology_sidecar
        resolved({"pattern": "sync_async", "topology": {"servers": 2, "sidecar": "sidecar"}})
    with pytest.raises(ConfigError, match="topology.mttr"):
        resolved(base(servers=2, mttr=1.0))
    with pytest.raises(ConfigError, match="topology.crash_server"):
        resolved(base(servers=2, crash_at=[1.0], crash_server=2))
    with pytest.raises(ConfigError, match="topology.balancer"):
        resolved(base(servers=2, balancer="fastest"))
    raw = base(servers=2)
    raw["workload"]["job_rate"] = 0.1
    with pytest.raises(ConfigError, match="workload.job_rate"):
        resolved(raw)


def test_updates_during_a_slow_reopen_are_not_stranded():
    """With the survivors' CPU busy with handshakes, updates arrive between
    the reconnect reaching the server and its opening response: with resume
    they follow the replay (none waits for a later reconnect)."""
    raw = base(clients=2000, servers=4, crash_at=[10.0])
    raw["server"]["cores"] = 1
    raw["network"]["tls_server_cpu"] = 0.005
    r = run(raw)
    m = r.model
    assert r.metrics["missed"] == 0
    assert all(m.open) and not any(m.connecting)
    assert not m.backlog
    # all updates arrive but those in flight at the end (< 0.1 s of them)
    assert m.created - m.delivered < 2000 * 1.0 * 0.1


def test_short_polling_crash_resets_connections_and_loses_no_update():
    """A crash resets the kept-alive connections pinned to the instance; the
    next polls open new ones through the balancer (one TLS handshake each,
    on a survivor); updates taken by polls lost in the crashed CPU go back
    to pending, so every update is delivered by a later poll."""
    from commsim.patterns.notifications import clustered_polling as clustered

    lost = []
    orig = clustered.ClusteredPolling._poll_lost

    def spy(self, token):
        lost.append(token)
        orig(self, token)

    raw = base("short_polling", servers=4, crash_at=[10.0], crash_server=2)
    raw["short_polling"] = {"interval": 1.0}
    raw["server"] = {"cores": 1, "service_time": 0.009}  # 90 % busy: a run queue to lose
    clustered.ClusteredPolling._poll_lost = spy
    try:
        r = run(raw)
    finally:
        clustered.ClusteredPolling._poll_lost = orig
    m, model = r.metrics, r.model
    assert any(isinstance(t, tuple) for t in lost)  # items were put back
    assert m["crash_resets"] == 100 and m["handshakes"] == 100
    assert m["handshake_cpu_s"] == pytest.approx(100 * TLS, abs=1e-9)
    assert model.cluster.servers[2].cpu.account.by_purpose.get("handshake", 0.0) == 0.0
    assert [s.active for s in model.cluster.servers] == [134, 133, 0, 133]
    assert m["missed"] == 0 and m["duplicates"] == 0 and m["reconnects"] == 0
    # What is still pending at the end was created in the last two intervals.
    end = model.sim.end
    assert all(p[k] >= end - 2.0 for p in model.pending if p for k in range(0, len(p), 3))
    balanced(m)


@pytest.mark.parametrize("pattern", ["short_polling", "long_polling"])
def test_polling_refuses_per_poll_connections_behind_a_topology(pattern):
    raw = base(pattern, servers=2)
    raw["network"]["keepalive"] = False
    with pytest.raises(ConfigError, match="network.keepalive"):
        resolved(raw)


def test_long_polling_crash_resets_held_polls_and_they_re_poll_once():
    """Every online long-polling client always has a poll outstanding, so a
    crash resets all 100 of the instance's clients: each re-polls once, at
    once, through the balancer (one handshake each on a survivor), and no
    update is missed or delivered twice; a busy CPU makes the crash lose
    queued answers, whose updates go back to pending."""
    raw = base("long_polling", servers=4, crash_at=[10.0], crash_server=3)
    raw["workload"]["event_rate"] = 2.0
    raw["long_polling"] = {"timeout": 5.0}
    raw["server"] = {"cores": 1, "service_time": 0.004}
    r = run(raw)
    m, model = r.metrics, r.model
    assert m["crash_resets"] == 100 and m["handshakes"] == 100  # every one on a new connection
    # ... re-polling on the reset, except those whose answer was already on
    # the wire at the crash (a few at 4 ms per answer): they re-poll on it.
    assert 90 <= m["reconnects"] <= 100
    assert m["handshake_cpu_s"] == pytest.approx(100 * TLS, abs=1e-9)
    assert model.cluster.servers[3].cpu.account.by_purpose.get("handshake", 0.0) == 0.0
    assert m["missed"] == 0 and m["duplicates"] == 0
    assert sum(model.outstanding) == 400  # one poll each, not two
    assert [s.active for s in model.cluster.servers] == [134, 133, 133, 0]
    balanced(m)


def _rr(keepalive=True, **topology):
    raw = {"pattern": "request_response", "duration": 20.0, "warmup": 2.0, "seed": 3,
           "clients": {"count": 200, "mode": "sync",
                       "think_time": {"dist": "exponential", "mean": 0.2}},
           "network": {"latency": L, "handshake": "tls1.3", "tls_server_cpu": TLS,
                       "keepalive": keepalive},
           "server": {"cores": 1, "service_time": 0.002}}
    if topology:
        raw["topology"] = topology
    return raw


def test_request_response_default_topology_is_plain_and_crash_retries_on_survivors():
    plain = run(_rr()).metrics
    one = run(_rr(servers=1)).metrics
    assert all(v == one[k] or (v != v and one[k] != one[k]) for k, v in plain.items())
    r = run(_rr(servers=4, crash_at=[10.0], crash_server=1))
    m, model = r.metrics, r.model
    # Keep-alive: the 50 clients pinned to instance 1 open new connections on
    # survivors (the initial 200 handshakes were in the warm-up), and nobody else.
    assert m["handshakes"] == 50
    tls = sum(s.cpu.account.by_purpose.get("handshake", 0.0) for s in model.cluster.servers)
    assert tls == pytest.approx(50 * TLS, abs=1e-9)
    assert model.cluster.servers[1].cpu.account.by_purpose.get("handshake", 0.0) == 0.0
    # Requests unanswered at the crash are retried, none fails: every sync client
    # has exactly one operation outstanding at the end or is thinking.
    assert 0 < m["crash_resets"] <= 50
    assert not model.outstanding.get(1)
    assert m["crashes"] == 1
    # The dead instance worked only until the crash: 8 s of the 20 s window.
    u = [s.cpu.account.utilization() for s in model.cluster.servers]
    assert u[1] < 0.45 * max(u[0], u[2], u[3])
    balanced(m)


def test_request_response_without_keepalive_handshakes_on_the_instance_it_uses():
    r = run(_rr(keepalive=False, servers=4, crash_at=[10.0]))
    m, model = r.metrics, r.model
    # a handshake per request: TLS CPU on each instance = its requests x TLS
    for s in model.cluster.servers:
        a = s.cpu.account.by_purpose
        assert a.get("handshake", 0.0) == pytest.approx(a.get("request", 0.0) / 0.002 * TLS,
                                                        rel=0.02)
    balanced(m)


def test_topology_keys_a_pattern_does_not_use_are_refused():
    with pytest.raises(ConfigError, match="topology.reconnect_jitter"):
        resolved(base("short_polling", servers=2, reconnect_jitter=1.0))
    with pytest.raises(ConfigError, match="topology.storm_window"):
        resolved(_rr(servers=2, storm_window=5.0))
    # request_response does use the jitter: the retries spread out
    # (an operation retried after a jitter draw of up to 1 s; without jitter the
    # slowest takes a few round trips)
    a = run(_rr(servers=4, crash_at=[10.0])).model.clients.latencies.values
    b = run(_rr(servers=4, crash_at=[10.0], reconnect_jitter=1.0)).model.clients.latencies.values
    assert max(a) < 0.1 and max(b) > max(a) + 0.1


def test_long_polling_offline_clients_are_not_stranded_by_the_topology():
    """Offline periods: the held poll of a client that left stays on its
    instance (the server does not notice), as without a topology; a
    topology with a crash delivers about as much as the plain pattern."""
    def cfg(**topology):
        raw = base("long_polling", clients=300, duration=25.0, **topology)
        raw["workload"]["online_time"] = {"dist": "exponential", "mean": 5.0}
        raw["workload"]["offline_time"] = {"dist": "exponential", "mean": 1.0}
        return raw

    plain = run(cfg()).metrics
    m = run(cfg(servers=3, crash_at=[10.0])).metrics
    assert abs(m["delivery_ratio"] - plain["delivery_ratio"]) < 0.02
    balanced(m)


def test_request_response_retries_never_complete_an_operation_twice():
    """Loss beyond max_retries re-sends a chunk (possibly to another
    instance); a later crash of the first instance must not retry it again."""
    for bal in ("round_robin", "least_connections", "consistent_hash", "sticky"):
        for mode in ("sync", "async"):
            raw = _rr(servers=3, balancer=bal, mtbf=5.0, mttr=1.0)
            raw["clients"]["mode"] = mode
            raw["clients"]["rate"] = 2.0
            raw["network"]["loss"] = 0.1
            raw["network"]["max_retries"] = 1
            balanced(run(raw).metrics)  # a double completion raises in SimPy
