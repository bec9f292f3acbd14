"""Validation of the pubsub pattern against the issue's closed forms
(commsim.theory, "pubsub" block), the fan-out byte count and the ledgers."""

from __future__ import annotations

import pytest

from commsim import theory
from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate

FREE_BROKER = {"broker_cpu_per_message": 0, "broker_cpu_per_request": 0}


def run(duration=20, warmup=0, seed=1, network=None, **pubsub):
    cfg = {"pattern": "pubsub", "duration": duration, "warmup": warmup, "pubsub": pubsub}
    if network:
        cfg["network"] = network
    exp = load(cfg)
    result = simulate(exp.points[0].config, seed)
    return result.metrics, result.model


def assert_ledgers(m, model=None):
    # Message copies: every copy owed is processed, missed or still waiting.
    assert m["copies"] == m["processed"] + m["missed"] + m["backlog"]
    # Link messages: sent == delivered + dropped + in_flight.
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]
    assert m["duplicates"] <= m["redeliveries"] or model is None or model.mode == "direct"
    if model is not None and model.mode == "push":
        # The depth counter agrees with the queues it summarises.
        for sub in model.subs:
            held = len(sub.ready) + len(sub.retry) + sum(len(c.unacked) for c in sub.consumers)
            assert sub.depth == held


# ---------------------------------------------------------------- prefetch --
@pytest.mark.parametrize("prefetch", [1, 13, 26])
def test_prefetch_utilization_matches_worked_example(prefetch):
    # RabbitMQ's worked example: 50 ms to the consumer, 4 ms of work, 50 ms
    # for the ack; the queue never empties (a 10k backlog, ~250/s consumed).
    # Everything is deterministic, so the only error is the window edge: at
    # most one 104 ms cycle of prefetch x 4 ms busy time out of 20 s, i.e.
    # < 26 x 4 ms / 20 s = 0.5% absolute; tolerance 0.5% absolute.
    m, model = run(duration=20, warmup=2, delivery="push", prefetch=prefetch, backlog=10000,
                   publish_for=0, processing_time="4ms", deliver_latency="50ms",
                   ack_latency="50ms", **FREE_BROKER)
    expected = theory.prefetch_utilization(prefetch, 0.004, 0.05, 0.05)
    assert expected == pytest.approx({1: 4 / 104, 13: 0.5, 26: 1.0}[prefetch])
    assert m["consumer_utilization"] == pytest.approx(expected, abs=0.005)
    assert_ledgers(m, model)


def test_prefetch_throughput_bound_with_random_processing():
    # With exponential processing the bound p / (s + RTT) still caps the
    # throughput at low prefetch (the consumer idles waiting for messages):
    # prefetch 2: 2 / 0.104 = 19.2/s.  ~400 messages in 20 s; the count is
    # nearly deterministic (each slot cycles every 100 ms + Exp(4 ms)), so
    # 3% is generous.
    m, _ = run(duration=20, warmup=2, delivery="push", prefetch=2, backlog=10000, publish_for=0,
               processing_time={"dist": "exponential", "mean": "4ms"}, deliver_latency="50ms",
               ack_latency="50ms", **FREE_BROKER)
    assert m["throughput"] == pytest.approx(2 / 0.104, rel=0.03)


# -------------------------------------------------------------------- pull --
PULL = dict(delivery="pull", arrivals="periodic", message_size=100, processing_time=0,
            **FREE_BROKER)


@pytest.mark.parametrize("min_bytes,max_wait,one_way", [
    (5000, 1.0, 0.0),    # B/r = 0.5 s < W: wait B/r (the issue's form, rtt = 0)
    (5000, 0.2, 0.0),    # W < B/r: wait W
    (5000, 1.0, 0.05),   # bytes produced during the round trip count: hold B/r - rtt
    (50000, 0.3, 0.05),  # B/r = 5 s > W: every fetch waits W
])
def test_pull_fetch_wait(min_bytes, max_wait, one_way):
    # Producer: 100 msgs/s x 100 B = 10 kB/s, periodic.  Discreteness shifts
    # a hold by less than one inter-arrival gap (10 ms); tolerance 10 ms.
    rate = 100
    m, model = run(duration=30, warmup=2, publish_rate=rate, fetch_min_bytes=min_bytes,
                   fetch_max_wait=max_wait, deliver_latency=one_way, ack_latency=one_way, **PULL)
    th = theory.pull_fetch(rate * 100, min_bytes, max_wait, 2 * one_way,
                           backlog_bytes=rate * 100 * 2 * one_way)
    assert m["fetch_hold_mean"] == pytest.approx(th["hold"], abs=0.01)
    assert m["fetch_latency_mean"] == pytest.approx(th["fetch_latency"], abs=0.01)
    if one_way == 0:
        # The issue's form min(B / r, W) + rtt holds as written when rtt = 0.
        issue = min(min_bytes / (rate * 100), max_wait)
        assert m["fetch_latency_mean"] == pytest.approx(issue, abs=0.01)
    assert m["empty_fetches"] == 0
    assert_ledgers(m, model)


def test_pull_idle_topic_waits_full_max_wait():
    # No publishing: every fetch is held the full fetch_max_wait and comes back
    # empty; latency = W + rtt (+ 10 us broker CPU per fetch request).  Exact.
    m, _ = run(duration=30, warmup=2, delivery="pull", publish_for=0, fetch_max_wait="500ms",
               deliver_latency="50ms", ack_latency="50ms")
    th = theory.pull_fetch(0.0, 1, 0.5, 0.1)
    assert th["fetch_latency"] == pytest.approx(0.6)
    assert m["fetch_hold_mean"] == pytest.approx(0.5, abs=1e-9)
    assert m["fetch_latency_mean"] == pytest.approx(0.6, abs=1e-4)
    assert m["fetches"] == m["empty_fetches"] > 0


# ----------------------------------------------------------------- fan-out --
@pytest.mark.parametrize("mode", ["push", "pull", "direct"])
@pytest.mark.parametrize("subscribers", [1, 5])
def test_fanout_bytes(mode, subscribers):
    # Publishing stops at 8 s and the run lasts 12 s, so every copy is
    # delivered and processed inside the window: counts are exact.
    header = 64
    m, model = run(duration=12, delivery=mode, subscribers=subscribers, publish_for=8,
                   publish_rate=50, message_size={"dist": "uniform", "low": 100, "high": 3000},
                   header=header, processing_time="1ms", deliver_latency="20ms",
                   ack_latency="20ms", publish_latency="20ms")
    assert m["backlog"] == 0 and m["missed"] == 0 and m["duplicates"] == 0
    published = m["published"]
    assert m["copies"] == published * subscribers == m["processed"]
    if mode == "direct":
        # The publisher pays the fan-out itself: S copies of every message.
        payload_in = m["bytes_deliver"] / subscribers - published * header
        assert m["bytes_publish"] == 0
    else:
        payload_in = m["bytes_publish"] - published * header
        assert payload_in > 0
    frames = m["deliveries"] if mode != "pull" else m["fetches"]
    expected = subscribers * payload_in + frames * header
    assert m["bytes_deliver"] == expected
    if mode == "push":
        assert expected == theory.fanout_bytes(payload_in, published, subscribers, header)
    if mode == "pull":
        # Batching several messages per response saves headers.
        assert m["bytes_deliver"] <= theory.fanout_bytes(payload_in, published, subscribers, header)
    assert_ledgers(m, model)


# ------------------------------------------------------------------ faults --
def test_push_consumer_crash_redelivers_and_counts_duplicates():
    # Consumer 0 crashes at 5 s with prefetch 20 unacked messages, some
    # processed with their ack still on the wire: those are processed again.
    m, model = run(duration=15, delivery="push", prefetch=20, publish_rate=200, group_size=2,
                   crash_at=5, restart_after=2, deliver_latency="20ms", ack_latency="20ms")
    assert m["consumer_crashes"] == 1
    assert m["redeliveries"] > 0
    assert 0 < m["duplicates"] <= m["redeliveries"]
    assert m["missed"] == 0
    assert_ledgers(m, model)


@pytest.mark.parametrize("commit,expect_dups", [("periodic", True), ("per_batch", None)])
def test_pull_consumer_crash_replays_from_commit(commit, expect_dups):
    periodic = {"commit_interval": "3s"} if commit == "periodic" else {}  # (refused per batch)
    m, model = run(duration=15, delivery="pull", commit=commit, **periodic,
                   publish_rate=200, crash_at=5.5, restart_after=1, deliver_latency="20ms",
                   ack_latency="20ms")
    assert m["missed"] == 0
    if expect_dups:
        # Up to 2.5 s of processed-but-uncommitted messages are replayed.
        assert m["duplicates"] > 100
    assert m["duplicates"] <= m["redeliveries"]
    assert_ledgers(m, model)


@pytest.mark.parametrize("mode", ["push", "pull"])
@pytest.mark.parametrize("persistence", [True, False])
def test_broker_restart(mode, persistence):
    # A slow consumer keeps a backlog at the broker when it goes down at 6 s.
    m, model = run(duration=15, delivery=mode, persistence=persistence, publish_rate=200,
                   subscribers=2, slow_consumers=1, slow_factor=3, broker_restart_at=6,
                   broker_downtime=2, deliver_latency="20ms", ack_latency="20ms",
                   publish_latency="20ms")
    assert m["broker_restarts"] == 1
    if persistence:
        assert m["missed"] == 0
    else:
        assert m["missed"] > 0
    # While the broker is down publishers cannot send: ~2 s of blocking.
    assert m["publisher_blocked_s"] == pytest.approx(2.0, abs=0.1)
    assert_ledgers(m, model)


def test_direct_offline_subscriber_misses_and_slow_one_blocks_publisher():
    # Direct: a crashed subscriber misses what is published while it is down
    # (~200/s x 2 s); a slow one blocks the publisher for every subscriber.
    m, model = run(duration=10, delivery="direct", publish_rate=200, subscribers=3, crash_at=3,
                   restart_after=2, deliver_latency="20ms", ack_latency="20ms")
    assert m["missed"] == pytest.approx(400, rel=0.15)  # Poisson count, sd ~ 20 (5%)
    assert_ledgers(m, model)
    slow = dict(duration=10, publish_rate=200, subscribers=3, slow_consumers=1, slow_factor=10,
                deliver_latency="20ms", ack_latency="20ms", publish_latency="20ms",
                processing_time="2ms")
    direct, dmodel = run(delivery="direct", direct_buffer=50, publish_window=100, **slow)
    push, pmodel = run(delivery="push", prefetch=50, **slow)
    # The slow subscriber (20 ms/msg) handles 50/s of the 200/s: direct
    # throttles the publisher to it, the broker absorbs the difference.
    assert direct["publisher_blocked_fraction"] > 0.5
    assert push["publisher_blocked_fraction"] == 0
    assert direct["throughput"] < 0.6 * push["throughput"]
    assert push["queue_depth_max"] > 1000
    assert_ledgers(direct, dmodel)
    assert_ledgers(push, pmodel)


# ------------------------------------------------------------- reproducible --
def test_same_seed_same_results():
    kw = dict(duration=8, delivery="push", publish_rate=100, subscribers=2, crash_at=3,
              broker_restart_at=5, broker_downtime=1)
    a, _ = run(**kw)
    b, _ = run(**kw)
    assert a == pytest.approx(b, nan_ok=True)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        run(delivery="push", crash_consumers=5)
    assert err.value.key == "pubsub.crash_consumers"
    with pytest.raises(ConfigError) as err:
        run(delivery="direct", backlog=10)
    assert err.value.key == "pubsub.backlog"
    with pytest.raises(ConfigError):
        run(delivery="pushh")


def test_slow_subscriber_hurts_the_others_only_without_a_broker():
    # Eight subscriptions, one consumer 10x slower for 5 s: with a broker the
    # other seven keep their ~100 ms latency (deliver + ack latency bound); direct
    # makes the publisher wait for the slow one, so the others' p99 grows to
    # seconds.  (One run each, common random numbers; the gap is > 10x.)
    slow = dict(duration=15, publish_rate=100, subscribers=8, slow_consumers=1, slow_factor=10,
                slow_from=3, slow_for=5, deliver_latency="50ms", ack_latency="50ms",
                publish_latency="50ms", publish_window=100, direct_buffer=100)
    push, _ = run(delivery="push", prefetch=64, **slow)
    direct, _ = run(delivery="direct", **slow)
    assert push["healthy_latency_p99"] < 0.3
    assert direct["healthy_latency_p99"] > 1.0


def test_theory_pubsub_closed_forms():
    # The worked example's three numbers and the cap.
    assert theory.prefetch_utilization(1, 0.004, 0.05, 0.05) == pytest.approx(0.03846, abs=1e-5)
    assert theory.prefetch_utilization(13, 0.004, 0.05, 0.05) == pytest.approx(0.5)
    assert theory.prefetch_utilization(26, 0.004, 0.05, 0.05) == 1.0
    assert theory.prefetch_utilization(100, 0.004, 0.05, 0.05) == 1.0
    # The issue's form (empty partition on arrival) and its special cases.
    f = theory.pull_fetch(10_000, 5000, 1.0, 0.1)
    assert f["hold"] == pytest.approx(0.5) and f["fetch_latency"] == pytest.approx(0.6)
    assert f["steady_hold"] == pytest.approx(0.4)
    assert theory.pull_fetch(10_000, 5000, 0.2, 0.1)["fetch_latency"] == pytest.approx(0.3)
    assert theory.pull_fetch(0, 1, 0.5, 0.1)["fetch_latency"] == pytest.approx(0.6)  # idle topic
    assert theory.pull_fetch(10_000, 500, 1.0, 0.1)["steady_hold"] == 0.0  # rtt's bytes suffice
    assert theory.fanout_bytes(1000, 10, 3, 64) == 3 * 1000 + 30 * 64
    with pytest.raises(ValueError):
        theory.prefetch_utilization(0, 0.004, 0.05, 0.05)
    with pytest.raises(ValueError):
        theory.pull_fetch(-1, 1, 1, 0)


@pytest.mark.parametrize("mode", ["push", "pull", "direct"])
def test_ledgers_balance_with_network_loss_and_every_fault(mode):
    # 5% loss with one retransmission: ~0.25% of messages are given up by the
    # links; the endpoints recover (redelivery, refetch, resend) or count the
    # copy as missed (direct), so both ledgers still balance exactly.
    broker = {} if mode == "direct" else {  # direct has no broker (its faults are refused)
        "broker_restart_at": 5, "broker_downtime": 1, "persistence": True}
    m, model = run(duration=10, delivery=mode, topics=2, subscribers=3, group_size=2,
                   publish_rate=50, network={"loss": 0.05, "max_retries": 1, "latency": "10ms"},
                   crash_at=3, crash_consumers=3, slow_consumers=2, **broker)
    assert m["dropped"] > 0
    assert_ledgers(m, model)


def test_direct_with_every_subscriber_offline_does_not_recurse():
    # 5 s with the only subscriber down and a 2000-message backlog in the
    # outbox (window 1): every message is missed at once, without recursion.
    m, model = run(duration=10, delivery="direct", publish_rate=2000, publish_window=1,
                   crash_at=1, restart_after=5, deliver_latency="50ms", ack_latency="50ms")
    assert m["missed"] > 5000
    assert_ledgers(m, model)


def test_interarrival_distribution_sets_the_publish_rate():
    # Uniform gaps of 5-15 ms: 100 msgs/s; 10 s gives ~1000 messages, sd of
    # the count ~ 10 (renewal process, cv 0.29): 5% is > 5 sd.
    m, _ = run(duration=10, delivery="push", publish_rate=1,
               interarrival={"dist": "uniform", "low": "5ms", "high": "15ms"})
    assert m["published"] == pytest.approx(1000, rel=0.05)


@pytest.mark.parametrize("prefetch,group,broker_cost", [(7, 3, 0.0), (13, 1, 0.001)])
def test_prefetch_utilization_per_consumer_and_with_broker_cpu(prefetch, group, broker_cost):
    # Each consumer of a group has its own prefetch window, so the bound holds
    # per consumer.  Broker CPU per delivery and per ack lengthens every slot's
    # cycle: 4 + 50 + 50 + 1 + 1 = 106 ms (the broker is 2 ms busy per 4 ms,
    # so it never queues in the deterministic steady state).  Tolerance as in
    # the worked-example test (window edge < 0.5% absolute).
    m, model = run(duration=20, warmup=2, delivery="push", prefetch=prefetch, group_size=group,
                   backlog=20000, publish_for=0, processing_time="4ms", deliver_latency="50ms",
                   ack_latency="50ms", broker_cpu_per_message=broker_cost,
                   broker_cpu_per_request=broker_cost)
    expected = theory.prefetch_utilization(prefetch, 0.004, 0.05 + broker_cost, 0.05 + broker_cost)
    assert m["consumer_utilization"] == pytest.approx(expected, abs=0.005)
    assert_ledgers(m, model)


@pytest.mark.parametrize("delivery,key,value", [("direct", "handshake", "tcp"),
                                                ("push", "keepalive", False),
                                                ("direct", "keepalive", False)])
def test_connection_keys_are_refused_naming_the_key(delivery, key, value):
    # direct has no broker to connect to; push delivers over each consumer's
    # long-lived connection (the connections themselves: test_pubsub_connections.py)
    with pytest.raises(ConfigError) as err:
        run(duration=1, network={key: value}, delivery=delivery)
    assert err.value.key == f"network.{key}"


def test_traces_name_publishers_consumers_and_the_broker():
    from commsim.experiment.trace import run_traced

    cfg = load({"pattern": "pubsub", "duration": 1, "warmup": 0,
                "pubsub": {"delivery": "push", "publish_rate": 50}}).points[0].config
    tracer, _sim, _seed = run_traced(cfg, 20)
    text = tracer.text()
    assert "publisher 0 => broker" in text and "broker => consumer 0" in text
    assert "object at 0x" not in text


def test_the_broker_is_a_node_that_counts_its_own_deliveries():
    m, model = run(duration=3, delivery="push", publish_rate=100, subscribers=2)
    b = model.broker
    assert not hasattr(b, "model")
    assert m["deliveries"] == b.deliveries > 0 and m["redeliveries"] == b.redeliveries
    assert [s.index for s in b.subs] == [s.index for s in model.subs]
