"""Parse quantities with units, as written in experiment YAML.

Every parser has the signature ``(value, key) -> float`` and returns the value
in *base units*; ``key`` is the dotted YAML path used in error messages.

Grammar
-------
A value is either a bare YAML number (``int`` or ``float``, but not a
``bool``) or a string::

    value  := number | number [spaces] unit
    number := [+|-] digits [. digits] [(e|E) [+|-] digits]     (also ".5")

A bare number, or a string holding only a number (``"0.5"``), is taken in
the base unit of its kind.  Units are case-sensitive, because ``Mb`` (bits)
and ``MB`` (bytes) differ; the complete lists are:

==========  ============  =============================================
kind        base unit     units accepted
==========  ============  =============================================
duration    second        ns, us, µs (also Greek μs), ms, s, sec, min, h
size        byte          B; KB = kB = 1000 B, MB = 1e6 B, GB = 1e9 B;
                          KiB = 1024 B, MiB = 1024**2 B, GiB = 1024**3 B
rate        per second    /ns, /us, /µs, /μs, /ms, /s, /sec, /min, /h
                          (spaces around ``/`` allowed: ``"10 / min"``)
bandwidth   bit/second    bps, Kbps = kbps, Mbps, Gbps (decimal, bits);
                          B/s, KB/s = kB/s, MB/s, GB/s (decimal, bytes,
                          i.e. times 8); KiB/s, MiB/s, GiB/s (binary)
number      1             none: a plain number or numeric string
==========  ============  =============================================

Examples: ``"250us"`` -> 2.5e-4, ``"2min"`` -> 120.0, ``"4KiB"`` -> 4096.0,
``"10/min"`` -> 1/6, ``"100Mbps"`` -> 1e8, ``"12.5MB/s"`` -> 1e8.

Negative values parse (``"-5ms"`` -> -0.005): range checks belong to the
caller, which knows what the quantity means.  NaN and infinities are
rejected in every form (``"nan"``, ``"inf"``, ``float("inf")``), as is a
result that overflows to infinity (``"1e308GB"``).  Every failure raises
:class:`~commsim.errors.ConfigError` naming the key, the offending value and
the allowed forms (:data:`UNIT_HELP`).
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Callable

from commsim.errors import ConfigError, describe

__all__ = [
    "parse_duration",
    "parse_size",
    "parse_rate",
    "parse_bandwidth",
    "parse_number",
    "PARSERS",
    "UNIT_HELP",
]

_NUMBER_RE = re.compile(
    r"""^\s*
    (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    \s*
    (?P<unit>\S.*?)?
    \s*$""",
    re.VERBOSE,
)

# Seconds per unit.
_TIME_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek small letter mu
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
}

_SIZE_UNITS: dict[str, float] = {
    "B": 1.0,
    "KB": 1e3,
    "kB": 1e3,
    "KiB": 1024.0,
    "MB": 1e6,
    "MiB": 1024.0**2,
    "GB": 1e9,
    "GiB": 1024.0**3,
}

# Events per second, for "<n>/<time unit>".
_RATE_UNITS: dict[str, float] = {"/" + u: 1.0 / f for u, f in _TIME_UNITS.items()}

# Bits per second.
_BANDWIDTH_UNITS: dict[str, float] = {
    "bps": 1.0,
    "Kbps": 1e3,
    "kbps": 1e3,
    "Mbps": 1e6,
    "Gbps": 1e9,
    **{f"{u}/s": 8.0 * f for u, f in _SIZE_UNITS.items()},
}

UNIT_HELP: dict[str, str] = {
    "duration": (
        "a duration like 250us, 20ms, 1.5s or 2min "
        "(units ns, us, µs, ms, s, sec, min, h; a bare number means seconds)"
    ),
    "size": (
        "a size like 871B, 4KiB or 1.5MB "
        "(units B, KB = kB = 1000 B, MB, GB, KiB = 1024 B, MiB, GiB; "
        "a bare number means bytes)"
    ),
    "rate": (
        "a rate like 800/s, 10/min or 5/ms "
        "(per ns, us, µs, ms, s, sec, min, h; a bare number means per second)"
    ),
    "bandwidth": (
        "a bandwidth like 100Mbps, 1Gbps or 12.5MB/s "
        "(bits: bps, Kbps, Mbps, Gbps; bytes: B/s, KB/s, MB/s, GB/s, KiB/s, "
        "MiB/s, GiB/s; a bare number means bits per second)"
    ),
    "number": "a plain number like 3, 0.25 or 1e-3",
}


def _is_plain_number(value: Any) -> bool:
    """True for int/float-like values, excluding bools (YAML ``yes``/``true``)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parse(value: Any, key: str, kind: str, units: dict[str, float]) -> float:
    """Parse ``value`` as ``kind`` using the unit table ``units``.

    ``units`` maps unit text to the number of base units it stands for; an
    empty table means only plain numbers are accepted.
    """
    if _is_plain_number(value):
        result = float(value)
        if not math.isfinite(result):
            raise ConfigError(
                key, f"got {describe(value)}; expected a finite value: {UNIT_HELP[kind]}"
            )
        return result
    if not isinstance(value, str):
        raise ConfigError(key, f"got {describe(value)}; expected {UNIT_HELP[kind]}")

    match = _NUMBER_RE.match(value)
    if match is None:
        raise ConfigError(key, f"got {describe(value)}; expected {UNIT_HELP[kind]}")
    number = float(match["number"])
    unit = match["unit"]
    if unit is None:
        factor = 1.0
    else:
        unit = re.sub(r"\s*/\s*", "/", unit)
        if unit not in units:
            raise ConfigError(
                key,
                f"got {describe(value)}; unknown unit {unit!r}, "
                f"expected {UNIT_HELP[kind]}",
            )
        factor = units[unit]
    result = number * factor
    if not math.isfinite(result):
        raise ConfigError(
            key, f"got {describe(value)}; too large, expected {UNIT_HELP[kind]}"
        )
    return result


def parse_duration(value: Any, key: str) -> float:
    """Parse a duration; returns seconds.  A bare number means seconds."""
    return _parse(value, key, "duration", _TIME_UNITS)


def parse_size(value: Any, key: str) -> float:
    """Parse a size; returns bytes.  A bare number means bytes."""
    return _parse(value, key, "size", _SIZE_UNITS)


def parse_rate(value: Any, key: str) -> float:
    """Parse an event rate; returns events per second (a bare number)."""
    return _parse(value, key, "rate", _RATE_UNITS)


def parse_bandwidth(value: Any, key: str) -> float:
    """Parse a bandwidth; returns bits per second (a bare number)."""
    return _parse(value, key, "bandwidth", _BANDWIDTH_UNITS)


def parse_number(value: Any, key: str) -> float:
    """Parse a dimensionless number: an int/float or a numeric string."""
    return _parse(value, key, "number", {})


PARSERS: dict[str, Callable[[Any, str], float]] = {
    "duration": parse_duration,
    "size": parse_size,
    "rate": parse_rate,
    "bandwidth": parse_bandwidth,
    "number": parse_number,
}
