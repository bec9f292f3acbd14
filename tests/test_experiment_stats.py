"""Confidence intervals over replications, the precision target and MSER-5
warm-up detection (issue 7)."""

from __future__ import annotations


import numpy as np
import pytest
import yaml

from commsim.cli import main
from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment.precision import Precision, parse_target
from commsim.experiment.runner import run_experiment
from commsim.experiment.stats import mean_ci
from commsim.experiment.warmup import mser, round_up
from commsim.patterns import registry


def mm1(**over) -> dict:
    """Open-loop M/M/1: 500 requests/s, 1 ms mean service (rho = 0.5)."""
    cfg = {
        "name": "stats",
        "pattern": "request_response",
        "seed": 5,
        "duration": "1s",
        "replications": 1,
        "clients": {"count": 20, "mode": "async", "rate": "25/s"},
        "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
    }
    cfg.update(over)
    return cfg


def test_ci_half_width_shrinks_as_replications_grow():
    # 40 independent replications of latency_mean.  The expected 95 %
    # half-width with n replications is t_{.975,n-1} * c4(n) * sigma / sqrt(n)
    # (c4: E[s] = c4 * sigma).  Averaged over disjoint groups:
    #   n = 4:  3.182 * 0.9213 / 2     = 1.466 sigma  (10 groups)
    #   n = 10: 2.262 * 0.9727 / 3.162 = 0.696 sigma  (4 groups)
    #   n = 40: 2.023 * 0.9936 / 6.325 = 0.318 sigma  (1 group)
    # Expected ratios 0.475 (10 vs 4) and 0.457 (40 vs 10).  The CV of s is
    # sqrt(1 - c4^2) / c4 = 0.42, 0.24, 0.11 at n = 4, 10, 40, so the averaged
    # half-widths have CVs of 0.42/sqrt(10) = 0.13, 0.24/2 = 0.12 and 0.11, and
    # each ratio a CV of about 0.17: within +-2.5 x 0.17 relative, i.e.
    # [0.27, 0.68] and [0.26, 0.65].
    result = run_experiment(load(mm1(replications=40, duration="0.5s")))
    x = result.runs["latency_mean"].to_numpy()
    assert len(x) == 40
    hw = {n: np.mean([mean_ci(x[i:i + n])[1] for i in range(0, 40, n)]) for n in (4, 10, 40)}
    assert hw[40] < hw[10] < hw[4]
    assert 0.27 < hw[10] / hw[4] < 0.68
    assert 0.26 < hw[40] / hw[10] < 0.65
    # summary.csv's latency_mean_ci95 is the n = 40 half-width
    assert result.summary["latency_mean_ci95"].iloc[0] == pytest.approx(hw[40], rel=1e-12)


def test_precision_target_adds_replications_until_met():
    exp = load(mm1(sweep={"clients.rate": [10, 30]},
                   precision={"target": "8%", "metrics": ["latency_mean"], "max_replications": 60}))
    result = run_experiment(exp)
    report = result.precision
    assert report["target"] == 0.08
    gamma_adj = 0.08 / 1.08  # Law's relative-error adjustment
    for _, row in result.summary.iterrows():
        rel = row["latency_mean_ci95"] / row["latency_mean"]
        assert rel <= gamma_adj
        assert 3 <= row["replications"] < 60
    assert all(p["target_met"] for p in report["points"])
    # The heavier load (rho = 0.6 vs 0.2) has noisier latency and needs more replications.
    reps = result.summary.set_index("clients.rate")["replications"]
    assert reps[30.0] > reps[10.0]
    # Replications are numbered 0..n-1 with no gaps.
    for _, g in result.runs.groupby("clients.rate"):
        assert sorted(g["replication"]) == list(range(len(g)))


def test_precision_stops_at_the_cap_and_is_deterministic_across_executors(tmp_path):
    cfg = mm1(sweep={"clients.rate": [10, 30]})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for label, extra in (("serial", []), ("jobs2", ["--jobs", "2"])):
        assert main(["run", str(path), "--out", str(tmp_path / label), "--quiet",
                     "--precision", "0.01%", "--max-replications", "5", *extra]) == 0
    a = (tmp_path / "serial" / "runs.csv").read_text()
    assert a == (tmp_path / "jobs2" / "runs.csv").read_text()
    assert len(a.splitlines()) == 1 + 2 * 5  # capped at 5 per point
    resolved = yaml.safe_load((tmp_path / "serial" / "config.resolved.yaml").read_text())
    assert resolved["precision"] == {"target": 0.0001, "metrics": ["throughput", "latency_mean"],
                                     "max_replications": 5, "min_replications": 3}


@pytest.mark.parametrize("text,value", [("2%", 0.02), ("0.02", 0.02), (0.5, 0.5), ("12.5%", 0.125)])
def test_parse_precision_target(text, value):
    assert parse_target(text) == pytest.approx(value)


@pytest.mark.parametrize("args,key,words", [
    (["--precision", "200%"], "--precision", "below 100%"),
    (["--precision", "fast"], "--precision", "such as 2%"),
    (["--precision", "2%", "--max-replications", "1"], "--max-replications", ">= 2"),
    (["--precision", "2%", "--precision-metric", "latency_mena"], "--precision-metric", "latency_mean"),
    (["--max-replications", "10"], "--max-replications", "needs a precision target"),
])
def test_precision_flag_errors_exit_2_before_writing(tmp_path, capsys, args, key, words):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(mm1()))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err
    assert not out.exists()


def test_precision_section_errors():
    with pytest.raises(ConfigError, match="precision.max_replication"):
        load(mm1(precision={"target": "2%", "max_replication": 5}))
    with pytest.raises(ConfigError, match="precision.target: missing"):
        load(mm1(precision={"metrics": ["throughput"]}))


def test_precision_more_asks_for_the_projected_count():
    p = Precision(0.05, ("m",), max_replications=50, min_replications=3)
    # mean 10, sd 2 over 4 values: hw = 3.182 * 2 / 2 = 3.18 -> rel 0.318;
    # gamma' = 0.05/1.05 = 0.0476; projection 4 * (0.318/0.0476)^2 = 179 -> capped at 2n = 8.
    rows = [{"m": v} for v in (8.0, 10.0, 12.0, 10.0)]
    assert p.more(None, {0: rows}, set(), {0: 4}) == {0: 8}
    # Already precise: nothing more; failed points are not extended.
    tight = [{"m": v} for v in (10.0, 10.01, 9.99, 10.0)]
    assert p.more(None, {0: tight}, set(), {0: 4}) == {}
    assert p.more(None, {0: rows}, {0}, {0: 4}) == {}
    assert p.more(None, {0: rows}, set(), {0: 50}) == {}  # at the cap


def test_mser5_finds_a_decaying_transient():
    rng = np.random.default_rng(1)
    n = 5000
    i = np.arange(n)
    transient = 6.0 * np.exp(-i / 300.0)
    x = transient + rng.normal(0.0, 1.0, n)
    drop, m, settled = mser(x)
    assert m == 1000 and settled
    # The bias falls below the batch-mean noise (1/sqrt(5) = 0.45) after
    # ~300 ln(6/0.45) = 780 observations; MSER-5 trades bias against variance,
    # so it stops somewhere in the tail of the transient.
    assert 300 <= drop <= 2000
    assert transient[drop] < 1.0  # more than 5/6 of the initial bias removed
    # A stationary series needs (almost) no truncation.
    drop0, _, _ = mser(rng.normal(0.0, 1.0, n))
    assert drop0 < 0.1 * n
    # A series that never settles is flagged.
    _, _, settled_trend = mser(np.linspace(0, 10, n) + rng.normal(0, 0.1, n))
    assert not settled_trend
    with pytest.raises(ValueError):
        mser([1.0] * 10)


def test_round_up_two_significant_digits():
    assert round_up(0.01234) == 0.013
    assert round_up(7.0) == 7.0
    assert round_up(123.4) == 130.0
    assert round_up(0.0) == 0.0


class _Transient:
    """A model whose output series is a known transient plus noise:
    6 exp(-i / 300) + N(0, 1), 500 observations per simulated second."""

    def __init__(self, sim):
        self.sim = sim

    def warmup_series(self):
        n = int(500 * (self.sim.end))
        rng = self.sim.streams.generator("test/noise")
        i = np.arange(n)
        return 6.0 * np.exp(-i / 300.0) + rng.normal(0.0, 1.0, n)

    def metrics(self):
        return {"throughput": float(self.sim.start)}  # reports the warm-up it ran with


@pytest.fixture
def transient_pattern(monkeypatch):
    from commsim.patterns import Pattern

    monkeypatch.setitem(registry(), "transient_test", Pattern("transient_test", "test", _Transient))


def test_warmup_auto_detects_and_records_the_warmup(tmp_path, transient_pattern):
    # 10 s pilots = 5000 observations; MSER-5 drops 300..2000 of them (see
    # test_mser5_finds_a_decaying_transient), i.e. 0.6 .. 4 s.
    cfg = {"name": "w", "pattern": "transient_test", "seed": 3, "duration": "10s", "warmup": "auto",
           "replications": 2, "sweep": {"server.cores": [1, 2]}}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    w = resolved["warmup"]
    assert isinstance(w, float) and 0.6 <= w <= 4.0
    assert round_up(w) == w
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv")
    assert (runs["throughput"] == w).all()  # every run used the detected warm-up
    # Running the same command again reuses the pilots and the runs.
    from commsim.experiment.store import RunStore

    result = run_experiment(load(path), store=RunStore(out))
    assert result.computed == 0 and result.warmup["warmup"] == w
    assert len(result.warmup["points"]) == 2


def test_warmup_auto_on_a_simulated_queue(tmp_path):
    # The real path: pilots of request-response, whose latencies form the series.
    cfg = mm1(duration="4s", warmup="auto", clients={"count": 20, "mode": "async", "rate": "40/s"})
    result = run_experiment(load(cfg))
    w = result.warmup["warmup"]
    assert 0.0 <= w <= 2.0  # MSER-5 never cuts more than half the pilot
    assert result.experiment.resolved["warmup"] == w
    assert result.experiment.points[0].config["warmup"] == w


#: every built-in pattern (the registry before any test adds its own)
BUILTIN = sorted(registry())


@pytest.mark.parametrize("pattern", BUILTIN)
def test_warmup_auto_works_in_every_pattern(pattern):
    # Each pattern gives MSER-5 a series (request latencies, or each update's
    # or message copy's latency in order of arrival): before, six patterns
    # accepted the key and then failed after their pilot run.
    result = run_experiment(load({"pattern": pattern, "duration": "20s", "warmup": "auto", "seed": 5}))
    w = result.warmup["warmup"]
    assert 0.0 <= w <= 10.0  # MSER-5 never cuts more than half the pilot
    assert result.experiment.points[0].config["warmup"] == w
    assert result.warmup["points"][0]["n"] >= 20


def test_warmup_auto_finds_the_connect_burst_of_sse():
    # SSE clients connect at times uniform in [0, 1 s): the transient ends
    # near 1 s.  With TLS costing 1 ms of server CPU per handshake, 2,000
    # connects keep the single core busy for 2 s, and the updates created
    # meanwhile queue behind them: the transient lasts past 2 s.  (Over
    # seeds 1-6 MSER-5 cut 1.06-1.21 s and 2.18-2.31 s.)
    def detected(tls):
        cfg = {"pattern": "sse", "duration": "30s", "warmup": "auto", "seed": 5,
               "clients": {"count": 2000},
               "network": {"latency": "10ms", "handshake": "tls1.3", "tls_server_cpu": tls},
               "server": {"cores": 1, "service_time": "50us"}, "workload": {"event_rate": "0.5/s"}}
        return run_experiment(load(cfg)).warmup["warmup"]

    assert 1.0 <= detected(0.0) <= 1.5
    assert 2.0 <= detected(0.001) <= 3.0
