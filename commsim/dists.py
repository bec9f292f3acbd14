"""Probability distributions of durations, sizes, rates or plain numbers.

A distribution is written in YAML either as a bare value (a constant) or as
a mapping with a ``dist`` name and parameters::

    service_time: 2ms                                   # Constant
    service_time: {dist: constant, value: 2ms}
    service_time: {dist: exponential, mean: 1ms}        # or rate: 1000/s (durations only)
    service_time: {dist: uniform, low: 1ms, high: 3ms}
    service_time: {dist: lognormal, mean: 2ms, cv: 1.5}
    service_time: {dist: normal, mean: 2ms, sd: 0.5ms}  # truncated at zero
    service_time: {dist: pareto, shape: 2.5, scale: 1ms}   # or mean: 2ms
    service_time: {dist: empirical, file: times.csv, column: latency, unit: ms}

:func:`make_distribution` parses every parameter that carries units with the
parser of the given *kind* (see :mod:`commsim.units`), so all numbers held
here are in base units (seconds, bytes, per second, bits per second).
Dimensionless parameters (``cv``, ``shape``) are plain numbers.

Every :class:`Distribution` exposes ``mean``, ``variance`` (``math.inf``
when infinite), ``scv`` (squared coefficient of variation), ``is_constant``,
``to_config()``, ``sample(rng, n)`` and ``sampler(rng)``.

Speed
-----
``sampler(rng)`` returns a zero-argument callable for use inside simulation
processes.  It draws ``BLOCK = 4096`` values at a time with vectorised
numpy, converts them to a Python list and pops one per call.  Measured with
``timeit`` (CPython 3.11, numpy 2.4, one core of the development machine;
block refill cost included): about 0.06 µs per call for exponential and
uniform, 0.07 µs for lognormal, truncated normal and pareto, against 0.03
µs for a Constant's closure, which never touches the RNG.  A plain
``rng.exponential()`` call costs about 0.4 µs for comparison.

Determinism: the values a sampler yields depend only on the state of its
generator when each block is drawn.  Give each sampler its own stream
(:class:`commsim.rng.Streams`); a generator shared between consumers is
still deterministic, but its values then depend on the interleaving.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from commsim.errors import ConfigError, describe
from commsim.units import PARSERS, UNIT_HELP

__all__ = [
    "BLOCK",
    "DIST_NAMES",
    "Distribution",
    "Constant",
    "Exponential",
    "Uniform",
    "Lognormal",
    "Normal",
    "Pareto",
    "Empirical",
    "make_distribution",
]

BLOCK = 4096
"""Number of values a buffered sampler draws per refill."""

# Kinds whose values are physical magnitudes and so cannot be negative.
_NON_NEGATIVE_KINDS = frozenset({"duration", "size", "rate", "bandwidth"})


class Distribution:
    """Base class.  Subclasses set ``mean`` and ``variance`` (floats, base units)."""

    name: str = ""
    mean: float
    variance: float

    @property
    def scv(self) -> float:
        """Squared coefficient of variation, ``variance / mean**2``.

        ``0.0`` for a zero-variance distribution (including a constant 0) and
        ``math.inf`` when the variance is infinite or the mean is zero with
        positive variance.
        """
        if self.variance == 0.0:
            return 0.0
        if math.isinf(self.variance) or self.mean == 0.0:
            return math.inf
        return self.variance / self.mean**2

    @property
    def is_constant(self) -> bool:
        """True when every sample equals the mean (zero variance)."""
        return self.variance == 0.0

    def to_config(self) -> Any:
        """The canonical resolved YAML form, numbers in base units."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` independent values as a float64 array of shape ``(n,)``."""
        raise NotImplementedError

    def sampler(self, rng: np.random.Generator, block: int = BLOCK) -> Callable[[], float]:
        """Return a callable yielding one float per call, buffered in blocks.

        The k-th value returned equals element k of the concatenation of
        ``self.sample(rng, block)`` calls made in sequence.
        """
        sample = self.sample
        buf: list[float] = []
        pop = buf.pop

        def draw() -> float:
            if not buf:
                buf.extend(sample(rng, block)[::-1].tolist())
            return pop()

        return draw

    def block_sampler(self, rng: np.random.Generator, block: int = BLOCK) -> Callable[[int], list]:
        """Return ``take(k)``: the next ``k`` values as a list, the same
        sequence :meth:`sampler` yields on the same generator (the same
        blocks of ``block`` values, in order).  Use one or the other on a
        stream, not both."""
        sample = self.sample
        state = {"cur": [], "pos": 0}

        def take(k: int) -> list:
            cur, pos = state["cur"], state["pos"]
            if pos + k <= len(cur):
                state["pos"] = pos + k
                return cur[pos:pos + k]
            out = cur[pos:]
            k -= len(out)
            while True:
                cur = sample(rng, block).tolist()
                if k <= len(cur):
                    out += cur[:k]
                    state["cur"], state["pos"] = cur, k
                    return out
                out += cur
                k -= len(cur)

        return take

    def __repr__(self) -> str:
        cfg = self.to_config()
        if not isinstance(cfg, dict):
            return f"{type(self).__name__}({cfg!r})"
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "dist")
        return f"{type(self).__name__}({args})"


class Constant(Distribution):
    """Always ``value``.  Its sampler never touches the generator."""

    name = "constant"

    def __init__(self, value: float):
        self.value = float(value)
        self.mean = self.value
        self.variance = 0.0

    def to_config(self) -> float:
        return self.value

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value)

    def sampler(self, rng: np.random.Generator, block: int = BLOCK) -> Callable[[], float]:
        value = self.value
        return lambda: value

    def block_sampler(self, rng: np.random.Generator, block: int = BLOCK) -> Callable[[int], list]:
        value = self.value
        return lambda k: [value] * k

    def __repr__(self) -> str:
        return f"Constant(value={self.value!r})"


class Exponential(Distribution):
    """Exponential with the given ``mean`` (> 0); variance ``mean**2``."""

    name = "exponential"

    def __init__(self, mean: float):
        self.mean = float(mean)
        self.variance = self.mean**2

    def to_config(self) -> dict[str, Any]:
        return {"dist": self.name, "mean": self.mean}

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean, n)


class Uniform(Distribution):
    """Continuous uniform on ``[low, high]`` (``low <= high``)."""

    name = "uniform"

    def __init__(self, low: float, high: float):
        self.low = float(low)
        self.high = float(high)
        self.mean = (self.low + self.high) / 2.0
        self.variance = (self.high - self.low) ** 2 / 12.0

    def to_config(self) -> dict[str, Any]:
        return {"dist": self.name, "low": self.low, "high": self.high}

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n)


class Lognormal(Distribution):
    """Lognormal given by its own ``mean`` (> 0) and coefficient of variation ``cv`` (>= 0).

    ``mean`` and ``cv`` describe the distribution itself, not the underlying
    normal: with ``sigma**2 = log(1 + cv**2)`` and ``mu = log(mean) -
    sigma**2 / 2``, ``X = exp(N(mu, sigma**2))`` has mean ``mean`` and
    standard deviation ``cv * mean``.  ``cv = 0`` yields exactly ``mean``.
    """

    name = "lognormal"

    def __init__(self, mean: float, cv: float):
        self.mean = float(mean)
        self.cv = float(cv)
        self.variance = (self.cv * self.mean) ** 2
        self.sigma = math.sqrt(math.log1p(self.cv**2))
        self.mu = math.log(self.mean) - self.sigma**2 / 2.0

    def to_config(self) -> dict[str, Any]:
        return {"dist": self.name, "mean": self.mean, "cv": self.cv}

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sigma == 0.0:
            return np.full(n, self.mean)
        return rng.lognormal(self.mu, self.sigma, n)


def _phi(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _Phi(x: float) -> float:
    """Standard normal distribution function, via ``math.erf``."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


class Normal(Distribution):
    """Normal ``N(mu, sd**2)`` truncated at zero: negative draws are resampled.

    The parameters ``mu`` (written ``mean`` in YAML, >= 0) and ``sd`` (>= 0)
    are those of the *untruncated* normal.  The attributes ``mean`` and
    ``variance`` are those of the *truncated* distribution actually sampled,
    in closed form: with ``a = -mu/sd``, ``Z = 1 - Phi(a) = Phi(mu/sd)`` and
    ``lam = phi(a) / Z``,

        mean     = mu + sd * lam
        variance = sd**2 * (1 + a * lam - lam**2)

    (``phi``/``Phi`` the standard normal pdf/cdf, ``Phi`` via ``math.erf``).
    ``mu >= 0`` keeps the rejection rate at or below one half.
    """

    name = "normal"

    def __init__(self, mu: float, sd: float):
        self.mu = float(mu)
        self.sd = float(sd)
        if self.sd == 0.0:
            self.mean, self.variance = self.mu, 0.0
        else:
            a = -self.mu / self.sd
            lam = _phi(a) / _Phi(self.mu / self.sd)
            self.mean = self.mu + self.sd * lam
            self.variance = self.sd**2 * (1.0 + a * lam - lam**2)

    def to_config(self) -> dict[str, Any]:
        return {"dist": self.name, "mean": self.mu, "sd": self.sd}

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.normal(self.mu, self.sd, n)
        redo = np.flatnonzero(x < 0.0)
        while redo.size:
            x[redo] = rng.normal(self.mu, self.sd, redo.size)
            redo = redo[x[redo] < 0.0]
        return x

    def __repr__(self) -> str:
        return f"Normal(mu={self.mu!r}, sd={self.sd!r}, truncated_mean={self.mean!r})"


class Pareto(Distribution):
    """Pareto type I: ``P(X > x) = (scale / x)**shape`` for ``x >= scale``.

    ``shape > 0`` and ``scale > 0``.  ``mean = shape*scale/(shape-1)`` for
    ``shape > 1``, else ``math.inf``; ``variance = scale**2 * shape /
    ((shape-1)**2 * (shape-2))`` for ``shape > 2``, else ``math.inf``.
    Draws are ``scale * exp(E / shape)`` with ``E`` standard exponential, so a
    shape below about 0.05 can overflow to ``inf`` with non-negligible
    probability (``E > 709 * shape``).
    """

    name = "pareto"

    def __init__(self, shape: float, scale: float):
        self.shape = float(shape)
        self.scale = float(scale)
        a, xm = self.shape, self.scale
        self.mean = a * xm / (a - 1.0) if a > 1.0 else math.inf
        self.variance = xm**2 * a / ((a - 1.0) ** 2 * (a - 2.0)) if a > 2.0 else math.inf

    def to_config(self) -> dict[str, Any]:
        return {"dist": self.name, "shape": self.shape, "scale": self.scale}

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # numpy's pareto() is Lomax (Pareto II, support >= 0); shift and scale.
        return self.scale * (1.0 + rng.pareto(self.shape, n))


class Empirical(Distribution):
    """Bootstrap from observed values: each draw picks one value uniformly.

    ``values`` are in base units.  ``mean`` and ``variance`` are those of the
    observed values themselves (population variance, ``ddof=0``), which is
    exactly the distribution being sampled.  ``file``, ``column`` and
    ``unit`` are kept as written, for :meth:`to_config`; ``path`` is the
    file actually read (``file`` resolved against ``base_dir``), or None.
    A relative ``file`` in :meth:`to_config` output must be re-parsed with
    the same ``base_dir`` to find the same CSV.
    """

    name = "empirical"

    def __init__(
        self,
        values: np.ndarray,
        file: str = "",
        column: str = "",
        unit: str | None = None,
        path: Path | None = None,
    ):
        self.values = np.asarray(values, dtype=float)
        if self.values.ndim != 1 or self.values.size == 0:
            raise ValueError("Empirical needs a non-empty 1-d array of values")
        self.file = file
        self.column = column
        self.unit = unit
        self.path = path
        self.mean = float(self.values.mean())
        self.variance = float(self.values.var())

    def to_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"dist": self.name, "file": self.file, "column": self.column}
        if self.unit is not None:
            cfg["unit"] = self.unit
        return cfg

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.values[rng.integers(0, self.values.size, n)]

    def __repr__(self) -> str:
        unit = f", unit={self.unit!r}" if self.unit is not None else ""
        return (
            f"Empirical(file={self.file!r}, column={self.column!r}{unit}, "
            f"n={self.values.size}, mean={self.mean!r})"
        )


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

DIST_NAMES: tuple[str, ...] = (
    "constant",
    "exponential",
    "uniform",
    "lognormal",
    "normal",
    "pareto",
    "empirical",
)



def _forms(kind: str) -> str:
    """What a distribution of ``kind`` may look like, for error messages."""
    return (
        f"{UNIT_HELP[kind]} for a constant, or a mapping like "
        f"{{dist: exponential, mean: ...}} with dist one of: {', '.join(DIST_NAMES)}"
    )


class _Params:
    """The parameters of one ``{dist: ...}`` mapping, checked as they are read."""

    def __init__(self, spec: Mapping[str, Any], dist: str, key: str, kind: str,
                 allowed: tuple[str, ...], needs: str):
        self.spec = spec
        self.dist = dist
        self.key = key
        self.kind = kind
        self.allowed = allowed
        self.needs = needs
        for name in spec:
            if name != "dist" and name not in allowed:
                raise ConfigError(
                    f"{key}.{name}",
                    f"unknown parameter for dist {dist!r}; allowed: {', '.join(allowed)}",
                )

    def has(self, name: str) -> bool:
        return name in self.spec

    def missing(self, name: str) -> ConfigError:
        return ConfigError(
            f"{self.key}.{name}",
            f"missing; dist {self.dist!r} needs {self.needs} "
            f"(allowed parameters: {', '.join(self.allowed)})",
        )

    def number(self, name: str, kind: str | None = None, *,
               minimum: float | None = None, strict: bool = False) -> float:
        """Parse parameter ``name`` with ``kind``'s parser (default: the dist's kind).

        Values of a physical kind (duration, size, rate, bandwidth) must be
        >= 0; ``minimum``/``strict`` add a bound (``> minimum`` if strict).
        """
        if name not in self.spec:
            raise self.missing(name)
        kind = kind or self.kind
        pkey = f"{self.key}.{name}"
        raw = self.spec[name]
        value = PARSERS[kind](raw, pkey)
        _check_bound(value, raw, pkey, kind, minimum, strict)
        return value

    def text(self, name: str) -> str:
        if name not in self.spec:
            raise self.missing(name)
        raw = self.spec[name]
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigError(
                f"{self.key}.{name}", f"got {describe(raw)}; expected a non-empty string"
            )
        return raw


def _check_bound(value: float, raw: Any, key: str, kind: str,
                 minimum: float | None, strict: bool) -> None:
    if kind in _NON_NEGATIVE_KINDS and value < 0.0:
        raise ConfigError(key, f"got {describe(raw)}; a {kind} can't be negative")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ConfigError(key, f"got {describe(raw)}; must be {relation} {minimum:g}")


def make_distribution(spec: Any, kind: str, key: str,
                      base_dir: str | os.PathLike[str] | None = None) -> Distribution:
    """Build a :class:`Distribution` from its YAML form.

    ``kind`` (a key of :data:`commsim.units.PARSERS`) gives the parser for
    every parameter that carries units; ``key`` is the dotted YAML path used
    in errors (parameter errors name ``key.param``).  ``base_dir`` resolves a
    relative ``empirical`` file path (e.g. the directory of the config
    file); without it, relative paths are relative to the working directory.

    Raises :class:`~commsim.errors.ConfigError` for anything a user could
    have written wrong, and :class:`ValueError` for an unknown ``kind``.
    """
    if kind not in PARSERS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(PARSERS)}")

    if isinstance(spec, Mapping):
        return _from_mapping(spec, kind, key, base_dir)
    if isinstance(spec, (str, numbers.Real)) and not isinstance(spec, bool):
        value = PARSERS[kind](spec, key)
        _check_bound(value, spec, key, kind, None, False)
        return Constant(value)
    raise ConfigError(key, f"got {describe(spec)}; expected {_forms(kind)}")


def _from_mapping(spec: Mapping[str, Any], kind: str, key: str,
                  base_dir: str | os.PathLike[str] | None) -> Distribution:
    if "dist" not in spec:
        raise ConfigError(f"{key}.dist", f"missing; expected {_forms(kind)}")
    dist = spec["dist"]
    if not isinstance(dist, str) or dist not in DIST_NAMES:
        raise ConfigError(
            f"{key}.dist", f"got {describe(dist)}; expected one of: {', '.join(DIST_NAMES)}"
        )

    if dist == "constant":
        p = _Params(spec, dist, key, kind, ("value",), "value")
        return Constant(p.number("value"))

    if dist == "exponential":
        if kind == "duration":
            p = _Params(spec, dist, key, kind, ("mean", "rate"), "exactly one of mean, rate")
            if p.has("mean") == p.has("rate"):
                if p.has("mean"):
                    raise ConfigError(
                        f"{key}.rate", "give either mean or rate, not both (mean = 1/rate)"
                    )
                raise p.missing("mean")
            if p.has("rate"):
                return Exponential(1.0 / p.number("rate", "rate", minimum=0.0, strict=True))
        else:
            p = _Params(spec, dist, key, kind, ("mean",), "mean")
        return Exponential(p.number("mean", minimum=0.0, strict=True))

    if dist == "uniform":
        p = _Params(spec, dist, key, kind, ("low", "high"), "low and high")
        low = p.number("low")
        high = p.number("high")
        if high < low:
            raise ConfigError(
                f"{key}.high", f"got {describe(spec['high'])}; must be >= low ({describe(spec['low'])})"
            )
        return Uniform(low, high)

    if dist == "lognormal":
        p = _Params(spec, dist, key, kind, ("mean", "cv"), "mean and cv")
        mean = p.number("mean", minimum=0.0, strict=True)
        return Lognormal(mean, p.number("cv", "number", minimum=0.0))

    if dist == "normal":
        p = _Params(spec, dist, key, kind, ("mean", "sd"), "mean and sd")
        mu = p.number("mean", minimum=0.0)
        return Normal(mu, p.number("sd", minimum=0.0))

    if dist == "pareto":
        p = _Params(spec, dist, key, kind, ("shape", "scale", "mean"),
                    "shape and exactly one of scale, mean")
        shape = p.number("shape", "number", minimum=0.0, strict=True)
        if p.has("scale") == p.has("mean"):
            if p.has("scale"):
                raise ConfigError(
                    f"{key}.mean",
                    "give either scale or mean, not both (scale = mean*(shape-1)/shape)",
                )
            raise p.missing("scale")
        if p.has("scale"):
            return Pareto(shape, p.number("scale", minimum=0.0, strict=True))
        mean = p.number("mean", minimum=0.0, strict=True)
        if shape <= 1.0:
            raise ConfigError(
                f"{key}.shape",
                f"got {describe(spec['shape'])}; a pareto given by its mean needs shape > 1 "
                "(the mean is infinite otherwise); give scale instead",
            )
        return Pareto(shape, mean * (shape - 1.0) / shape)

    assert dist == "empirical"
    p = _Params(spec, dist, key, kind, ("file", "column", "unit"), "file and column")
    return _empirical(p, base_dir)


def _unit_factor(p: _Params, unit: str) -> float:
    """Base units per unit of the CSV numbers, e.g. 0.001 for ``unit: ms`` (duration)."""
    ukey = f"{p.key}.unit"
    text = unit.strip()
    # A unit alone ("ms", "/min", "Mbps") is parsed as one of it; "10ms" as written.
    candidate = text if text[:1].isdigit() or text[:1] == "." else "1" + text
    try:
        factor = PARSERS[p.kind](candidate, ukey)
    except ConfigError:
        raise ConfigError(
            ukey, f"got {describe(unit)}; expected a unit of {UNIT_HELP[p.kind]}"
        ) from None
    if not factor > 0.0:
        raise ConfigError(ukey, f"got {describe(unit)}; must be a positive unit")
    return factor


def _empirical(p: _Params, base_dir: str | os.PathLike[str] | None) -> Empirical:
    file = p.text("file")
    column = p.text("column")
    unit = p.text("unit") if p.has("unit") else None
    factor = _unit_factor(p, unit) if unit is not None else 1.0

    path = Path(file).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    path = path.absolute()
    fkey, ckey = f"{p.key}.file", f"{p.key}.column"
    if not path.is_file():
        what = "not a regular file" if path.exists() else "no such file"
        raise ConfigError(fkey, f"got {describe(file)}; {what}: {path} (expected a CSV file)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(fkey, f"got {describe(file)}; cannot read {path} as CSV: {exc}") from None
    if not rows:
        raise ConfigError(fkey, f"got {describe(file)}; {path} is empty, expected a CSV with a header row")

    header = [h.strip() for h in rows[0]]
    if column.strip() not in header:
        # The file's contents are never echoed (it may not be a CSV at all):
        # only a header name close to the one asked for is suggested.
        import difflib

        close = difflib.get_close_matches(column.strip(), header, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            ckey,
            f"got {describe(column)}; the header row of {path} ({len(header)} column(s)) has no "
            f"column of that name{hint}",
        )
    index = header.index(column.strip())

    values: list[float] = []
    for line, row in enumerate(rows[1:], start=2):
        cell = row[index].strip() if index < len(row) else ""
        if not cell:
            continue  # blank cell: columns of a CSV may have different lengths
        try:
            x = float(cell)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise ConfigError(
                ckey,
                f"line {line} of {path}, column {column!r}, is not a finite plain number "
                "(expected e.g. 12.5; give the unit with 'unit:')",
            )
        x *= factor
        if p.kind in _NON_NEGATIVE_KINDS and x < 0.0:
            raise ConfigError(
                ckey, f"line {line} of {path}, column {column!r}, holds a negative value; a {p.kind} can't be negative"
            )
        values.append(x)
    if not values:
        raise ConfigError(ckey, f"column {column!r} of {path} has no values")
    return Empirical(np.array(values), file=file, column=column, unit=unit, path=path)
