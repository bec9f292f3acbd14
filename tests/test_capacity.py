"""``commsim capacity``: the largest value of a key that meets an SLO."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from commsim import theory
from commsim.cli import main
from commsim.errors import ConfigError
from commsim.config import load
from commsim.experiment.capacity import _Group, _next_value, capacity, parse_slo
from commsim.experiment.runner import run_experiment
from commsim.experiment.store import RunStore

MU = 1000.0      # service rate: exponential 1 ms on one core
SLO_P99 = 0.020  # s


def mm1(reps: int = 3, duration: str = "20s", rates=(10,)) -> dict:
    """Async clients at ``rate`` each into one exponential core: M/M/1 with
    lambda = clients x rate (no bytes, no latency)."""
    cfg = {"name": "mm1cap", "pattern": "request_response", "seed": 1, "duration": duration,
           "warmup": "2s", "replications": reps,
           "clients": {"count": 50, "mode": "async", "rate": rates[0]},
           "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
           "request_response": {"request_header": "0B", "response_header": "0B",
                                "response_body": "0B"}}
    if len(rates) > 1:
        cfg["sweep"] = {"clients.rate": list(rates)}
    return cfg


def theory_capacity(rate: float) -> int:
    """M/M/1 sojourn ~ Exp(mu - lambda): p99 = ln(100)/(mu - lambda) < SLO
    <=> lambda < mu - ln(100)/SLO; clients = floor(lambda / rate)."""
    lam_max = MU - math.log(100) / SLO_P99
    assert theory.mm1(lam_max, MU)["response"] * math.log(100) == pytest.approx(SLO_P99)
    return math.floor(lam_max / rate)


def test_mm1_capacity_matches_theory_per_sweep_point(tmp_path):
    store = RunStore(tmp_path)
    table = capacity(mm1(rates=(10, 20)), "clients.count", [f"latency_p99 < {SLO_P99 * 1000}ms"],
                     range_=(20, 120), store=store)
    assert list(table["clients.rate"]) == [10, 20]
    for _, row in table.iterrows():
        rate = row["clients.rate"]
        expected = theory_capacity(rate)            # 76 and 38
        # Tolerance from the noise: the p99's 95% half-width at the capacity,
        # divided by how much one more client raises the p99 in theory.
        lam = expected * rate
        slope = rate * math.log(100) / (MU - lam) ** 2
        tol = math.ceil(row["latency_p99_ci95_at_capacity"] / slope) + 1
        assert tol <= 6, "too noisy to test: lengthen the runs"
        assert row["status"] == "found"
        assert abs(row["capacity"] - expected) <= tol, (rate, row["capacity"], expected, tol)
        assert row["first_failing"] == row["capacity"] + 1
        assert row["latency_p99_at_capacity"] < SLO_P99 <= row["latency_p99_at_first_failing"]
    # Repeating the search reuses every stored run.
    n = len(store)
    again = capacity(mm1(rates=(10, 20)), "clients.count", [f"latency_p99 < {SLO_P99 * 1000}ms"],
                     range_=(20, 120), store=store)
    assert len(store) == n
    pd.testing.assert_frame_equal(table, again)


def test_instability_bounds_the_capacity():
    """An SLO that overload does not break (the median of a 10 s window stays
    below 10 s even when the queue grows without bound): without the
    stability check the search would report overload as capacity."""
    slo = ["latency_p50 < 10s"]
    stable = capacity(mm1(reps=2, duration="10s"), "clients.count", slo, range_=(50, 200))
    row = stable.iloc[0]
    # Open-loop clients saturate the core at 99% busy (stability.SATURATED):
    # lambda = 990/s, 99 clients at 10/s; 10 s x 2 replications of an M/M/1
    # near saturation carry about 1% noise in the utilisation.
    assert row["status"] == "found" and 95 <= row["capacity"] <= 99, row["capacity"]
    assert "saturated" in row["why_failing"] or "queue growing" in row["why_failing"]
    loose = capacity(mm1(reps=2, duration="10s"), "clients.count", slo, range_=(50, 200),
                     allow_unstable=True)
    assert loose.iloc[0]["capacity"] > 150


def test_capacity_uses_the_summary_stability_flags(tmp_path):
    """One stability predicate: each probe is unstable exactly when the
    summary.csv row of the same runs says so (commsim.experiment.stability),
    reasons and all."""
    store = RunStore(tmp_path)
    cfg = mm1(reps=2, duration="5s")
    table = capacity(cfg, "clients.count", ["latency_p50 < 10s"], range_=(50, 200), store=store)
    probes = table.attrs["probes"]
    assert (probes["unstable"] != "").any() and (probes["unstable"] == "").any()
    values = sorted(int(v) for v in probes["clients.count"])
    n = len(store)
    summary = run_experiment(load({**cfg, "sweep": {"clients.count": values}}), store=store).summary
    assert len(store) == n  # the very same runs
    by_value = {int(r["clients.count"]): r for r in summary.to_dict("records")}
    for p in probes.to_dict("records"):
        s = by_value[int(p["clients.count"])]
        assert p["unstable"] == s["unstable_reason"], (p["clients.count"], p["unstable"], s)
        assert (p["unstable"] != "") == bool(s["unstable"])


def test_search_steps_exploit_monotonicity():
    """A monotone predicate with threshold t: the search ends at exactly t,
    in about log2 of the bracket's width after bracketing."""
    for t in (1, 2, 7, 99, 100, 1234, 50_000):
        for lo_hi in (None, (1, 100_000)):
            g = _Group(0, {}, integer=True)
            probes = 0
            while True:
                v = _next_value(g, 100.0, *(lo_hi or (None, None)), 1.0, 1.0)
                if v is None:
                    break
                probes += 1
                if v <= t:
                    g.good = v if g.good is None else max(g.good, v)
                else:
                    g.bad = v if g.bad is None else min(g.bad, v)
            assert g.status == "found" and g.good == t and g.bad == t + 1, (t, lo_hi, g)
            assert probes <= 2 * math.log2(max(t, 100)) + 4
    g = _Group(0, {}, integer=False)
    while (v := _next_value(g, 3.0, None, None, 0.01, 0.0)) is not None:
        if v <= math.pi:
            g.good = v
        else:
            g.bad = v
    assert g.good <= math.pi < g.bad and g.bad - g.good <= 0.01 * g.good


def test_slo_syntax_and_errors(tmp_path, capsys):
    assert parse_slo("latency_p99<1s").value == 1.0
    assert parse_slo(" latency_mean <= 250ms ").value == pytest.approx(0.25)
    assert parse_slo("bandwidth < 1MB/s").value == 1e6
    assert parse_slo("server_utilization >= 0.5").op == ">="
    for bad, what in (("latency_p99 = 1s", "METRIC OP VALUE"), ("latncy_p99 < 1s", "did you mean"),
                      ("latency_p99 < 1kg", "unknown unit")):
        with pytest.raises(ConfigError, match=what):
            parse_slo(bad)
    with pytest.raises(ConfigError, match="must not be"):
        cfg = mm1()
        cfg["sweep"] = {"clients.count": [1, 2]}
        capacity(cfg, "clients.count", ["latency_p99 < 1s"])
    with pytest.raises(ConfigError, match="numeric"):
        capacity(mm1(), "pattern", ["latency_p99 < 1s"])
    out = tmp_path / "cap"
    assert main(["capacity", "x.yaml", "--slo", "latency_p99 < 1s", "--range", "5", "--out",
                 str(out)]) == 2
    assert "--range" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["capacity", "--help"])
    assert "--slo" in capsys.readouterr().out


def test_utilisation_hint_saves_probes_and_never_misleads():
    """A CPU-bound predicate (utilisation grows with the key, fails at the
    saturation threshold): the hint finds the same answer in fewer probes; a
    hint that is wrong (the answer lies far below it) still converges to the
    right answer."""
    from commsim.experiment.capacity import SATURATED, _hint

    def search(cap_at_full: float, fail_above: float, use_hint: bool):
        g = _Group(0, {}, integer=True)
        probes = 0
        while (v := _next_value(g, 100.0, None, None, 1.0, 1.0)) is not None:
            probes += 1
            u = min(1.0, SATURATED * v / cap_at_full)
            if v <= fail_above and u < SATURATED:
                if g.good is None or v > g.good:
                    g.hint = _hint(v, [{"server_utilization": u}]) if use_hint else None
                g.good = v if g.good is None else max(g.good, v)
            else:
                g.bad = v if g.bad is None else min(g.bad, v)
        return g.good, probes

    for cap in (245.3, 2450.7, 7777.2):
        plain, n_plain = search(cap, math.inf, False)
        hinted, n_hinted = search(cap, math.inf, True)
        assert plain == hinted == math.ceil(cap) - 1
        assert n_hinted < n_plain, (cap, n_hinted, n_plain)
    # Latency binds long before the CPU: the hint points too high.
    wrong, n_wrong = search(5000.0, 321, True)
    right, n_right = search(5000.0, 321, False)
    assert wrong == right == 321 and n_wrong <= 2 * n_right


def test_family_metrics_are_known_in_a_fresh_process():
    """An SLO on a family's metric (defined when its pattern is imported)
    parses even before any pattern was loaded."""
    import subprocess
    import sys

    code = ("from commsim.experiment.capacity import parse_slo; "
            "print(parse_slo('empty_fraction < 0.5').value)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.5"
