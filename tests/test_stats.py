"""Tests for commsim.experiment.stats."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from commsim.experiment.stats import batch_means, mean_ci, summarize, t_cdf, t_quantile

# --------------------------------------------------------------------------
# t quantile


@pytest.mark.parametrize(
    "p,df,expected",
    [
        (0.975, 1, 12.7062047),
        (0.975, 10, 2.2281389),
        (0.975, 30, 2.0422725),
        (0.995, 5, 4.0321430),
        (0.975, 4, 2.7764451),
        (0.95, 19, 1.7291328),
        (0.99, 2, 6.9645567),
        (0.9995, 3, 12.9239786),
    ],
)
def test_t_quantile_table_values(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=6e-8)


@pytest.mark.parametrize("p", [1e-9, 0.001, 0.1, 0.3, 0.49, 0.6, 0.9, 0.975, 0.999, 1 - 1e-9])
def test_t_quantile_closed_forms(p):
    # df = 1 (Cauchy): tan(pi (p - 1/2)) = -1 / tan(pi p), written with the
    # smaller tail q to stay accurate near 0 and 1; df = 2: (2p - 1) / sqrt(2 p (1 - p)).
    q = min(p, 1 - p)
    cauchy = math.copysign(1 / math.tan(math.pi * q), p - 0.5)
    assert t_quantile(p, 1) == pytest.approx(cauchy, rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_quantile_symmetry_roundtrip_and_normal_limit():
    assert t_quantile(0.5, 7) == 0.0
    for df in (1, 2.5, 9, 60, 1000):
        for p in (0.01, 0.2, 0.8, 0.995):
            q = t_quantile(p, df)
            assert t_quantile(1 - p, df) == pytest.approx(-q, rel=1e-10)
            assert t_cdf(q, df) == pytest.approx(p, rel=1e-10)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959963985, abs=1e-9)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959963985, abs=1e-5)
    # Monotone in df towards the normal quantile.
    qs = [t_quantile(0.975, df) for df in (1, 2, 5, 10, 100, 10_000)]
    assert all(a > b for a, b in zip(qs, qs[1:]))


def test_t_cdf_known_values():
    assert t_cdf(1.0, 1) == pytest.approx(0.75, rel=1e-12)  # 1/2 + atan(1)/pi
    assert t_cdf(0.0, 5) == pytest.approx(0.5, rel=1e-12)
    assert t_cdf(-2.2281389, 10) == pytest.approx(0.025, abs=1e-8)


@pytest.mark.parametrize("p,df", [(0.0, 5), (1.0, 5), (-0.1, 5), (0.5, 0), (0.9, -1)])
def test_t_quantile_invalid(p, df):
    with pytest.raises(ValueError):
        t_quantile(p, df)


# --------------------------------------------------------------------------
# mean_ci


def test_mean_ci_known_value():
    mean, half = mean_ci([1, 2, 3, 4, 5])
    assert mean == pytest.approx(3.0)
    assert half == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-7)
    _, half90 = mean_ci([1, 2, 3, 4, 5], level=0.90)
    assert half90 == pytest.approx(2.1318468 * math.sqrt(2.5) / math.sqrt(5), rel=1e-7)


def test_mean_ci_nan_and_small_samples():
    assert mean_ci([1.0, math.nan, 3.0]) == mean_ci([1.0, 3.0])
    mean, half = mean_ci([4.2])
    assert mean == 4.2 and math.isnan(half)
    mean, half = mean_ci([math.nan, 4.2])
    assert mean == 4.2 and math.isnan(half)
    mean, half = mean_ci([])
    assert math.isnan(mean) and math.isnan(half)
    assert mean_ci(np.array([2.0, 2.0, 2.0])) == (2.0, 0.0)
    assert mean_ci(pd.Series([1.0, 2.0, 3.0])) == mean_ci([1, 2, 3])
    with pytest.raises(ValueError):
        mean_ci([1, 2, 3], level=1.0)


def test_mean_ci_coverage():
    """2000 experiments of 10 N(5, 2^2) samples: the 95 % interval should
    cover 5 in about 95 % of them.  The coverage count is Binomial(2000, .95),
    sd = sqrt(.95 * .05 / 2000) ~= 0.0049, so [0.93, 0.97] is +-4 sd.  The
    z interval (1.96 instead of t_9 = 2.262) would cover only ~0.92."""
    rng = np.random.default_rng(7)
    data = rng.normal(5.0, 2.0, size=(2000, 10))
    hits = 0
    for row in data:
        mean, half = mean_ci(row)
        hits += abs(mean - 5.0) <= half
    coverage = hits / len(data)
    assert 0.93 <= coverage <= 0.97


# --------------------------------------------------------------------------
# batch means


def test_batch_means_drops_oldest_remainder():
    x = np.arange(105, dtype=float)
    mean, half = batch_means(x, n_batches=10)
    used = x[5:]  # 105 = 10 * 10 + 5: the 5 oldest samples are dropped
    assert mean == pytest.approx(used.mean())
    expected = mean_ci(used.reshape(10, 10).mean(axis=1))
    assert (mean, half) == pytest.approx(expected)


def test_batch_means_edge_cases():
    mean, half = batch_means([1.0, 2.0, 3.0], n_batches=5)
    assert mean == pytest.approx(2.0) and math.isnan(half)
    with pytest.raises(ValueError):
        batch_means([1.0, 2.0, 3.0], n_batches=1)


def test_batch_means_covers_on_autocorrelated_series():
    """AR(1), phi = 0.8, mean 0: the sample-iid interval badly undercovers
    (the variance of the mean is (1 + phi)/(1 - phi) = 9 times the iid one),
    batch means with 20 batches of 500 should cover ~95 %.  400 runs:
    binomial sd ~= 0.011, so we accept [0.90, 0.99]."""
    rng = np.random.default_rng(3)
    runs, n, phi = 400, 10_000, 0.8
    noise = rng.normal(size=(n, runs))
    x = np.empty((n, runs))
    x[0] = noise[0] / math.sqrt(1 - phi**2)  # stationary start
    for k in range(1, n):
        x[k] = phi * x[k - 1] + noise[k]
    bm_hits = naive_hits = 0
    for r in range(runs):
        mean, half = batch_means(x[:, r], n_batches=20)
        bm_hits += abs(mean) <= half
        m2, h2 = mean_ci(x[:, r])
        naive_hits += abs(m2) <= h2
    assert 0.90 <= bm_hits / runs <= 0.99
    assert naive_hits / runs < 0.70


# --------------------------------------------------------------------------
# summarize


@pytest.fixture
def results() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pattern": ["poll", "poll", "push", "push", "poll", "push", "poll"],
            "rate": [10, 10, 10, 10, 20, 10, 20],
            "seed": [1, 2, 1, 2, 1, 3, 2],
            "latency": [1.0, 3.0, 0.5, 0.7, 2.0, np.nan, 4.0],
            "ok": [True, True, False, True, True, True, False],
            "note": ["a", "b", "c", "d", "e", "f", "g"],
        }
    )


def test_summarize_groups_and_columns(results):
    out = summarize(results, ["pattern", "rate"], ["latency", "ok", "note"])
    assert list(out.columns) == ["pattern", "rate", "replications", "latency", "latency_ci95", "ok", "ok_ci95"]
    # order of first appearance, not sorted
    assert list(zip(out["pattern"], out["rate"])) == [("poll", 10), ("push", 10), ("poll", 20)]
    assert list(out["replications"]) == [2, 3, 2]
    assert out["latency"].tolist() == pytest.approx([2.0, 0.6, 3.0])
    # NaN ignored in the push group: CI over the two values 0.5, 0.7
    assert out.loc[1, "latency_ci95"] == pytest.approx(mean_ci([0.5, 0.7])[1])
    assert out.loc[0, "latency_ci95"] == pytest.approx(12.7062047 * math.sqrt(2) / math.sqrt(2), rel=1e-7)
    assert out["ok"].tolist() == pytest.approx([1.0, 2 / 3, 0.5])


def test_summarize_order_of_first_appearance_unsorted_keys():
    df = pd.DataFrame({"k": ["z", "a", "z", "m"], "v": [1.0, 2.0, 3.0, 4.0]})
    out = summarize(df, ["k"], ["v"])
    assert out["k"].tolist() == ["z", "a", "m"]
    assert out["v"].tolist() == [2.0, 2.0, 4.0]
    assert math.isnan(out.loc[1, "v_ci95"])  # single replication


def test_summarize_without_groups(results):
    out = summarize(results, [], ["latency"])
    assert out.shape == (1, 3)
    assert list(out.columns) == ["replications", "latency", "latency_ci95"]
    assert out.loc[0, "replications"] == 7
    mean, half = mean_ci(results["latency"])
    assert out.loc[0, "latency"] == pytest.approx(mean)
    assert out.loc[0, "latency_ci95"] == pytest.approx(half)


def test_summarize_missing_column(results):
    with pytest.raises(KeyError):
        summarize(results, ["pattern"], ["nope"])
