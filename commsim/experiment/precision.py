"""Run replications until the confidence interval is narrow enough.

``--precision 2%`` (or a ``precision:`` section in the YAML) asks, for every
sweep point, for the 95 % Student-t half-width of each target metric to be at
most 2 % of its mean, running more replications until it is, or until
``max_replications`` (the cap) is reached.

Procedure (the sequential procedure of A. M. Law, *Simulation Modeling and
Analysis*, 5th ed., sec. 9.4.1): start with ``n0 = max(replications,
min_replications)`` replications per point; while a point's relative
half-width ``hw / |mean|`` exceeds ``gamma' = gamma / (1 + gamma)`` (which
makes the actual relative error at most ``gamma`` with about 95 %
confidence), add replications.  Since ``hw`` shrinks like ``1/sqrt(n)``, a
point needs about ``n * (hw_rel / gamma')^2`` replications; each wave asks
for that many, at most doubling ``n`` (the estimate is noisy when ``n`` is
small) and never beyond the cap.  Waves are decided from finished runs only,
so the replications run are the same on any executor.

Assumptions: replication results are i.i.d. and roughly normal (the t
interval); a metric whose mean is 0 with zero spread counts as precise;
metrics missing or NaN in a point are not targets there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass
class Precision:
    """A relative half-width target for some metrics, with a cap."""

    target: float
    metrics: tuple[str, ...] = DEFAULT_METRICS
    max_replications: int = DEFAULT_MAX
    min_replications: int = DEFAULT_MIN

    @classmethod
    def from_config(cls, section: dict | None) -> "Precision | None":
        if not section:
            return None
        return cls(float(section["target"]), tuple(section["metrics"]),
                   int(section["max_replications"]), int(section["min_replications"]))

    @property
    def adjusted(self) -> float:
        """Law's gamma' = gamma / (1 + gamma)."""
        return self.target / (1.0 + self.target)

    def relative_half_widths(self, rows: list[dict]) -> dict[str, float]:
        """{metric: hw / |mean|} over the replications ``rows`` (metrics dicts)."""
        from commsim.experiment.stats import mean_ci

        out = {}
        for m in self.metrics:
            values = [r.get(m) for r in rows]
            values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and not math.isnan(float(v))]
            if not values:
                continue
            mean, hw = mean_ci(values)
            if len(values) < 2:
                out[m] = math.inf
            elif hw == 0.0:
                out[m] = 0.0
            elif mean == 0.0:
                out[m] = math.inf
            else:
                out[m] = hw / abs(mean)
        return out

    def more(self, exp, by_point: dict[int, list[dict]], failed: set[int],
             reps: dict[int, int]) -> dict[int, int]:
        """{point: new replication count} for points not yet precise enough."""
        goal = self.adjusted
        out = {}
        for i, n in reps.items():
            if i in failed or n >= self.max_replications:
                continue
            rel = self.relative_half_widths(by_point.get(i, []))
            worst = max(rel.values(), default=0.0)
            if worst <= goal:
                continue
            need = n * (worst / goal) ** 2 if math.isfinite(worst) else 2 * n
            new_n = min(self.max_replications, max(n + 1, min(math.ceil(need), 2 * n)))
            out[i] = new_n
        return out

    def report(self, exp, summary) -> dict:
        """Per sweep point: replications run, relative half-widths, target met."""
        points = []
        for _, row in summary.iterrows():
            entry = {k: _plain(row[k]) for k in exp.sweep}
            entry["replications"] = int(row["replications"])
            met = True
            for m in self.metrics:
                if m in row and f"{m}_ci95" in row:
                    mean, hw = row[m], row[f"{m}_ci95"]
                    rel = (hw / abs(mean)) if mean and not math.isnan(hw) else (0.0 if hw == 0 else math.inf)
                    entry[f"{m}_rel_ci95"] = float(rel)
                    met = met and bool(rel <= self.adjusted)
            entry["target_met"] = met
            points.append(entry)
        return {"target": self.target, "metrics": list(self.metrics),
                "max_replications": self.max_replications, "points": points}


def _plain(v):
    item = getattr(v, "item", None)
    return item() if callable(item) else v
