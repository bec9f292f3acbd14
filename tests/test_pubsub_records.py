"""Per-operation records of pubsub (commsim run --records): one row per
publish and one per message copy's delivery (or loss) to a consumer; the
run's metrics are derived from exactly these rows."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from commsim.config import load
from commsim.experiment import records
from commsim.experiment.runner import simulate
from commsim.metrics.collect import latency_metrics
from commsim.patterns.pubsub import PubSub, Publisher
from helpers import records_serial_and_parallel, same

SEED = 5

# Each scenario exercises one way a copy is delivered again or lost.
SCENARIOS = {
    # push: processed copies whose ack was on the wire are redelivered -> duplicates
    "push_consumer_crash": dict(delivery="push", prefetch=20, publish_rate=200, group_size=2,
                                crash_at=5, restart_after=2, deliver_latency="20ms",
                                ack_latency="20ms"),
    # pull: replay from the last periodic commit -> duplicates
    "pull_consumer_crash": dict(delivery="pull", commit="periodic", commit_interval="3s",
                                publish_rate=200, crash_at=5.5, restart_after=1,
                                deliver_latency="20ms", ack_latency="20ms"),
    # broker restarts without persistence: queued / unfetched copies are missed
    "push_broker_restart": dict(delivery="push", subscribers=2, prefetch=4, publish_rate=200,
                                slow_consumers=1, slow_factor=20, slow_from=2,
                                broker_restart_at=6, broker_downtime=1),
    "pull_broker_restart": dict(delivery="pull", subscribers=2, publish_rate=200,
                                slow_consumers=1, slow_factor=20, slow_from=2,
                                broker_restart_at=6, broker_downtime=1),
    # direct: a crashed subscriber's buffer and the copies sent while it is down are missed
    "direct_crash_slow": dict(delivery="direct", subscribers=2, publish_rate=150, group_size=1,
                              crash_at=5, restart_after=2, slow_consumers=1, slow_factor=5,
                              slow_from=1, slow_for=3),
}


def _config(pubsub: dict, duration=12.0, warmup=1.0) -> dict:
    return load({"pattern": "pubsub", "duration": duration, "warmup": warmup,
                 "pubsub": pubsub}).points[0].config



@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_pubsub_records_are_the_metrics_rows(name):
    cfg = _config(SCENARIOS[name])
    plain = simulate(cfg, SEED).metrics
    run = simulate(cfg, SEED, records=True)
    m, sim = run
    same(plain, m)  # recording changes nothing in the run
    df = records.table(sim, {}, 0, SEED).to_pandas()
    assert list(df.columns) == [c for c, _u, _m in records.COLUMNS]
    assert set(df.op.astype(str)) == {"publish", "delivery"}
    pub = df[df.op == "publish"]
    dl = df[df.op == "delivery"]
    assert set(pub.outcome.astype(str)) <= {"ok", "unfinished"}
    assert set(dl.outcome.astype(str)) <= {"delivered", "duplicate", "missed"}

    # Whole-run ledgers: one row per first processing, repeat and loss.
    delivered = dl[dl.outcome == "delivered"]
    assert len(delivered) == m["processed"] > 500
    assert (dl.outcome == "duplicate").sum() == m["duplicates"]
    assert (dl.outcome == "missed").sum() == m["missed"]
    # ... so with the copies still waiting at the end, every copy owed is a row or backlog.
    assert len(dl) - m["duplicates"] + m["backlog"] == m["copies"]
    assert dl[dl.outcome == "missed"].completed.isna().all()
    assert dl[dl.outcome != "missed"].completed.notna().all()

    # Latency: the measured delivered rows are exactly the metric's samples
    # (in completion order, as the model appends them), so every latency
    # metric is reproduced bit for bit.
    window = delivered[delivered.measured]
    mine = latency_metrics(window.latency.to_list())
    for k, v in mine.items():
        assert v == m[k] or (math.isnan(v) and math.isnan(m[k])), k
    assert len(window) > 100
    # throughput: first processings completed inside the window
    assert (delivered.completed >= sim.start).sum() / sim.duration == m["throughput"]

    # Publishes: one row per published message (the preloaded backlog has none).
    # (published counts stored messages: every confirmed one, and perhaps some
    # whose confirm is still on its way at the end)
    assert (pub.outcome == "ok").sum() <= m["published"] <= len(pub)
    ok = pub[(pub.outcome == "ok") & pub.measured]
    assert ok.latency.mean() == pytest.approx(m["publish_latency_mean"], rel=1e-12)  # sum order
    assert (pub.bytes == 1024).all() and (dl.bytes == 1024).all()  # message_size, no header

    # Clients: consumers for deliveries (-1: a loss no consumer held), publishers for publishes.
    assert dl.client.dropna().between(0, len(run.model.consumers) - 1).all()
    assert (pub.client == 0).all()  # one publisher


def test_duplicates_and_losses_are_the_consumers():
    # push consumer crash: the duplicates are consumer 0's redelivered copies
    # processed by its group (consumer 0 or 1); direct: the losses are consumer 0's.
    m, sim = simulate(_config(SCENARIOS["push_consumer_crash"]), SEED, records=True)
    df = records.table(sim, {}, 0, SEED).to_pandas()
    dup = df[df.outcome == "duplicate"]
    assert len(dup) == m["duplicates"] > 0
    assert set(dup.client) <= {0, 1}
    assert (dup.completed >= 5.0).all()  # only after the crash at 5 s
    m, sim = simulate(_config(SCENARIOS["direct_crash_slow"]), SEED, records=True)
    df = records.table(sim, {}, 0, SEED).to_pandas()
    lost = df[df.outcome == "missed"]
    assert len(lost) == m["missed"] > 0
    assert set(lost.client.dropna()) == {0}
    # held in its buffer at the crash (5 s) or sent to it while down (until 7 s)
    assert (lost.created < 7.0).all() and lost.completed.isna().all()
    assert (lost.created >= 5.0).sum() > 0 and (lost.created < 5.0).sum() > 0


def test_records_off_runs_the_plain_code():
    cfg = _config(SCENARIOS["push_consumer_crash"])
    run = simulate(cfg, SEED)
    model = run.model
    assert model.ops is None and model.broker.ops is None
    assert "processed_copy" not in vars(model)  # the class's method, not the recording one
    assert all(type(p) is Publisher for p in model.publishers)
    assert all(len(o) == 0 for o in run.sim.recorder.operations.values())
    assert PubSub.processed_copy is type(model).processed_copy


TINY = ("name: ps\npattern: pubsub\nduration: 3s\nwarmup: 0.5s\nreplications: 2\n"
        "pubsub: {publish_rate: 100/s, crash_at: 1s, restart_after: 0.5s, broker_restart_at: 2s,"
        " broker_downtime: 0.2s}\n"
        "sweep:\n  pubsub.delivery: [push, pull, direct]\n")


def test_pubsub_records_are_the_same_serially_and_with_two_processes(tmp_path):
    path = tmp_path / "ps.yaml"
    path.write_text(TINY)
    df, a = records_serial_and_parallel(path, tmp_path, files=6 + 1)  # 6 runs, units
    assert set(df["pubsub.delivery"]) == {"push", "pull", "direct"}
    # The runs' processed counts are the delivered rows of each run.
    runs = pd.read_csv(a / "runs.csv")
    got = (df[(df.op == "delivery") & (df.outcome == "delivered")]
           .groupby(["pubsub.delivery", "replication"]).size())
    for _, r in runs.iterrows():
        assert got[(r["pubsub.delivery"], r["replication"])] == r["processed"]


def test_python_api_records_for_pubsub():
    import commsim

    cfg = {"name": "ps", "pattern": "pubsub", "duration": 3.0, "warmup": 0.5,
           "pubsub": {"delivery": "pull", "subscribers": 2}}
    res = commsim.run(cfg, records=True)
    df = res.read_records()
    run = res.runs.iloc[0]
    delivered = df[(df.op == "delivery") & (df.outcome == "delivered")]
    assert len(delivered) == run["processed"] > 0
    assert set(delivered.client) == {0, 1}  # one consumer per subscription
    window = delivered[delivered.measured]
    assert window.latency.mean() == pytest.approx(run["latency_mean"], rel=1e-12)
