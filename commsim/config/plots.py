"""Validation of the ``plots:`` section (what a figure of
:mod:`commsim.experiment.plotspec` may ask for).

It lives with the configuration because :func:`commsim.config.load`
validates every section before anything runs, and the configuration
imports nothing from :mod:`commsim.experiment`.
"""

from __future__ import annotations

import difflib

from commsim.errors import ConfigError, describe

KEYS = ("name", "x", "y", "hue", "kind", "logx", "logy", "errorbars", "where",
        "title", "xlabel", "ylabel")


def _hint(value: str, options) -> str:
    near = difflib.get_close_matches(str(value), list(options), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def _where_value(dotted: str, value, swept: list, key: str):
    """Resolve a ``where`` value like the swept key's own values (units) and
    check that the sweep has it."""
    from commsim.config.load import _field_for, resolve_value  # a cycle at import time otherwise

    field = _field_for(dotted)
    try:
        resolved = resolve_value(field, value, key) if field is not None else value
    except ConfigError:
        resolved = value
    if resolved not in swept:
        raise ConfigError(key, f"got {describe(value)}; the sweep has "
                          f"{', '.join(repr(v) for v in swept)}")
    return resolved


def resolve_plots(raw, sweep_keys, sweep_values: dict | None = None) -> list[dict]:
    """Validate a ``plots:`` section against the sweep and the metrics;
    return it with every default filled in.  ``sweep_values`` (dotted key ->
    resolved swept values) lets ``where`` values be checked and resolved."""
    from commsim.metrics import METRICS

    sweep_keys = list(sweep_keys)
    if not isinstance(raw, list):
        raise ConfigError("plots", f"got {describe(raw)}; expected a list of figures, each a mapping "
                          "with at least x and y")
    out, names = [], set()
    for n, spec in enumerate(raw):
        key = f"plots[{n}]"
        if not isinstance(spec, dict):
            raise ConfigError(key, f"got {describe(spec)}; expected a mapping with at least x and y")
        for k in spec:
            if k not in KEYS:
                raise ConfigError(f"{key}.{k}", f"unknown key{_hint(k, KEYS)} (allowed: {', '.join(KEYS)})")
        for k in ("x", "y"):
            if k not in spec:
                raise ConfigError(f"{key}.{k}", "missing; every figure needs x (a swept key) and y (a metric)")
        if not sweep_keys:
            raise ConfigError(f"{key}.x", "the experiment has no sweep; plots need a swept key on the x axis")
        x = spec["x"]
        if x not in sweep_keys:
            raise ConfigError(f"{key}.x", f"got {describe(x)}; expected a swept key: "
                              f"{', '.join(sweep_keys)}{_hint(x, sweep_keys)}")
        ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
        if not ys:
            raise ConfigError(f"{key}.y", "got an empty list; expected a metric name or a list of them")
        for y in ys:
            if not isinstance(y, str):
                raise ConfigError(f"{key}.y", f"got {describe(y)}; expected a metric name or a list "
                                  "of metric names")
            if y not in METRICS and y != "replications":
                raise ConfigError(f"{key}.y", f"got {describe(y)}; expected a metric name (or "
                                  f"'replications'){_hint(y, [*METRICS, 'replications'])}")
        hue = spec.get("hue")
        if hue is not None and (hue not in sweep_keys or hue == x):
            raise ConfigError(f"{key}.hue", f"got {describe(hue)}; expected a swept key other than x: "
                              f"{', '.join(k for k in sweep_keys if k != x) or '(none)'}")
        kind = spec.get("kind", "line")
        if kind not in ("line", "bar"):
            raise ConfigError(f"{key}.kind", f"got {describe(kind)}; expected 'line' or 'bar'")
        flags = {}
        for k, default in (("logx", False), ("logy", False), ("errorbars", True)):
            v = spec.get(k, default)
            if not isinstance(v, bool):
                raise ConfigError(f"{key}.{k}", f"got {describe(v)}; expected true or false")
            flags[k] = v
        if kind == "bar" and flags["logy"]:
            raise ConfigError(f"{key}.logy", "got true with kind: bar; a bar's length means nothing "
                              "on a log axis: use kind: line (points) with logy, or logy: false")
        where = spec.get("where") or {}
        if not isinstance(where, dict):
            raise ConfigError(f"{key}.where", f"got {describe(where)}; expected a mapping of swept keys to values")
        for k in where:
            if k not in sweep_keys or k in (x, hue):
                raise ConfigError(f"{key}.where.{k}", f"expected a swept key other than x and hue"
                                  f"{_hint(k, sweep_keys)}")
        if sweep_values is not None:
            where = {k: _where_value(k, v, sweep_values[k], f"{key}.where.{k}")
                     for k, v in where.items()}
        texts = {}
        for k in ("title", "xlabel", "ylabel"):
            v = spec.get(k)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{key}.{k}", f"got {describe(v)}; expected a string")
            texts[k] = v
        name = spec.get("name") or f"{'_'.join(ys)}_vs_{x.replace('.', '_')}"
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{key}.name", f"got {describe(name)}; expected a file name stem like 'latency'")
        if name in names:
            raise ConfigError(f"{key}.name", f"{name!r} is used by another figure; give each a distinct name")
        names.add(name)
        out.append({"name": name, "x": x, "y": ys if isinstance(spec["y"], list) else ys[0],
                    "hue": hue, "kind": kind, **flags, "where": dict(where), **texts})
    return out
