"""Validation of the ``precision:`` section (the target of
:mod:`commsim.experiment.precision`).

It lives with the configuration because :func:`commsim.config.load`
validates every section before anything runs, and the configuration
imports nothing from :mod:`commsim.experiment`.
"""

from __future__ import annotations

import math

from commsim.errors import ConfigError, describe

DEFAULT_METRICS = ("throughput", "latency_mean")
DEFAULT_MAX = 100
DEFAULT_MIN = 3
KEYS = ("target", "metrics", "max_replications", "min_replications")


def parse_target(value, key: str = "precision.target") -> float:
    """``2%`` or ``0.02`` -> 0.02 (a relative half-width in (0, 1))."""
    text = value
    if isinstance(value, str):
        s = value.strip()
        try:
            number = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
        except ValueError:
            raise ConfigError(key, f"got {describe(value)}; expected a relative half-width such as "
                              "2% or 0.02") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ConfigError(key, f"got {describe(text)}; expected a relative half-width such as 2% or 0.02")
    if not 0.0 < number < 1.0 or math.isnan(number):
        raise ConfigError(key, f"got {describe(text)}; expected a relative half-width above 0% "
                          "and below 100%, such as 2% or 0.02")
    return number


def resolve_section(raw, key: str = "precision") -> dict | None:
    """Validate a ``precision:`` section; returns its resolved form (or None)."""
    from commsim.metrics import METRICS

    if raw is None:
        return None
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        raw = {"target": raw}
    if not isinstance(raw, dict):
        raise ConfigError(key, f"got {describe(raw)}; expected a mapping with target, metrics, "
                          "max_replications, min_replications")
    for k in raw:
        if k not in KEYS:
            import difflib

            near = difflib.get_close_matches(str(k), KEYS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{key}.{k}", f"unknown key{hint} (allowed: {', '.join(KEYS)})")
    if "target" not in raw:
        raise ConfigError(f"{key}.target", "missing; expected a relative half-width such as 2% or 0.02")
    target = parse_target(raw["target"], f"{key}.target")
    metrics = raw.get("metrics", list(DEFAULT_METRICS))
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics:
        raise ConfigError(f"{key}.metrics", f"got {describe(metrics)}; expected a list of metric names")
    for m in metrics:
        if m not in METRICS:
            import difflib

            near = difflib.get_close_matches(str(m), list(METRICS), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{key}.metrics", f"unknown metric {m!r}{hint}")
    out = {"target": target, "metrics": list(metrics)}
    for name, default in (("max_replications", DEFAULT_MAX), ("min_replications", DEFAULT_MIN)):
        v = raw.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ConfigError(f"{key}.{name}", f"got {describe(v)}; expected an integer >= 2")
        out[name] = v
    if out["min_replications"] > out["max_replications"]:
        raise ConfigError(f"{key}.min_replications", f"got {out['min_replications']}; expected at most "
                          f"max_replications ({out['max_replications']})")
    return out
