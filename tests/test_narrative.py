"""The generated conclusions of the reports (commsim/experiment/narrative.py)."""

from __future__ import annotations

from commsim.config import load
from commsim.experiment import narrative
from commsim.experiment.runner import make_result


def _result(rows_by_pattern, reps=2):
    exp = load({"name": "n", "pattern": "sse", "sweep": {"pattern": ["long_polling", "sse"],
                                                         "clients.count": [10, 100]}})
    rows = []
    for p in exp.points:
        for r in range(reps):
            m = dict(rows_by_pattern[p.params["pattern"]])
            m["bandwidth"] = m["bandwidth"] * p.params["clients.count"] * (1 + 0.01 * r)
            rows.append({**p.params, "replication": r, "seed": r, **m})
    return make_result(exp, rows)


def _updates(created, delivered, missed):
    """The delivery columns of a notification run (the window's updates
    balance: created = delivered + missed + pending)."""
    return {"updates_created": created, "updates_delivered": delivered, "missed": missed,
            "updates_pending": created - delivered - missed,
            "delivery_ratio": delivered / (delivered + missed)}


def test_a_pattern_that_misses_updates_is_not_cheapest():
    res = _result({"long_polling": {"bandwidth": 1.0, **_updates(1000, 795, 200), "latency_p99": 0.01},
                   "sse": {"bandwidth": 5.0, **_updates(1000, 1000, 0), "latency_p99": 0.05}})
    text = " ".join(narrative.sentences(res))
    assert "`sse` has the lowest bandwidth at every setting of clients.count (2)." in text
    assert "`sse` has the lowest latency p99" in text
    assert "delivered updates only" in text  # the notification caveat


def test_updates_still_on_their_way_are_not_misses():
    """5% of short polling's updates wait for the next poll at the window's
    end: not lost, so it competes (delivery_ratio 1); a results folder written
    before updates_pending existed (delivery_ratio then delivered / created)
    is read by the same definition."""
    rows = {"long_polling": {"bandwidth": 5.0, **_updates(1000, 1000, 0), "latency_p99": 0.05},
            "sse": {"bandwidth": 1.0, **_updates(1000, 950, 0), "latency_p99": 0.05}}
    text = " ".join(narrative.sentences(_result(rows)))
    assert "`sse` has the lowest bandwidth at every setting" in text
    for m in rows.values():
        del m["updates_pending"]
        m["delivery_ratio"] = m["updates_delivered"] / m["updates_created"]  # the old definition
    text = " ".join(narrative.sentences(_result(rows)))
    assert "`sse` has the lowest bandwidth at every setting" in text


def test_without_misses_the_cheaper_pattern_wins_and_ties_are_ties():
    res = _result({"long_polling": {"bandwidth": 1.0, **_updates(1000, 990, 0), "latency_p99": 0.05},
                   "sse": {"bandwidth": 5.0, **_updates(1000, 1000, 0), "latency_p99": 0.05}})
    text = " ".join(narrative.sentences(res))
    assert "`long_polling` has the lowest bandwidth" in text
    assert "tied within the 95% CIs" in text and "`long_polling` 2, `sse` 2" in text


def test_polling_checked_against_theory():
    import re

    from commsim.experiment.runner import run_experiment

    exp = load({"name": "p", "pattern": "short_polling", "seed": 2, "duration": "20s", "warmup": "2s",
                "replications": 1, "clients": {"count": 50}, "network": {"latency": "25ms"},
                "workload": {"event_rate": "0.5/s"}, "short_polling": {"interval": "1s"},
                "long_polling": {"timeout": "5s"},
                "sweep": {"pattern": ["short_polling", "long_polling"]}})
    text = " ".join(narrative.sentences(run_experiment(exp)))
    for name in ("short_polling", "long_polling"):
        m = re.search(rf"Theory \(`{name}`.*?mean latency within ([0-9.]+)% and the empty-response "
                      r"fraction within ([0-9.]+)", text)
        assert m, text
        # ~500 updates per pattern: the sample mean of a latency uniform over
        # [0, 1 s] has a standard error of about 0.29 s / sqrt(500) = 13 ms,
        # i.e. 2.4% of 0.525 s; 10% is four standard errors
        assert float(m.group(1)) < 10 and float(m.group(2)) < 0.05
