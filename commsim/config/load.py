"""Load, validate and resolve experiment configurations.

Resolution turns what a user wrote (units, distributions, omitted keys) into a
canonical plain-data form: every value in base units (seconds, bytes, per
second, bits per second), every distribution as a mapping, every default
filled in.  The resolved form is itself a valid configuration, is what
``config.resolved.yaml`` holds, and is what a run receives (plain dicts, so a
run can be pickled to another process or machine).

Every problem raises :class:`~commsim.errors.ConfigError` naming the key path,
the value and what is allowed; nothing is written before validation passes.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from commsim.config.schema import CORE_SECTIONS, SECTIONS, TOP_LEVEL, Field, Section
from commsim.errors import ConfigError, describe

#: Top-level keys that are not run parameters: the sweep, generic figures
#: (validated by commsim.experiment.plotspec) and a precision target
#: (commsim.experiment.precision).  Runs never see them.
RESERVED_TOP = ("sweep", "plots", "precision")


@dataclass
class RunSpec:
    """One sweep point: its swept parameters and its fully resolved config."""

    params: dict[str, Any]
    config: dict[str, Any]


@dataclass
class Experiment:
    """A validated experiment: the base config, the sweep and every run's config."""

    name: str
    resolved: dict[str, Any]
    sweep: dict[str, list]
    points: list[RunSpec]
    base_dir: Path | None = None
    source: dict[str, Any] = field(default_factory=dict, repr=False)
    #: ``warmup: auto``: the runner detects the warm-up (MSER-5) and writes
    #: the value found into ``resolved`` and every point's config.
    warmup_auto: bool = False

    @property
    def replications(self) -> int:
        return self.resolved["replications"]


def _suggest(key: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _patterns():
    from commsim.patterns import registry

    return registry()


# ---------------------------------------------------------------- values ----

def resolve_value(f: Field, value: Any, key: str, base_dir: Path | None = None) -> Any:
    """Validate one value against its Field and return its canonical form."""
    from commsim import units
    from commsim.dists import make_distribution

    if value is None:
        if f.nullable:
            return None
        raise ConfigError(key, f"got null; expected {f.describe_allowed()}")
    kind = f.kind
    if kind.startswith("list:"):
        if not isinstance(value, list):
            raise ConfigError(key, f"got {describe(value)}; expected {f.describe_allowed()}, "
                              "e.g. [10s, 25s]")
        element = Field(kind.split(":", 1)[1], None, f.doc, min=f.min, max=f.max,
                        min_exclusive=f.min_exclusive)
        return [resolve_value(element, v, f"{key}[{i}]", base_dir) for i, v in enumerate(value)]
    if kind.startswith("dist:"):
        try:
            dist = make_distribution(value, kind.split(":", 1)[1], key, base_dir=base_dir)
        except (OverflowError, ZeroDivisionError):
            raise ConfigError(key, f"got {describe(value)}; its parameters are too large or too "
                              "small to compute with") from None
        _check_range(f, dist.mean, key, value, what="mean ")
        if f.min is not None and not dist.is_constant and hasattr(dist, "low") and dist.low < f.min:
            raise ConfigError(key, f"got {describe(value)}; values must be >= {f.min:g}")
        resolved = dist.to_config()
        if getattr(dist, "path", None) is not None:
            # A run re-reads the CSV from another directory (or process): keep the file it read.
            resolved["file"] = str(dist.path)
        return resolved
    if kind == "choice":
        if not isinstance(value, str) or value not in f.choices:
            raise ConfigError(key, f"got {describe(value)}; expected {f.describe_allowed()}"
                              + (_suggest(value, f.choices) if isinstance(value, str) else ""))
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(key, f"got {describe(value)}; expected true or false")
        return value
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"got {describe(value)}; expected a non-empty string")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(key, f"got {describe(value)}; expected {f.describe_allowed()}")
        _check_range(f, value, key, value)
        return value
    if kind == "fraction":
        number = units.parse_number(value, key)
        if not 0 <= number <= 1:
            raise ConfigError(key, f"got {describe(value)}; expected {f.describe_allowed()}")
        _check_range(f, number, key, value)
        return float(number)
    parser = units.PARSERS.get(kind)
    if parser is None:  # pragma: no cover - programming error in a schema
        raise RuntimeError(f"unknown field kind {kind!r} for {key}")
    number = parser(value, key)
    _check_range(f, number, key, value)
    return float(number)


def _check_range(f: Field, number: float, key: str, value: Any, what: str = "") -> None:
    if number is None or (isinstance(number, float) and math.isnan(number)):
        raise ConfigError(key, f"got {describe(value)}; expected {f.describe_allowed()}")
    low_bad = f.min is not None and (number <= f.min if f.min_exclusive else number < f.min)
    high_bad = f.max is not None and number > f.max
    if low_bad or high_bad:
        shown = describe(value) if (not what and value == number) else f"{describe(value)} ({what}{number:g})"
        raise ConfigError(key, f"got {shown}; expected {f.describe_allowed()}")


def resolve_section(section: Section, raw: Any, key: str, base_dir: Path | None) -> dict:
    """Resolve one section; unknown keys are errors with the nearest key suggested."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(key, f"got {describe(raw)}; expected a mapping of "
                          f"{', '.join(section.fields)}")
    for k in raw:
        if k not in section.fields:
            raise ConfigError(f"{key}.{k}", f"unknown key in '{key}'{_suggest(str(k), section.fields)}"
                              f" (allowed: {', '.join(section.fields)})")
    out = {}
    for name, f in section.fields.items():
        if name in raw:
            out[name] = resolve_value(f, raw[name], f"{key}.{name}", base_dir)
        elif f.required:
            raise ConfigError(f"{key}.{name}", f"missing; expected {f.describe_allowed()}")
        else:
            out[name] = resolve_value(f, f.default, f"{key}.{name}", base_dir)
    if section.check is not None:
        section.check(out, key)
    return out


# ---------------------------------------------------------------- config ----

def _all_top_keys() -> list[str]:
    return list(TOP_LEVEL) + list(RESERVED_TOP) + list(SECTIONS)


def _field_for(dotted: str) -> Field | None:
    if dotted in TOP_LEVEL:
        return TOP_LEVEL[dotted]
    head, _, tail = dotted.partition(".")
    section = SECTIONS.get(head)
    if section is not None and tail in section.fields:
        return section.fields[tail]
    return None


def _all_dotted_keys() -> list[str]:
    keys = list(TOP_LEVEL)
    for s in SECTIONS.values():
        keys += [f"{s.name}.{k}" for k in s.fields]
    return keys


def resolve_run(raw: dict, base_dir: Path | None = None) -> dict:
    """Resolve the config of a single run (no sweep): top level, core sections
    and the sections of the chosen pattern."""
    patterns = _patterns()
    out: dict[str, Any] = {}
    for name, f in TOP_LEVEL.items():
        if name == "pattern":
            f = Field("choice", None, f.doc, choices=tuple(patterns), required=True)
        if name in raw and raw[name] is not None:
            out[name] = resolve_value(f, raw[name], name, base_dir)
        elif f.required:
            raise ConfigError(name, f"missing; expected {f.describe_allowed()}")
        else:
            out[name] = resolve_value(f, f.default, name, base_dir) if f.default is not None else None
    pattern = patterns[out["pattern"]]
    for sname in (*CORE_SECTIONS, *pattern.sections):
        out[sname] = resolve_section(SECTIONS[sname], raw.get(sname), sname, base_dir)
    if pattern.check is not None:
        pattern.check(out)
    from commsim.accounting.work import check as check_work  # issue 13: no ignored cost key
    check_work(out)
    return out


def set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    """Set ``a.b`` in a nested dict, creating the section if needed."""
    head, _, tail = dotted.partition(".")
    if not tail:
        cfg[head] = value
        return
    section = cfg.get(head)
    if section is None:
        section = cfg[head] = {}
    if not isinstance(section, dict):
        raise ConfigError(head, f"got {describe(section)}; expected a mapping")
    section[tail] = value


def get_dotted(cfg: dict, dotted: str) -> Any:
    head, _, tail = dotted.partition(".")
    return cfg[head][tail] if tail else cfg[head]


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` from ``--set``; VALUE is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"got {text!r}; expected KEY=VALUE, e.g. clients.count=1000")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(key.strip(), f"--set value {value!r} is not valid YAML ({exc.problem})") from None
    return key.strip(), parsed


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping (plain
    YAML keeps the last silently, so a typo'd copy would win unseen)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark, seen[key])
            try:
                seen[key] = key_node.start_mark
            except TypeError:  # an unhashable key: let the base class report it
                break
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, mark, first):
        self.key, self.mark, self.first = key, mark, first


def _with_include(raw: dict, base_dir: Path | None) -> dict:
    """``include: PATH`` (relative to the including file): the preset's keys
    with the file's own on top, mappings merged key by key; one level only."""
    inc = raw.pop("include")
    if not isinstance(inc, str) or not inc:
        raise ConfigError("include", f"got {describe(inc)}; expected the path of a YAML preset")
    path = Path(inc) if base_dir is None or Path(inc).is_absolute() else Path(base_dir) / inc
    base = read_yaml(path)
    if not isinstance(base, dict) or "include" in base:
        raise ConfigError("include", f"{str(path)!r} must be a mapping of keys without an include")

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out
    return merge(base, raw)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("", f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise ConfigError(str(dup.key), f"{path}: written twice (lines {dup.first.line + 1} and "
                          f"{dup.mark.line + 1}); keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load(source: str | Path | dict, overrides: Iterable[str] = (), name: str | None = None) -> Experiment:
    """Load and validate an experiment from a YAML file or a dict.

    ``overrides`` are ``KEY=VALUE`` strings as given to ``--set``; ``sweep.KEY``
    overrides a sweep list.  Every run's config is resolved here, so any error
    surfaces before anything runs or is written.
    """
    patterns = _patterns()  # importing the patterns registers their sections
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
        base_dir = None
        default_name = "experiment"
    else:
        raw = read_yaml(source)
        base_dir = Path(source).resolve().parent
        default_name = Path(source).stem
    if isinstance(raw, dict) and "include" in raw:  # a preset under the file's keys (issue 13)
        raw = _with_include(raw, base_dir)
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("sweep."):
            raw.setdefault("sweep", {})
            if not isinstance(raw["sweep"], dict):
                raise ConfigError("sweep", f"got {describe(raw['sweep'])}; expected a mapping")
            raw["sweep"][key[len("sweep."):]] = value
        else:
            if key not in _all_dotted_keys():
                raise ConfigError(key, f"unknown key in --set{_suggest(key, _all_dotted_keys())}")
            set_dotted(raw, key, value)
            if isinstance(raw.get("sweep"), dict):
                raw["sweep"].pop(key, None)  # an explicit --set wins over a sweep of the same key
    for k in raw:
        if k not in _all_top_keys():
            raise ConfigError(str(k), f"unknown top-level key{_suggest(str(k), _all_top_keys())}"
                              f" (allowed: {', '.join(_all_top_keys())})")
    sweep = raw.pop("sweep", None) or {}
    plots_raw = raw.pop("plots", None)
    precision_raw = raw.pop("precision", None)
    warmup_auto = raw.get("warmup") == "auto"
    if warmup_auto:
        raw["warmup"] = 0  # replaced by the detected value before anything runs
    if not isinstance(sweep, dict):
        raise ConfigError("sweep", f"got {describe(sweep)}; expected a mapping of KEY: [values, ...]")
    for k, values in sweep.items():
        if _field_for(str(k)) is None:
            raise ConfigError(f"sweep.{k}", f"unknown key{_suggest(str(k), _all_dotted_keys())}")
        if k in ("replications", "name"):
            raise ConfigError(f"sweep.{k}", "cannot be swept")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{k}", f"got {describe(values)}; expected a non-empty list of values")
    if raw.get("name") is not None and (not isinstance(raw["name"], str)
                                        or not raw["name"].strip() or "/" in raw["name"]):
        raise ConfigError("name", f"got {describe(raw['name'])}; expected a non-empty name "
                          "without '/' (it names the results folder)")
    exp_name = name or raw.get("name") or default_name
    raw["name"] = exp_name
    # Validate every section that is present, even for patterns not run, so typos surface.
    for sname, section in SECTIONS.items():
        if sname in raw and sname not in CORE_SECTIONS:
            resolve_section(section, raw[sname], sname, base_dir)

    points: list[RunSpec] = []
    keys = list(sweep)
    for combo in itertools.product(*(sweep[k] for k in keys)):
        run_raw = copy.deepcopy(raw)
        for k, v in zip(keys, combo):
            set_dotted(run_raw, k, v)
        try:
            cfg = resolve_run(run_raw, base_dir)
        except ConfigError as exc:
            if exc.key in keys:
                raise ConfigError(f"sweep.{exc.key}", exc.message) from None
            raise
        params = {k: get_dotted(cfg, k) for k in keys}
        points.append(RunSpec(params=params, config=cfg))

    base = resolve_run(raw if "pattern" in raw else {**raw, "pattern": points[0].config["pattern"]}, base_dir) \
        if points else resolve_run(raw, base_dir)
    # The resolved experiment lists the sections of every pattern it runs.
    for p in points:
        for sname in patterns[p.config["pattern"]].sections:
            base.setdefault(sname, p.config[sname] if sname not in raw else
                            resolve_section(SECTIONS[sname], raw.get(sname), sname, base_dir))
    resolved = dict(base)
    if sweep:
        resolved["sweep"] = {k: _unique([p.params[k] for p in points]) for k in keys}
    if "warmup" in sweep and warmup_auto:
        raise ConfigError("warmup", "'auto' cannot be combined with a sweep of warmup")
    from commsim.experiment.plotspec import resolve_plots
    from commsim.experiment.precision import resolve_section as resolve_precision

    if precision_raw is not None:
        resolved["precision"] = resolve_precision(precision_raw)
    if plots_raw is not None:
        resolved["plots"] = resolve_plots(plots_raw, keys, resolved.get("sweep", {}))
    return Experiment(name=exp_name, resolved=resolved, sweep={k: list(v) for k, v in sweep.items()},
                      points=points, base_dir=base_dir, source=raw, warmup_auto=warmup_auto)


def _unique(values: list) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def dump_yaml(data: dict) -> str:
    """Serialise a resolved config; block style, keys in schema order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
