"""Statistics for simulation replications, without scipy.

* :func:`t_quantile` — Student-t quantile (CDF via the regularized
  incomplete beta function, inverted by bisection);
* :func:`mean_ci` — t confidence interval over independent replications;
* :func:`batch_means` — batch-means interval for one long, autocorrelated run;
* :func:`summarize` — per-group means and 95 % half-widths of a results table.

References: W. H. Press et al., *Numerical Recipes*, 3rd ed., sec. 6.4
(incomplete beta) and 6.14 (Student-t); A. M. Law, *Simulation Modeling and
Analysis*, 5th ed., ch. 9 (replications, batch means).
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas is imported where tables are built: `import commsim` stays lean (issue 14)
    import pandas as pd

__all__ = ["t_quantile", "t_cdf", "mean_ci", "batch_means", "summarize"]

_EPS = 1e-15
_TINY = 1e-300


# --------------------------------------------------------------------------
# Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b), modified Lentz (Numerical Recipes 6.4)."""
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _TINY:
        d = _TINY
    d = 1.0 / d
    h = d
    # Converges in O(sqrt(max(a, b))) steps on the side where it is used.
    max_iter = 10_000 + int(10 * math.sqrt(max(a, b)))
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _betai(a: float, b: float, x: float, y: float | None = None) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0, 0 <= x <= 1.

    ``y`` = 1 - x may be passed when the caller knows it more accurately
    than ``1 - x`` can be computed (x close to 1).
    """
    if y is None:
        y = 1.0 - x
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log(y)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: 0.5 * I_x(df/2, 1/2), x = df/(df+t^2), 1-x = t^2/(df+t^2)."""
    t2 = t * t
    return 0.5 * _betai(0.5 * df, 0.5, df / (df + t2), t2 / (df + t2))


def t_cdf(t: float, df: float) -> float:
    """Student-t CDF P(T <= t) with ``df`` > 0 degrees of freedom.

    Uses P(|T| > t) = I_x(df/2, 1/2) with x = df / (df + t^2).
    """
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    if math.isinf(df):
        return NormalDist().cdf(t)
    tail = _t_tail(abs(t), df)
    return 1.0 - tail if t >= 0 else tail


@lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t distribution: t such that P(T <= t) = p.

    The smaller tail min(p, 1 - p) is matched against P(T > t) (see
    :func:`t_cdf`) by bisection on t until the bracket is below 1e-12
    relative; the sign follows from symmetry.  Checked against an independent
    implementation: relative error <= 1e-8 for df in [1, 1e7] and
    1e-12 <= p <= 1 - 1e-12 (the limit at huge df is the cancellation in
    lgamma differences).  ``df = math.inf`` returns the standard normal
    quantile (``statistics.NormalDist``).

    Parameters
    ----------
    p:  probability, 0 < p < 1.
    df: degrees of freedom, > 0 (need not be an integer), or ``math.inf``.
    """
    p = float(p)
    df = float(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    if math.isinf(df):
        return NormalDist().inv_cdf(p)
    if p == 0.5:
        return 0.0
    # Work with the smaller tail probability (exact: 1 - p has no rounding
    # error for p in [0.5, 1)), then use the symmetry of t.
    sign, target = (1.0, 1.0 - p) if p > 0.5 else (-1.0, p)
    lo, hi = 0.0, 1.0
    while _t_tail(hi, df) > target:
        lo, hi = hi, 2.0 * hi
        if hi > 1e300:  # pragma: no cover - only for absurd p / df
            return sign * math.inf
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi or hi - lo <= 1e-12 * hi:
            break
        if _t_tail(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return sign * 0.5 * (lo + hi)


# --------------------------------------------------------------------------
# intervals


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return level


def _clean(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values) if not hasattr(values, "__array__") else values, dtype=float).ravel()
    return arr[~np.isnan(arr)]


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and Student-t confidence half-width over independent replications.

    ``half_width = t_{(1+level)/2, n-1} * s / sqrt(n)``, s the sample standard
    deviation (ddof = 1), n the number of non-NaN values.  Assumes the values
    are i.i.d. and roughly normal (replication means usually are, by the
    CLT).  NaN values are ignored.  Returns ``(nan, nan)`` for no values and
    ``(mean, nan)`` for a single value.
    """
    level = _check_level(level)
    x = _clean(values)
    n = x.size
    if n == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan
    s = float(x.std(ddof=1))
    return mean, t_quantile(0.5 + level / 2.0, n - 1) * s / math.sqrt(n)


def batch_means(samples: Sequence[float], n_batches: int = 20, level: float = 0.95) -> tuple[float, float]:
    """Batch-means confidence interval for the mean of one long, stationary run.

    The (NaN-free) series of length n is cut into ``n_batches`` = k
    consecutive batches of b = n // k samples; the n - k b *oldest* samples
    (closest to the warm-up) are dropped so the batches are equal.  If the
    batches are long enough for their means to be roughly independent and
    normal (Law 2015, ch. 9)::

        mean       = average of the k batch means
        half_width = t_{(1+level)/2, k-1} * sd(batch means) / sqrt(k)

    Warm-up must already have been removed by the caller.  Returns
    ``(mean of all samples, nan)`` when there are fewer samples than batches.
    """
    level = _check_level(level)
    if isinstance(n_batches, bool) or int(n_batches) != n_batches or n_batches < 2:
        raise ValueError(f"n_batches must be an integer >= 2, got {n_batches!r}")
    k = int(n_batches)
    x = _clean(samples)
    n = x.size
    if n == 0:
        return math.nan, math.nan
    if n < k:
        return float(x.mean()), math.nan
    b = n // k
    batches = x[n - k * b:].reshape(k, b).mean(axis=1)
    return mean_ci(batches, level)


# --------------------------------------------------------------------------
# tables


def summarize(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Aggregate replications: one row per group of ``by``.

    Output columns: the ``by`` columns, ``replications`` (rows in the group),
    then for every numeric metric ``m`` the mean ``m`` (over non-NaN rows)
    and ``m_ci95``, the 95 % Student-t half-width of :func:`mean_ci` (NaN
    with fewer than two non-NaN values).  Groups keep the order of their first
    appearance; NaN group keys form their own group.  An empty ``by`` yields a
    single row.  Metrics whose column is not numeric (or boolean) are
    skipped; a metric missing from ``df`` raises ``KeyError``.
    """
    import pandas as pd

    by = list(by)
    missing = [c for c in [*by, *metrics] if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in table: {missing}")
    numeric = [m for m in metrics if m not in by and pd.api.types.is_numeric_dtype(df[m])]

    if by:
        groups = [
            (key if isinstance(key, tuple) else (key,), g)
            for key, g in df.groupby(by, sort=False, dropna=False)
        ]
    else:
        groups = [((), df)]

    rows = []
    for key, g in groups:
        row: dict = dict(zip(by, key))
        row["replications"] = len(g)
        for m in numeric:
            mean, half = mean_ci(g[m].to_numpy(dtype=float, na_value=np.nan))
            row[m] = mean
            row[f"{m}_ci95"] = half
        rows.append(row)
    columns = [*by, "replications"] + [c for m in numeric for c in (m, f"{m}_ci95")]
    return pd.DataFrame(rows, columns=columns)
