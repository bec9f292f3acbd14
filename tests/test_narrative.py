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


def test_a_pattern_that_misses_updates_is_not_cheapest():
    res = _result({"long_polling": {"bandwidth": 1.0, "updates_created": 1000, "missed": 200,
                                    "latency_p99": 0.01},
                   "sse": {"bandwidth": 5.0, "updates_created": 1000, "missed": 0, "latency_p99": 0.05}})
    text = " ".join(narrative.sentences(res))
    assert "`sse` has the lowest bandwidth at every setting of clients.count (2)." in text
    assert "`sse` has the lowest latency p99" in text
    assert "delivered updates only" in text  # the notification caveat


def test_without_misses_the_cheaper_pattern_wins_and_ties_are_ties():
    res = _result({"long_polling": {"bandwidth": 1.0, "updates_created": 1000, "missed": 0,
                                    "latency_p99": 0.05},
                   "sse": {"bandwidth": 5.0, "updates_created": 1000, "missed": 0, "latency_p99": 0.05}})
    text = " ".join(narrative.sentences(res))
    assert "`long_polling` has the lowest bandwidth" in text
    assert "tied within the 95% CIs" in text and "`long_polling` 2, `sse` 2" in text
