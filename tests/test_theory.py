"""Tests for commsim.theory: known values, reductions between models,
independent numerical checks (birth–death solve, log-space Erlang C) and
Monte-Carlo checks of the polling formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from commsim import theory
from commsim.theory import (
    closed_loop_throughput_bound,
    erlang_c,
    long_polling,
    md1,
    mg1,
    mgc_wait_approx,
    mm1,
    mm1k,
    mmc,
    short_polling,
    thread_pool_saturation,
)

QUEUE_KEYS = {"rho", "wait", "response", "number_in_system", "number_in_queue"}


def assert_same_queue(a: dict, b: dict, rel: float = 1e-12) -> None:
    for key in QUEUE_KEYS:
        assert a[key] == pytest.approx(b[key], rel=rel), key


# --------------------------------------------------------------------------
# M/M/1, M/M/c, M/D/1, M/G/1


def test_mm1_known_values():
    r = mm1(0.8, 1.0)
    assert set(r) == QUEUE_KEYS
    assert r["rho"] == pytest.approx(0.8)
    assert r["wait"] == pytest.approx(4.0)
    assert r["response"] == pytest.approx(5.0)
    assert r["number_in_system"] == pytest.approx(4.0)
    assert r["number_in_queue"] == pytest.approx(3.2)


def test_mm1_units_scale():
    # 800 req/s on a 1000 req/s server: W = 1/(mu - lam) = 5 ms.
    r = mm1(800.0, 1000.0)
    assert r["response"] == pytest.approx(0.005)
    assert r["wait"] == pytest.approx(0.004)
    assert r["number_in_system"] == pytest.approx(4.0)


def test_erlang_c_known_values():
    assert erlang_c(2, 1.0) == pytest.approx(1.0 / 3.0, rel=1e-14)
    assert erlang_c(1, 0.7) == pytest.approx(0.7, rel=1e-14)  # M/M/1: P(wait) = rho


def _erlang_c_logspace(c: int, a: float) -> float:
    """Textbook formula evaluated with logs (independent of the B recursion)."""
    terms = [k * math.log(a) - math.lgamma(k + 1) for k in range(c)]
    last = c * math.log(a) - math.lgamma(c + 1) + math.log(c / (c - a))
    top = max(terms + [last])
    denom = math.fsum(math.exp(t - top) for t in terms) + math.exp(last - top)
    return math.exp(last - top) / denom


@pytest.mark.parametrize("c,a", [(3, 2.5), (10, 8.0), (50, 45.0), (1000, 950.0), (1000, 990.0), (1000, 500.0)])
def test_erlang_c_against_logspace_formula(c, a):
    value = erlang_c(c, a)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(_erlang_c_logspace(c, a), rel=1e-9, abs=1e-300)


def test_mmc_with_one_server_is_mm1():
    for lam, mu in [(0.5, 1.0), (8.0, 10.0), (0.99, 1.0)]:
        r = mmc(lam, mu, 1)
        assert_same_queue(r, mm1(lam, mu))
        assert r["p_wait"] == pytest.approx(lam / mu)


def test_mmc_known_values_and_little():
    r = mmc(1.0, 1.0, 2)
    assert r["p_wait"] == pytest.approx(1.0 / 3.0)
    assert r["rho"] == pytest.approx(0.5)
    assert r["wait"] == pytest.approx(1.0 / 3.0)  # C / (c mu - lam)
    assert r["response"] == pytest.approx(4.0 / 3.0)
    assert r["number_in_system"] == pytest.approx(r["number_in_queue"] + 1.0)  # L = Lq + a


def test_mmc_pooling_beats_separate_queues():
    pooled = mmc(1.6, 1.0, 2)["wait"]
    separate = mm1(0.8, 1.0)["wait"]
    assert pooled < separate


def test_mg1_reduces_to_mm1_and_md1():
    for lam, s in [(0.3, 1.0), (800.0, 0.001), (0.95, 1.0)]:
        assert_same_queue(mg1(lam, s, 1.0), mm1(lam, 1.0 / s))
        assert_same_queue(mg1(lam, s, 0.0), md1(lam, s))


def test_md1_is_half_mm1_wait():
    assert md1(0.8, 1.0)["wait"] == pytest.approx(2.0)
    assert md1(0.8, 1.0)["wait"] == pytest.approx(mm1(0.8, 1.0)["wait"] / 2)


def test_mg1_high_variability():
    # scv = 4 (e.g. hyper-exponential): Wq = rho s (1 + 4) / (2 (1 - rho)).
    assert mg1(0.5, 1.0, 4.0)["wait"] == pytest.approx(0.5 * 5 / (2 * 0.5))


def test_mgc_wait_approx_exact_cases():
    # c = 1: Allen–Cunneen equals Pollaczek–Khinchine.
    for scv in (0.0, 0.5, 1.0, 3.0):
        assert mgc_wait_approx(0.7, 1.0, scv, 1) == pytest.approx(mg1(0.7, 1.0, scv)["wait"])
    # scv = 1: equals M/M/c.
    assert mgc_wait_approx(3.0, 1.0, 1.0, 4) == pytest.approx(mmc(3.0, 1.0, 4)["wait"])
    # scv = 0: half of M/M/c.
    assert mgc_wait_approx(3.0, 1.0, 0.0, 4) == pytest.approx(mmc(3.0, 1.0, 4)["wait"] / 2)


# --------------------------------------------------------------------------
# M/M/1/K


def _birth_death(lam: float, mu: float, K: int) -> np.ndarray:
    """Stationary law of the M/M/1/K CTMC by solving pi Q = 0 numerically."""
    Q = np.zeros((K + 1, K + 1))
    for n in range(K):
        Q[n, n + 1] = lam
        Q[n + 1, n] = mu
    Q -= np.diag(Q.sum(axis=1))
    A = np.vstack([Q.T, np.ones(K + 1)])
    b = np.zeros(K + 2)
    b[-1] = 1.0
    pi, *_ = np.linalg.lstsq(A, b, rcond=None)
    return pi


@pytest.mark.parametrize("lam,mu,K", [(0.5, 1.0, 1), (0.5, 1.0, 5), (1.0, 1.0, 7), (1.7, 1.0, 4), (9.0, 10.0, 30), (3.0, 1.0, 20)])
def test_mm1k_against_birth_death(lam, mu, K):
    pi = _birth_death(lam, mu, K)
    r = mm1k(lam, mu, K)
    L = float(np.arange(K + 1) @ pi)
    assert r["p_block"] == pytest.approx(pi[K], rel=1e-8, abs=1e-12)
    assert r["throughput"] == pytest.approx(lam * (1 - pi[K]), rel=1e-8)
    assert r["throughput"] == pytest.approx(mu * (1 - pi[0]), rel=1e-8)  # flow balance
    assert r["number_in_system"] == pytest.approx(L, rel=1e-8)
    assert r["number_in_queue"] == pytest.approx(L - (1 - pi[0]), rel=1e-8, abs=1e-12)
    assert r["response"] == pytest.approx(L / r["throughput"], rel=1e-8)
    assert r["response"] == pytest.approx(r["wait"] + 1 / mu, rel=1e-8)


def test_mm1k_rho_one_and_limits():
    r = mm1k(2.0, 2.0, 9)
    assert r["p_block"] == pytest.approx(0.1)
    assert r["number_in_system"] == pytest.approx(4.5)
    # Closed form for rho != 1.
    rho, K = 0.5, 3
    assert mm1k(rho, 1.0, K)["p_block"] == pytest.approx(rho**K * (1 - rho) / (1 - rho ** (K + 1)))
    # Large buffer, rho < 1: approaches M/M/1.
    big = mm1k(0.8, 1.0, 400)
    assert big["p_block"] < 1e-30
    assert big["number_in_system"] == pytest.approx(mm1(0.8, 1.0)["number_in_system"], rel=1e-9)
    # Overload does not overflow: throughput -> mu.
    over = mm1k(50.0, 1.0, 2000)
    assert over["throughput"] == pytest.approx(1.0, rel=1e-9)


# --------------------------------------------------------------------------
# bounds


def test_thread_pool_saturation():
    # 10 threads, 10 ms CPU + 90 ms I/O: thread bound 100/s; 4 cores: 400/s.
    assert thread_pool_saturation(10, 0.010, 0.090, 4) == pytest.approx(100.0)
    assert thread_pool_saturation(100, 0.010, 0.090, 4) == pytest.approx(400.0)
    assert thread_pool_saturation(8, 0.0, 0.1, 4) == pytest.approx(80.0)  # pure I/O
    assert thread_pool_saturation(1, 0.01, 0.0, 1) == pytest.approx(100.0)


def test_closed_loop_bound():
    assert closed_loop_throughput_bound(1, 1.0, 0.1, 1) == pytest.approx(1 / 1.1)
    assert closed_loop_throughput_bound(100, 1.0, 0.1, 1) == pytest.approx(10.0)
    assert closed_loop_throughput_bound(100, 1.0, 0.1, 4) == pytest.approx(40.0)
    # Knee at n* = cores (D + Z) / D.
    assert closed_loop_throughput_bound(11, 1.0, 0.1, 1) == pytest.approx(10.0)


# --------------------------------------------------------------------------
# invalid input


@pytest.mark.parametrize(
    "call",
    [
        lambda: mm1(1.0, 1.0),
        lambda: mm1(2.0, 1.0),
        lambda: mm1(0.0, 1.0),
        lambda: mm1(-1.0, 1.0),
        lambda: mm1(0.5, math.nan),
        lambda: mmc(2.0, 1.0, 2),
        lambda: mmc(1.0, 1.0, 0),
        lambda: mmc(1.0, 1.0, 2.5),
        lambda: erlang_c(2, 2.0),
        lambda: erlang_c(0, 0.5),
        lambda: md1(1.0, 1.0),
        lambda: mg1(0.5, 2.0, 1.0),
        lambda: mg1(0.5, 1.0, -0.1),
        lambda: mgc_wait_approx(4.0, 1.0, 1.0, 4),
        lambda: mm1k(1.0, 1.0, 0),
        lambda: mm1k(0.0, 1.0, 3),
        lambda: thread_pool_saturation(0, 0.01, 0.01, 1),
        lambda: thread_pool_saturation(1, 0.0, 0.0, 1),
        lambda: thread_pool_saturation(1, 0.01, -1.0, 1),
        lambda: closed_loop_throughput_bound(1, 1.0, 0.0, 1),
        lambda: short_polling(1.0, 0.0, 0.01),
        lambda: short_polling(0.0, 1.0, 0.01),
        lambda: long_polling(1.0, 0.0, 0.0),
        lambda: long_polling(1.0, -1.0, 0.1),
        lambda: long_polling(0.0, 1.0, 0.1),
    ],
)
def test_invalid_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


def test_public_functions_are_documented():
    for name in theory.__all__:
        doc = getattr(theory, name).__doc__
        assert doc and len(doc) > 80, name


# --------------------------------------------------------------------------
# short polling


def test_short_polling_formulas():
    r = short_polling(2.0, 0.5, 0.03)
    assert r["empty_fraction"] == pytest.approx(math.exp(-1.0))
    assert r["latency_mean"] == pytest.approx(0.28)
    assert r["polls_per_second_per_client"] == pytest.approx(2.0)


def test_short_polling_monte_carlo():
    """Poisson events on [0, n T); polls at T, 2T, ...; one-way latency d.

    Conditional on their number, Poisson event times are i.i.d. uniform, so
    per-event latencies are i.i.d. (sd T / sqrt(12)) and per-window emptiness
    indicators are i.i.d. Bernoulli: standard errors are exact, and we allow
    4 of them (a correct formula fails with probability ~1e-4; the seed is
    fixed anyway).
    """
    lam, T, d, n_windows = 3.0, 0.4, 0.02, 200_000
    rng = np.random.default_rng(12345)
    n_events = rng.poisson(lam * T * n_windows)
    t = rng.uniform(0.0, T * n_windows, n_events)
    window = np.floor(t / T).astype(np.int64)
    latency = (window + 1) * T - t + d
    empty = np.bincount(window, minlength=n_windows)[:n_windows] == 0

    th = short_polling(lam, T, d)
    se_lat = T / math.sqrt(12 * n_events)
    assert abs(latency.mean() - th["latency_mean"]) < 4 * se_lat
    f = th["empty_fraction"]
    se_empty = math.sqrt(f * (1 - f) / n_windows)
    assert abs(empty.mean() - f) < 4 * se_empty


# --------------------------------------------------------------------------
# long polling


def test_long_polling_limits():
    lam, H, rtt = 2.0, 1.0, 0.5
    r = long_polling(lam, H, rtt)
    assert set(r) == {"requests_per_second", "empty_fraction", "latency_mean", "cycle_mean"}
    q = math.exp(-lam * rtt)
    assert r["cycle_mean"] == pytest.approx(rtt + q * (1 - math.exp(-lam * H)) / lam)
    assert r["requests_per_second"] == pytest.approx(1 / r["cycle_mean"])
    assert r["empty_fraction"] == pytest.approx(math.exp(-lam * (rtt + H)))
    assert r["latency_mean"] == pytest.approx(rtt / 2 + rtt**2 / (2 * r["cycle_mean"]))
    # H = 0 is periodic polling with period rtt: latency = rtt/2 + rtt/2.
    h0 = long_polling(lam, 0.0, rtt)
    assert h0["latency_mean"] == pytest.approx(rtt)
    assert h0["requests_per_second"] == pytest.approx(1 / rtt)
    # rtt = 0: instant re-poll, zero latency, cycle = E[min(X, H)].
    r0 = long_polling(lam, H, 0.0)
    assert r0["latency_mean"] == 0.0
    assert r0["cycle_mean"] == pytest.approx((1 - math.exp(-lam * H)) / lam)
    assert r0["empty_fraction"] == pytest.approx(math.exp(-lam * H))
    # Rare events: latency -> rtt/2 + rtt^2 / (2 (rtt + H)).
    rare = long_polling(1e-9, 30.0, 0.1)
    assert rare["latency_mean"] == pytest.approx(0.05 + 0.01 / (2 * 30.1), rel=1e-6)
    # Latency always between one-way delay and a full rtt.
    for lam_ in (0.01, 1.0, 100.0):
        lat = long_polling(lam_, 5.0, 0.2)["latency_mean"]
        assert 0.1 <= lat <= 0.2


def simulate_long_polling(lam: float, H: float, rtt: float, n_cycles: int, seed: int):
    """Event-by-event simulation of one long-polling client.

    Does not use the renewal decomposition of the formula: it walks a single
    pre-drawn Poisson event stream.  ``t`` is the arrival of a poll at the
    server.  Events already waiting (created during the previous gap) are
    answered at once; otherwise the first event within H is answered at once,
    or an empty response is sent at t + H.  Delivered events arrive at the
    client rtt/2 after the answer; the next poll reaches the server rtt after
    the answer.

    Returns per-poll arrays: total latency of delivered events, number of
    delivered events, empty flag, poll-to-poll time.  Per-poll records are
    i.i.d. (they depend on disjoint stretches of the Poisson stream), which
    justifies the standard errors used below.
    """
    rng = np.random.default_rng(seed)
    horizon = n_cycles * (rtt + H) + 10.0 / lam
    n_ev = int(lam * horizon + 10 * math.sqrt(lam * horizon) + 10)
    ev = np.cumsum(rng.exponential(1.0 / lam, n_ev))
    prefix = np.concatenate(([0.0], np.cumsum(ev)))
    half = rtt / 2.0
    lat_total = np.empty(n_cycles)
    count = np.empty(n_cycles)
    gap = np.empty(n_cycles)
    t, i = 0.0, 0
    for k in range(n_cycles):
        if ev[i] <= t:  # events pending from the gap
            answer = t
            j = int(ev.searchsorted(t, "right"))
        elif ev[i] - t < H:  # first event during the hold
            answer = ev[i]
            j = i + 1
        else:  # timeout
            answer = t + H
            j = i
        n = j - i
        count[k] = n
        lat_total[k] = n * (answer + half) - (prefix[j] - prefix[i])
        gap[k] = answer + rtt - t
        t, i = answer + rtt, j
    assert i < n_ev, "event stream too short"
    return lat_total, count, count == 0, gap


LP_CASES = [(2.0, 1.0, 0.5), (0.5, 2.0, 0.2), (10.0, 0.5, 0.1)]


@pytest.fixture(scope="module", params=LP_CASES, ids=lambda c: "lam=%g,H=%g,rtt=%g" % c)
def long_polling_mc(request):
    lam, H, rtt = request.param
    return request.param, simulate_long_polling(lam, H, rtt, 200_000, seed=2024)


def test_long_polling_monte_carlo(long_polling_mc):
    """Formula vs. simulation, 200k polls, tolerance 4 standard errors.

    * empty fraction: Bernoulli per poll, se = sqrt(f (1 - f) / n);
    * poll rate: se of the mean poll-to-poll time, propagated: se(1/C) = se(C)/C^2;
    * latency: ratio estimator sum(latency) / sum(events) over i.i.d. polls,
      delta-method se = sqrt(sum((L_k - R N_k)^2)) / sum(N_k).
    """
    (lam, H, rtt), (lat, cnt, empty, cyc) = long_polling_mc
    th = long_polling(lam, H, rtt)
    n = len(cnt)

    f = th["empty_fraction"]
    assert abs(empty.mean() - f) < 4 * math.sqrt(f * (1 - f) / n)

    c_mean = cyc.mean()
    assert abs(c_mean - th["cycle_mean"]) < 4 * cyc.std(ddof=1) / math.sqrt(n)
    se_rate = cyc.std(ddof=1) / math.sqrt(n) / c_mean**2
    assert abs(1 / c_mean - th["requests_per_second"]) < 4 * se_rate

    R = lat.sum() / cnt.sum()
    se_R = math.sqrt(((lat - R * cnt) ** 2).sum()) / cnt.sum()
    assert abs(R - th["latency_mean"]) < 4 * se_R


def test_long_polling_monte_carlo_rejects_naive_formulas(long_polling_mc):
    """Power check: the simulation distinguishes the exact formulas from the
    simplified E[C] = rtt + E[min(X, H)] and empty fraction exp(-lambda H),
    which ignore that a poll arriving with pending events is answered at once."""
    (lam, H, rtt), (lat, cnt, empty, cyc) = long_polling_mc
    n = len(cnt)
    naive_empty = math.exp(-lam * H)
    naive_cycle = rtt + (1 - math.exp(-lam * H)) / lam
    assert abs(empty.mean() - naive_empty) > 10 * math.sqrt(naive_empty * (1 - naive_empty) / n)
    assert abs(cyc.mean() - naive_cycle) > 10 * cyc.std(ddof=1) / math.sqrt(n)
