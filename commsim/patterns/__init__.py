"""The communication patterns, one module each.

Every module in this package that defines ``PATTERN`` (a
:class:`~commsim.patterns.base.Pattern`) is a pattern; the ``pattern`` key of
a config picks one by name.  Adding a pattern is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil

from commsim.patterns.base import Pattern

_REGISTRY: dict[str, Pattern] | None = None


def registry() -> dict[str, Pattern]:
    """All patterns by name (modules are imported on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, Pattern] = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if info.name.startswith("_") or info.name == "base":
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            pattern = getattr(module, "PATTERN", None)
            if isinstance(pattern, Pattern):
                found[pattern.name] = pattern
            for extra in getattr(module, "PATTERNS", ()):
                found[extra.name] = extra
        _REGISTRY = found
    return _REGISTRY


def get(name: str) -> Pattern:
    return registry()[name]


__all__ = ["Pattern", "registry", "get"]
