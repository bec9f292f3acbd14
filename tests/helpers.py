"""Helpers shared by the validation tests (imported as ``helpers``; pytest puts
``tests/`` on the path)."""

import copy
import math

import numpy as np

from commsim.config import load
from commsim.experiment.stats import t_quantile


def within_t(values, expected, rel_width):
    """Assert the 99% Student-t interval of ``values`` (independent
    replications) contains ``expected`` and is narrower than ``rel_width``
    times it, so a model error of that size cannot hide behind a wide
    interval.  Returns the half-width."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    half = t_quantile(0.995, n - 1) * values.std(ddof=1) / math.sqrt(n)
    assert half < rel_width * expected, f"interval too wide: +/-{half:.3g} vs {expected:.3g}"
    assert abs(values.mean() - expected) <= half, (
        f"mean {values.mean():.6g} vs theory {expected:.6g} (99% half-width {half:.3g})")
    return half


def resolved(base: dict, **sections) -> dict:
    """The resolved run config of ``base`` with sections updated (dicts are
    merged into the section, other values replace the key)."""
    raw = copy.deepcopy(base)
    for name, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(name, {}).update(values)
        else:
            raw[name] = values
    return load(raw).points[0].config


def balanced(m: dict) -> None:
    """The message ledger of one run balances: every message sent was
    delivered, dropped (given up on) or is still in flight at the end."""
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"], m


def same(a: dict, b: dict) -> None:
    """Two runs' metrics are identical, key by key (NaN equals NaN)."""
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert v == b[k] or (isinstance(v, float) and math.isnan(v) and math.isnan(b[k])), k
