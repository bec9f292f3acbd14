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


# The precision: section is validated with the rest of the configuration.
from commsim.config.precision import (  # noqa: E402,F401
    DEFAULT_MAX, DEFAULT_METRICS, DEFAULT_MIN, KEYS, parse_target, resolve_section)


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
