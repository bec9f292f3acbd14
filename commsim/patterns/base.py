"""What a pattern provides to the runner.

A :class:`Pattern` names its config sections (registered in
:mod:`commsim.config.schema`) and a ``model`` factory: ``model(sim)`` builds
the pattern's nodes and processes on a fresh
:class:`~commsim.engine.Simulation`; after ``sim.run()`` the runner calls
``model.metrics()``, which returns ``{metric_name: value}`` using only names
defined in :mod:`commsim.metrics`.  ``figures(result, out_dir)`` optionally
draws the pattern's standard figures from a finished experiment.
``check(config)`` optionally rejects, with a
:class:`~commsim.errors.ConfigError`, a resolved run config the pattern cannot
model (a combination of keys across sections); it runs at load time, so the
error comes before anything runs or is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Pattern:
    name: str
    summary: str
    model: Callable[[Any], Any]
    sections: tuple[str, ...] = ()
    figures: Callable | None = field(default=None, compare=False)
    check: Callable[[dict], None] | None = field(default=None, compare=False)
