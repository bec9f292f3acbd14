"""Tests for commsim.dists: parsing, moments, samplers and error messages."""

from __future__ import annotations

import math
import timeit

import numpy as np
import pytest

from commsim.dists import (
    BLOCK,
    DIST_NAMES,
    Constant,
    Empirical,
    Exponential,
    Lognormal,
    Normal,
    Pareto,
    Uniform,
    make_distribution,
)
from commsim.errors import ConfigError

N = 200_000


def check_moments(dist, seed: int) -> tuple[float, float]:
    """Compare the sample mean/variance of N draws with dist.mean/.variance.

    By the CLT the sample mean has standard error sqrt(var/N) and the sample
    variance sqrt((mu4 - var**2)/N), mu4 the fourth central moment (estimated
    from the sample; finite for every distribution tested here).  A 5-SE band
    is exceeded by chance with probability ~5.7e-7 per check.  For an
    exponential, say, N = 200k gives SE(mean)/mean = 1/sqrt(2e5) = 0.22% and
    SE(var)/var = sqrt(8/2e5) = 0.63% (mu4 = 9 mean**4), so the bands are
    +-1.1% and +-3.2%: a wrong formula is caught.  Returns the two band
    half-widths relative to the true values, so callers can check the
    tolerance is tight.
    """
    x = dist.sample(np.random.default_rng(seed), N)
    assert x.shape == (N,) and x.dtype == np.float64
    m, v = float(x.mean()), float(x.var())
    mu4 = float(((x - m) ** 4).mean())
    tol_mean = 5 * math.sqrt(v / N)
    tol_var = 5 * math.sqrt((mu4 - v * v) / N)
    assert abs(m - dist.mean) <= tol_mean, (m, dist.mean, tol_mean)
    assert abs(v - dist.variance) <= tol_var, (v, dist.variance, tol_var)
    return tol_mean / dist.mean, tol_var / dist.variance


# ---------------------------------------------------------------- moments


def test_exponential_moments():
    d = make_distribution({"dist": "exponential", "mean": "1ms"}, "duration", "k")
    assert isinstance(d, Exponential)
    assert d.mean == pytest.approx(1e-3) and d.variance == pytest.approx(1e-6)
    assert d.scv == pytest.approx(1.0)
    rel_mean, rel_var = check_moments(d, 1)
    assert rel_mean < 0.012 and rel_var < 0.035  # the 1.1% / 3.2% above


def test_exponential_from_rate():
    d = make_distribution({"dist": "exponential", "rate": "500/s"}, "duration", "k")
    assert d.mean == pytest.approx(2e-3)
    assert d.to_config() == {"dist": "exponential", "mean": pytest.approx(2e-3)}


def test_uniform_moments():
    d = make_distribution({"dist": "uniform", "low": "1ms", "high": "3ms"}, "duration", "k")
    assert isinstance(d, Uniform)
    assert d.mean == pytest.approx(2e-3)
    assert d.variance == pytest.approx((2e-3) ** 2 / 12)
    check_moments(d, 2)
    x = d.sample(np.random.default_rng(0), 1000)
    assert x.min() >= 1e-3 and x.max() <= 3e-3


@pytest.mark.parametrize("cv", [0.5, 1.0])
def test_lognormal_moments(cv):
    # mean and cv are those of the lognormal itself, not of log(X).
    d = make_distribution({"dist": "lognormal", "mean": "2ms", "cv": cv}, "duration", "k")
    assert isinstance(d, Lognormal)
    assert d.mean == pytest.approx(2e-3)
    assert d.variance == pytest.approx((cv * 2e-3) ** 2)
    assert d.scv == pytest.approx(cv**2)
    check_moments(d, 3)


def test_lognormal_cv_zero_is_exactly_the_mean():
    d = make_distribution({"dist": "lognormal", "mean": "2ms", "cv": 0}, "duration", "k")
    assert d.is_constant and d.scv == 0.0
    assert np.all(d.sample(np.random.default_rng(0), 10) == 0.002)


def test_pareto_moments_from_mean():
    # shape 10: mu4 (and the 8th moment behind its SE) are finite, so the
    # CLT-based bands of check_moments apply.
    d = make_distribution({"dist": "pareto", "shape": 10, "mean": "2ms"}, "duration", "k")
    assert isinstance(d, Pareto)
    assert d.scale == pytest.approx(2e-3 * 9 / 10)
    assert d.mean == pytest.approx(2e-3)
    assert d.variance == pytest.approx(d.scale**2 * 10 / (81 * 8))
    check_moments(d, 4)
    assert d.sample(np.random.default_rng(0), 10_000).min() >= d.scale


def test_pareto_infinite_moments():
    d = make_distribution({"dist": "pareto", "shape": 1, "scale": "1ms"}, "duration", "k")
    assert d.mean == math.inf and d.variance == math.inf and d.scv == math.inf
    d = make_distribution({"dist": "pareto", "shape": 1.5, "scale": "1ms"}, "duration", "k")
    assert d.mean == pytest.approx(3e-3) and d.variance == math.inf
    assert d.scv == math.inf


def test_half_normal_mean_closed_form():
    # mean 0 truncated at 0 is the half-normal: mean sd*sqrt(2/pi), var sd^2 (1 - 2/pi).
    d = make_distribution({"dist": "normal", "mean": 0, "sd": "2ms"}, "duration", "k")
    assert d.mean == pytest.approx(2e-3 * math.sqrt(2 / math.pi), rel=1e-12)
    assert d.variance == pytest.approx(4e-6 * (1 - 2 / math.pi), rel=1e-12)
    check_moments(d, 5)


def test_truncated_normal_mean_differs_from_mu():
    d = make_distribution({"dist": "normal", "mean": 1, "sd": 1}, "number", "k")
    assert isinstance(d, Normal)
    # Independent check by numerical integration of x*phi(x-1) over x >= 0.
    xs = np.linspace(0.0, 12.0, 1_200_001)
    pdf = np.exp(-0.5 * (xs - 1.0) ** 2)
    z = np.trapezoid(pdf, xs)
    mean = np.trapezoid(xs * pdf, xs) / z
    var = np.trapezoid((xs - mean) ** 2 * pdf, xs) / z
    assert d.mean == pytest.approx(mean, rel=1e-9)
    assert d.variance == pytest.approx(var, rel=1e-9)
    # 1.2876 is far outside the sampling band (~0.01) around mu = 1.
    assert d.mean == pytest.approx(1.2876, abs=1e-4)
    rel_mean, _ = check_moments(d, 6)
    assert rel_mean < 0.01
    assert d.sample(np.random.default_rng(0), 10_000).min() >= 0.0


def test_normal_sd_zero():
    d = make_distribution({"dist": "normal", "mean": "3ms", "sd": 0}, "duration", "k")
    assert d.mean == 0.003 and d.variance == 0.0 and d.is_constant


def test_constant_forms():
    for spec in ["20ms", 0.02, {"dist": "constant", "value": "20ms"}]:
        d = make_distribution(spec, "duration", "k")
        assert isinstance(d, Constant)
        assert d.mean == 0.02 and d.variance == 0.0 and d.scv == 0.0 and d.is_constant
        assert d.to_config() == 0.02
        assert np.all(d.sample(np.random.default_rng(0), 3) == 0.02)
    assert make_distribution("4KiB", "size", "k").mean == 4096.0
    assert make_distribution(-2, "number", "k").mean == -2.0


# ---------------------------------------------------------------- empirical


def test_empirical_from_csv(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "times.csv").write_text(
        "id, latency ,note\n1,2,a\n2,4,b\n3,,c\n4,6,d\n"  # blank cell skipped
    )
    spec = {"dist": "empirical", "file": "data/times.csv", "column": "latency", "unit": "ms"}
    d = make_distribution(spec, "duration", "svc", base_dir=tmp_path)
    assert isinstance(d, Empirical)
    np.testing.assert_allclose(d.values, [0.002, 0.004, 0.006])
    assert d.mean == pytest.approx(0.004)
    assert d.variance == pytest.approx(np.var([0.002, 0.004, 0.006]))
    assert d.to_config() == spec  # kept as given
    assert d.path == (tmp_path / "data" / "times.csv").absolute()
    x = d.sample(np.random.default_rng(0), N)
    assert set(np.unique(x)) <= set(d.values)
    check_moments(d, 7)


def test_empirical_without_unit_and_absolute_path(tmp_path):
    path = tmp_path / "sizes.csv"
    path.write_text("bytes\n100\n300\n")
    d = make_distribution({"dist": "empirical", "file": str(path), "column": "bytes"}, "size", "k")
    assert d.mean == 200.0
    assert d.to_config() == {"dist": "empirical", "file": str(path), "column": "bytes"}


def test_empirical_errors(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,\n")
    (tmp_path / "empty.csv").write_text("")
    base = {"dist": "empirical", "file": "t.csv"}
    with pytest.raises(ConfigError, match=r"^svc\.file: got 'nope\.csv'; no such file") as info:
        make_distribution({**base, "file": "nope.csv", "column": "a"}, "duration", "svc",
                          base_dir=tmp_path)
    assert info.value.key == "svc.file"
    with pytest.raises(ConfigError, match=r"^svc\.column: got 'c'; the header row .* \(2 column\(s\)\) has no column"):
        make_distribution({**base, "column": "c"}, "duration", "svc", base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^svc\.column: line 2 .* column 'b', is not a finite plain number"):
        make_distribution({**base, "column": "b"}, "duration", "svc", base_dir=tmp_path)
    (tmp_path / "t.csv").write_text("a,b\n1,\n-2,\n")
    with pytest.raises(ConfigError, match=r"^svc\.column: column 'b' .* has no values"):
        make_distribution({**base, "column": "b"}, "duration", "svc", base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"line 3 .* a duration can't be negative"):
        make_distribution({**base, "column": "a"}, "duration", "svc", base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^svc\.file: .* is empty"):
        make_distribution({**base, "file": "empty.csv", "column": "a"}, "duration", "svc",
                          base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^svc\.unit: got 'parsecs'; expected a unit of a duration"):
        make_distribution({**base, "column": "a", "unit": "parsecs"}, "duration", "svc",
                          base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^svc\.column: missing; dist 'empirical' needs"):
        make_distribution(base, "duration", "svc", base_dir=tmp_path)


# ---------------------------------------------------------------- samplers


SPECS = [
    {"dist": "exponential", "mean": "1ms"},
    {"dist": "uniform", "low": 0, "high": "1ms"},
    {"dist": "lognormal", "mean": "1ms", "cv": 2},
    {"dist": "normal", "mean": "1ms", "sd": "1ms"},
    {"dist": "pareto", "shape": 2.5, "scale": "1ms"},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["dist"])
def test_sampler_is_deterministic_and_matches_blocks(spec):
    d = make_distribution(spec, "duration", "k")
    n = 2 * BLOCK + 100  # crosses two refills
    f, g = d.sampler(np.random.default_rng(11)), d.sampler(np.random.default_rng(11))
    a = [f() for _ in range(n)]
    assert a == [g() for _ in range(n)]
    assert all(type(v) is float for v in a[:10])
    # The k-th value is element k of consecutive sample(rng, BLOCK) blocks.
    rng = np.random.default_rng(11)
    blocks = np.concatenate([d.sample(rng, BLOCK) for _ in range(3)])
    assert a == blocks[:n].tolist()
    h = d.sampler(np.random.default_rng(12))
    assert a[:100] != [h() for _ in range(100)]


def test_sampler_different_streams_differ():
    from commsim.rng import Streams

    d = make_distribution({"dist": "exponential", "mean": 1}, "duration", "k")
    s = Streams(5)
    f, g = d.sampler(s.generator("a")), d.sampler(s.generator("b"))
    assert [f() for _ in range(50)] != [g() for _ in range(50)]


def test_constant_sampler_never_touches_rng():
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    f = make_distribution("5ms", "duration", "k").sampler(rng)
    assert [f() for _ in range(10)] == [0.005] * 10
    assert rng.bit_generator.state == before


def test_sampler_is_fast():
    # Documented figure is ~0.06 us/call; 1 us/call leaves a >10x margin for
    # a loaded machine.  Best of 3 runs of 100k calls, refills included.
    f = make_distribution({"dist": "exponential", "mean": 1}, "duration", "k").sampler(
        np.random.default_rng(0)
    )
    per_call = min(timeit.repeat(f, number=100_000, repeat=3)) / 100_000
    assert per_call < 1e-6


# ---------------------------------------------------------------- config & repr


@pytest.mark.parametrize("spec", SPECS + ["2ms"], ids=str)
def test_to_config_round_trips(spec):
    d = make_distribution(spec, "duration", "k")
    cfg = d.to_config()
    again = make_distribution(cfg, "duration", "k")
    assert again.to_config() == cfg
    assert type(again) is type(d)
    assert again.mean == pytest.approx(d.mean)


def test_to_config_is_base_units_and_plain_floats():
    d = make_distribution({"dist": "lognormal", "mean": "2ms", "cv": "0.5"}, "duration", "k")
    assert d.to_config() == {"dist": "lognormal", "mean": 0.002, "cv": 0.5}
    assert all(type(v) is float for k, v in d.to_config().items() if k != "dist")
    assert make_distribution({"dist": "pareto", "shape": 2, "mean": 4}, "number", "k").to_config() == {
        "dist": "pareto", "shape": 2.0, "scale": 2.0}


def test_repr():
    assert repr(make_distribution({"dist": "exponential", "mean": "1ms"}, "duration", "k")) == (
        "Exponential(mean=0.001)"
    )
    assert repr(make_distribution("1ms", "duration", "k")) == "Constant(value=0.001)"
    assert repr(Uniform(1.0, 2.0)) == "Uniform(low=1.0, high=2.0)"
    assert repr(Pareto(2.0, 1.0)) == "Pareto(shape=2.0, scale=1.0)"


# ---------------------------------------------------------------- errors


BAD = [
    # (spec, kind, regex for the full message "key: message")
    ({"dist": "gamma", "mean": 1}, "duration",
     r"^server\.service_time\.dist: got 'gamma'; expected one of: constant, exponential, "
     r"uniform, lognormal, normal, pareto, empirical$"),
    ({"mean": "1ms"}, "duration", r"^server\.service_time\.dist: missing; expected a duration like .* or a mapping like "
     r"\{dist: exponential, mean: \.\.\.\} with dist one of: constant, "),
    ({"dist": "exponential", "mean": "1ms", "scale": 2}, "duration",
     r"^server\.service_time\.scale: unknown parameter for dist 'exponential'; allowed: mean, rate$"),
    ({"dist": "exponential", "rate": 5}, "size",
     r"^server\.service_time\.rate: unknown parameter .* allowed: mean$"),
    ({"dist": "exponential"}, "duration",
     r"^server\.service_time\.mean: missing; dist 'exponential' needs exactly one of mean, rate"),
    ({"dist": "exponential", "mean": "1ms", "rate": "1000/s"}, "duration",
     r"^server\.service_time\.rate: give either mean or rate, not both"),
    ({"dist": "exponential", "mean": "-5ms"}, "duration",
     r"^server\.service_time\.mean: got '-5ms'; a duration can't be negative$"),
    ({"dist": "exponential", "mean": 0}, "duration",
     r"^server\.service_time\.mean: got 0; must be > 0$"),
    ({"dist": "exponential", "rate": "0/s"}, "duration",
     r"^server\.service_time\.rate: got '0/s'; must be > 0$"),
    ({"dist": "exponential", "mean": "20 parsecs"}, "duration",
     r"^server\.service_time\.mean: got '20 parsecs'; unknown unit"),
    ({"dist": "uniform", "low": "3ms", "high": "1ms"}, "duration",
     r"^server\.service_time\.high: got '1ms'; must be >= low \('3ms'\)$"),
    ({"dist": "uniform", "low": "-1ms", "high": "1ms"}, "duration",
     r"^server\.service_time\.low: got '-1ms'; a duration can't be negative$"),
    ({"dist": "uniform", "low": "1ms"}, "duration",
     r"^server\.service_time\.high: missing; dist 'uniform' needs low and high"),
    ({"dist": "lognormal", "mean": "1ms", "cv": -1}, "duration",
     r"^server\.service_time\.cv: got -1; must be >= 0$"),
    ({"dist": "lognormal", "mean": "1ms", "cv": "1ms"}, "duration",
     r"^server\.service_time\.cv: got '1ms'; unknown unit 'ms'"),
    ({"dist": "normal", "mean": -1, "sd": 1}, "number",
     r"^server\.service_time\.mean: got -1; must be >= 0$"),
    ({"dist": "normal", "mean": "1ms", "sd": "-1ms"}, "duration",
     r"^server\.service_time\.sd: got '-1ms'; a duration can't be negative$"),
    ({"dist": "pareto", "shape": 1, "mean": "1ms"}, "duration",
     r"^server\.service_time\.shape: got 1; a pareto given by its mean needs shape > 1"),
    ({"dist": "pareto", "shape": 0, "scale": "1ms"}, "duration",
     r"^server\.service_time\.shape: got 0; must be > 0$"),
    ({"dist": "pareto", "shape": 2, "scale": "1ms", "mean": "2ms"}, "duration",
     r"^server\.service_time\.mean: give either scale or mean, not both"),
    ({"dist": "pareto", "shape": 2}, "duration",
     r"^server\.service_time\.scale: missing; dist 'pareto' needs shape and exactly one of scale, mean"),
    ({"dist": "constant"}, "duration",
     r"^server\.service_time\.value: missing; dist 'constant' needs value \(allowed parameters: value\)$"),
    ("-5ms", "duration", r"^server\.service_time: got '-5ms'; a duration can't be negative$"),
    ("-5KB", "size", r"^server\.service_time: got '-5KB'; a size can't be negative$"),
    ("-5/s", "rate", r"^server\.service_time: got '-5/s'; a rate can't be negative$"),
    (True, "duration", r"^server\.service_time: got True; expected a duration like"),
    (None, "duration", r"^server\.service_time: got None; expected a duration like .* or a mapping"),
    ([1, 2], "duration", r"^server\.service_time: got \[1, 2\]; expected a duration like"),
]


@pytest.mark.parametrize("spec,kind,pattern", BAD)
def test_errors_name_the_key_path(spec, kind, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        make_distribution(spec, kind, "server.service_time")
    assert info.value.key.startswith("server.service_time")


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown kind"):
        make_distribution(1, "weight", "k")


def test_dist_names():
    assert DIST_NAMES == (
        "constant", "exponential", "uniform", "lognormal", "normal", "pareto", "empirical"
    )


@pytest.mark.parametrize("spec", [{"dist": "exponential", "mean": 1.0}, 0.5,
                                  {"dist": "uniform", "low": 0, "high": 2},
                                  {"dist": "lognormal", "mean": 1.0, "cv": 0.5}])
def test_block_sampler_yields_the_samplers_sequence(spec):
    """take(k) in chunks of any size (0 to 3 blocks) gives the values one
    sampler() call each gives, on the same stream."""
    import random

    import numpy as np

    d = make_distribution(spec, "duration", "x")
    one = d.sampler(np.random.default_rng(5), block=7)
    take = d.block_sampler(np.random.default_rng(5), block=7)
    want = [one() for _ in range(200)]
    got, pick = [], random.Random(1)
    while len(got) < 200:
        got += take(pick.randint(0, 21))
    assert got[:200] == want
