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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from commsim.config.schema import CORE_SECTIONS, SECTIONS, TOP_LEVEL, Field, Section
from commsim.errors import ConfigError, describe

#: Top-level keys that are not run parameters: the sweep, generic figures
#: (validated by commsim.config.plots) and a precision target
#: (commsim.config.precision).  Runs never see them.
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
    #: The predicted work (:class:`commsim.config.estimate.Estimate`).
    estimate: Any = None

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
        number = value
        if isinstance(value, str):  # YAML reads 1e3 as a string; it is a number here
            number = units.parse_number(value, key) if _NUMERIC_RE.match(value) else value
        if isinstance(number, bool) or not isinstance(number, int):
            if isinstance(number, float) and math.isfinite(number) and number.is_integer():
                number = int(number)
            else:
                raise ConfigError(key, f"got {describe(value)}; expected {f.describe_allowed()}")
        if abs(number) > MAX_INT:
            raise ConfigError(key, f"got {describe(value)}; too large, expected "
                              f"{f.describe_allowed()} and at most {MAX_INT:.3g}")
        _check_range(f, number, key, value)
        return number
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


#: A number, as text: ``1e3``, ``-2.5E-3`` (YAML 1.1 reads these as strings).
_NUMERIC_RE = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$")
#: The largest integer a key accepts (counts and seeds become 64-bit integers).
MAX_INT = 2**63 - 1


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
        if name in raw and raw[name] is None and f.nullable and f.default is not None:
            out[name] = None  # null switches the default off (max_run_queue: null)
        elif name in raw and (raw[name] is not None or not f.nullable):
            out[name] = resolve_value(f, raw[name], name, base_dir)  # null: an error, not the default
        elif f.required:
            raise ConfigError(name, f"missing; expected {f.describe_allowed()}")
        else:
            out[name] = resolve_value(f, f.default, name, base_dir) if f.default is not None else None
    pattern = patterns[out["pattern"]]
    for sname in (*CORE_SECTIONS, *pattern.sections):
        out[sname] = resolve_section(SECTIONS[sname], raw.get(sname), sname, base_dir)
    for sname in conditional_sections(out):
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
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(key.strip(), f"--set value {describe(value)} is not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(key.strip(), "--set value is nested too deeply to read") from None
    return key.strip(), parsed


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping (plain
    YAML keeps the last silently, so a typo'd copy would win unseen) and a
    key that is not a plain value (``? [1, 2]``).  Merge keys (``<<: *base``)
    work as in YAML: the mapping's own keys override the merged ones."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _BadKey(key_node)
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark, seen[key])
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, mark, first):
        self.key, self.mark, self.first = key, mark, first


class _BadKey(Exception):
    def __init__(self, node):
        self.mark = node.start_mark
        self.kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


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
    """Read a YAML config file: UTF-8 text holding a mapping; every failure is
    one ConfigError line (never a traceback, never the file's contents)."""
    path = Path(path)
    try:
        irregular = path.exists() and not path.is_file()
    except (OSError, ValueError):  # e.g. a NUL in the path
        raise ConfigError("", f"config file name {str(path)!r} is not a valid path") from None
    if irregular:
        raise ConfigError("", f"config {str(path)!r} is not a regular file")
    try:
        data_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("", f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        text = data_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path}: not a UTF-8 text file (byte {exc.start} is "
                          f"0x{data_bytes[exc.start]:02x}); a config is YAML text") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise ConfigError(str(dup.key), f"{path}: written twice (lines {dup.first.line + 1} and "
                          f"{dup.mark.line + 1}); keep one") from None
    except _BadKey as bad:
        raise ConfigError("", f"{path}: invalid key at line {bad.mark.line + 1}, column "
                          f"{bad.mark.column + 1}: a key must be a plain name, not {bad.kind}") from None
    except RecursionError:
        raise ConfigError("", f"{path}: nested too deeply to read (brackets or indentation "
                          "hundreds of levels deep)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        if problem is None and isinstance(exc, yaml.reader.ReaderError):
            problem = f"{exc.reason} (character {exc.character!r} at position {exc.position})"
        problem = " ".join(str(problem or exc).split())  # one line
        raise ConfigError("", f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


#: The longest experiment name (it names a folder; file systems allow 255 bytes).
MAX_NAME = 100


def check_name(value: Any, key: str = "name") -> None:
    """An experiment name is one plain path component: it names results/<name>/."""
    allowed = (f"expected a plain folder name of 1-{MAX_NAME} characters: no '/', '\\', "
               "control characters, not '.' or '..' (it names the results folder results/<name>/)")
    if not isinstance(value, str):
        raise ConfigError(key, f"got {describe(value)}; {allowed}")
    bad = None
    if not value.strip():
        bad = "empty"
    elif value in (".", ".."):
        bad = "a relative folder"
    elif "/" in value or "\\" in value:
        bad = "holds a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        bad = "holds a control character" + (" (NUL)" if "\0" in value else "")
    elif value != value.strip():
        bad = "starts or ends with a space"
    elif len(value) > MAX_NAME or len(value.encode("utf-8")) > 255:
        bad = f"{len(value)} characters long"
    if bad:
        raise ConfigError(key, f"got {describe(value)} ({bad}); {allowed}")


def load(source: str | Path | dict, overrides: Iterable[str] = (), name: str | None = None, *,
         allow_large: bool = False) -> Experiment:
    """Load and validate an experiment from a YAML file or a dict.

    The work is estimated (:mod:`commsim.config.estimate`, ``Experiment.estimate``);
    beyond its documented limits the experiment is refused unless ``allow_large``.

    ``overrides`` are ``KEY=VALUE`` strings as given to ``--set``; ``sweep.KEY``
    overrides a sweep list.  Every run's config is resolved here, so any error
    surfaces before anything runs or is written.
    """
    patterns = _patterns()  # importing the patterns registers their sections
    if isinstance(source, dict):
        try:
            raw = copy.deepcopy(source)
        except RecursionError:
            raise ConfigError("", "the config dict is nested too deeply") from None
        base_dir = None
        default_name = "experiment"
    elif isinstance(source, (str, Path)) and str(source).strip():
        raw = read_yaml(source)
        base_dir = Path(source).resolve().parent
        default_name = Path(source).stem
    else:
        raise ConfigError("", f"got {describe(source)} ({type(source).__name__}) as the experiment; "
                          "expected the path of a YAML file or a dict of config keys")
    if isinstance(overrides, (str, bytes)) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError("--set", f"got {describe(overrides)}; expected a list of 'KEY=VALUE' strings")
    preset_only: set = set()  # sections only an included preset sets: exempt from the unused check
    preset_keys: set = set()  # section keys only the preset sets: exempt from the key checks
    if isinstance(raw, dict) and "include" in raw:  # a preset under the file's keys (issue 13)
        own = set(raw)
        own_keys = _section_keys(raw)
        raw = _with_include(raw, base_dir)
        preset_only = set(raw) - own
        preset_keys = _section_keys(raw) - own_keys
    for text in overrides:
        key, value = parse_override(text)
        preset_keys.discard(key)  # --set is the user's own
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
    if "name" in raw:
        check_name(raw["name"])
    if name is not None:
        check_name(name)
    exp_name = name or raw.get("name") or default_name
    check_name(exp_name, "name" if (name or raw.get("name")) else
               f"name (from the file name {Path(str(source)).name!r})")
    raw["name"] = exp_name
    # Validate every section that is present, even for patterns not run, so typos surface.
    for sname, section in SECTIONS.items():
        if sname in raw and sname not in CORE_SECTIONS:
            resolve_section(section, raw[sname], sname, base_dir)

    keys = list(sweep)
    from commsim.config import estimate as work

    if not allow_large:
        reps = raw.get("replications", TOP_LEVEL["replications"].default)
        reps = resolve_value(TOP_LEVEL["replications"], reps, "replications") if reps is not None else 1
        work.check_runs(math.prod(len(sweep[k]) for k in keys), reps)
    points: list[RunSpec] = []
    for combo in itertools.product(*(range(len(sweep[k])) for k in keys)):
        run_raw = copy.deepcopy(raw)
        pattern_name = sweep["pattern"][combo[keys.index("pattern")]] if "pattern" in sweep \
            else raw.get("pattern")
        ts = (sweep["topology.sidecar"][combo[keys.index("topology.sidecar")]]
              if "topology.sidecar" in sweep else (raw.get("topology") or {}).get("sidecar"))
        extra = ("sidecar",) if ts == "sidecar" else ()
        applies = {k: _applies(k, pattern_name, patterns, extra) for k in keys}
        if any(i > 0 for k, i in zip(keys, combo) if not applies[k]):
            continue  # a key this point's pattern lacks: one point, not one per value
        for k, i in zip(keys, combo):
            if applies[k]:
                set_dotted(run_raw, k, sweep[k][i])
        try:
            cfg = resolve_run(run_raw, base_dir)
        except ConfigError as exc:
            if exc.key in keys:
                raise ConfigError(f"sweep.{exc.key}", exc.message) from None
            raise
        params = {k: get_dotted(cfg, k) if applies[k] else None for k in keys}
        points.append(RunSpec(params=params, config=cfg))
    _check_sections_used(raw, keys, points, patterns, exempt=preset_only)
    _check_keys_set(raw, sweep, points, patterns, exempt=preset_keys)

    base = resolve_run(raw if "pattern" in raw else {**raw, "pattern": points[0].config["pattern"]}, base_dir) \
        if points else resolve_run(raw, base_dir)
    # The resolved experiment lists the sections of every pattern it runs.
    for p in points:
        for sname in (*patterns[p.config["pattern"]].sections, *conditional_sections(p.config)):
            base.setdefault(sname, p.config[sname] if sname not in raw else
                            resolve_section(SECTIONS[sname], raw.get(sname), sname, base_dir))
    resolved = dict(base)
    if sweep:
        # A pattern's own key lists the values of the points it applies to
        # (a null there is a real value, e.g. websocket.ping_interval: null).
        resolved["sweep"] = {k: _unique([p.params[k] for p in points
                                         if _applies(k, p.config["pattern"], patterns,
                                                     conditional_sections(p.config))])
                            for k in keys}
    if "warmup" in sweep and warmup_auto:
        raise ConfigError("warmup", "'auto' cannot be combined with a sweep of warmup")
    from commsim.config.plots import resolve_plots
    from commsim.config.precision import resolve_section as resolve_precision

    if precision_raw is not None:
        resolved["precision"] = resolve_precision(precision_raw)
    if plots_raw is not None:
        resolved["plots"] = resolve_plots(plots_raw, keys, resolved.get("sweep", {}))
    if warmup_auto:
        work.check_warmup_auto(points)
    estimate = work.estimate(points, resolved["replications"], resolved.get("precision"))
    if not allow_large:
        work.check(estimate)
    return Experiment(name=exp_name, resolved=resolved, sweep={k: list(v) for k, v in sweep.items()},
                      points=points, base_dir=base_dir, source=raw, warmup_auto=warmup_auto,
                      estimate=estimate)


def _is_pattern_key(dotted: str) -> bool:
    """True for a key of a pattern's own section (not top-level, not core)."""
    head, _, tail = dotted.partition(".")
    return bool(tail) and head not in CORE_SECTIONS


def conditional_sections(cfg: dict) -> tuple:
    """Sections a run reads beyond its pattern's own because of another
    key's value: ``sidecar`` (the proxies' keys) when ``topology.sidecar`` is
    ``sidecar`` (commsim/nodes/cluster.py; the pattern's check refuses the
    keys that have no meaning there)."""
    t = cfg.get("topology")
    return ("sidecar",) if isinstance(t, dict) and t.get("sidecar") == "sidecar" else ()


def _applies(dotted: str, pattern_name: Any, patterns: dict, extra: tuple = ()) -> bool:
    """Does ``dotted`` mean something for ``pattern_name``?  Keys of a
    pattern's own section apply only to the patterns that declare it (and
    ``extra``: the point's :func:`conditional_sections`)."""
    if not _is_pattern_key(dotted) or not isinstance(pattern_name, str) or pattern_name not in patterns:
        return True  # an unknown pattern is reported by resolve_run
    head = dotted.partition(".")[0]
    return head in patterns[pattern_name].sections or head in extra


def _check_sections_used(raw: dict, sweep_keys: list, points: list[RunSpec], patterns: dict,
                         exempt: set = frozenset()) -> None:
    """A section (or a swept key of one) that no pattern of the run reads would
    be accepted and do nothing: refuse it, naming the section.  Sections that
    only an included preset sets (``exempt``) are not refused: a preset (e.g.
    a calibration) serves experiments of any pattern, and the sections the
    run's patterns do not read are simply not used."""
    running = _unique([p.config["pattern"] for p in points])
    used = {s for name in running for s in patterns[name].sections}
    used |= {s for p in points for s in conditional_sections(p.config)}
    present = [s for s in SECTIONS if s in raw and s not in CORE_SECTIONS and s not in exempt]
    present += [k for k in sweep_keys if _is_pattern_key(k)]
    for item in present:
        sname = item.partition(".")[0]
        if sname in used:
            continue
        owners = [n for n, p in patterns.items() if sname in p.sections]
        if sname == "sidecar":
            owners.append("the composed patterns with topology.sidecar: sidecar")
        key = item if item == sname else f"sweep.{item}"
        raise ConfigError(key, f"section '{sname}' is read only by pattern(s) {', '.join(owners)}; "
                          f"this experiment runs {', '.join(running)}, where it would have no "
                          f"effect: remove it (or set pattern to one that uses it)")


def _section_keys(raw: dict) -> set:
    """The dotted section keys (``network.rto``, ``pubsub.prefetch``) ``raw`` sets."""
    return {f"{s}.{k}" for s in SECTIONS if isinstance(raw.get(s), dict) for k in raw[s]}


def _check_keys_set(raw: dict, sweep: dict, points: list[RunSpec], patterns: dict,
                    exempt: set = frozenset()) -> None:
    """The section keys set (in the file, by ``--set`` or in a sweep; not
    those only an included preset sets, ``exempt``) to other than their
    default must take effect in some run: refuse a ``clients``/``server``/
    ``network`` key no pattern of the run reads (``Pattern.ignores``) and a
    key whose prerequisite no run has (:mod:`commsim.config.needs`), naming
    the key, its value and what to use instead."""
    from commsim.config import needs

    given = {k: (get_dotted(raw, k), k) for k in sorted(_section_keys(raw) - set(exempt))
             if k in needs.NEEDS or k.partition(".")[0] in CORE_SECTIONS}
    given.update({k: (v, f"sweep.{k}") for k, v in sweep.items()
                  if k in needs.NEEDS or k.partition(".")[0] in CORE_SECTIONS})
    defaults = {k: default_of(k) for k in given}
    _check_keys_read(given, defaults, points, patterns)
    needs.check(given, defaults, points)


def _check_keys_read(given: dict, defaults: dict, points: list[RunSpec], patterns: dict) -> None:
    running = _unique([p.config["pattern"] for p in points])
    if not running:
        return
    ignored = set.intersection(*(set(patterns[n].ignores) for n in running))
    for key, (value, where) in given.items():
        if key in ignored and any(get_dotted(p.config, key) != defaults[key] for p in points):
            if len(running) == 1:
                who = f"pattern {running[0]!r} does not read it: {patterns[running[0]].ignores[key]}"
            else:
                who = (f"none of the patterns {', '.join(running)} reads it ("
                       + "; ".join(f"{n}: {patterns[n].ignores[key]}" for n in running) + ")")
            raise ConfigError(where, f"got {describe(value)}; {who}; remove it")


def default_of(dotted: str) -> Any:
    """A section key's resolved default (``default_of("network.mss") == 1460.0``)."""
    head, _, tail = dotted.partition(".")
    f = SECTIONS[head].fields[tail]
    return resolve_value(f, f.default, dotted) if f.default is not None else None


def _unique(values: list) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def dump_yaml(data: dict) -> str:
    """Serialise a resolved config; block style, keys in schema order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
