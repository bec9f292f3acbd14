"""SimPy's private attributes are used only inside commsim/engine/ (issue 10).

The set of private names is read from SimPy's own source (every ``_name``
it uses as an attribute or defines as a method), so a new SimPy private is
covered without editing this test.  Outside ``commsim/engine/`` the scan
flags:

* ``x._name`` for any SimPy private ``_name`` (read or write), unless ``x``
  is ``self`` or ``super()`` (a commsim class's own attribute that happens to
  share the name, e.g. an executor's ``self._queue``): subclassing SimPy is
  ruled out separately, so ``self`` there is never a SimPy object;
* the name as a string in ``getattr``/``setattr``/``hasattr``/``delattr``/
  ``operator.attrgetter`` (the same access spelt dynamically);
* importing ``simpy`` at all (models use the engine's API), and subclassing
  the engine's SimPy-derived classes (``Environment``, ``Waker``), which
  would make ``self._name`` a SimPy private again.

The scanner is checked on planted examples, so the test can fail.
"""

from __future__ import annotations

import ast
import pathlib

import simpy

import commsim

ROOT = pathlib.Path(commsim.__file__).parent
ENGINE = ROOT / "engine"
DYNAMIC = {"getattr", "setattr", "hasattr", "delattr", "attrgetter"}
ENGINE_SIMPY_CLASSES = {"Environment", "Waker"}


def simpy_private_names() -> set[str]:
    names: set[str] = set()
    for path in pathlib.Path(simpy.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name
            else:
                continue
            if name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return names


def _is_self_or_super(node: ast.expr) -> bool:
    if isinstance(node, ast.Name) and node.id == "self":
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "super")


def violations(source: str, filename: str, private: set[str]) -> list[str]:
    """Every use of a SimPy private (or a way round the rule) in ``source``."""
    found = []

    def hit(node, what):
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr in private \
                and not _is_self_or_super(node.value):
            hit(node, f"SimPy private attribute .{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if fname in DYNAMIC:
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and arg.value in private:
                        hit(node, f"SimPy private {arg.value!r} via {fname}()")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "simpy":
                    hit(node, "imports simpy (use commsim.engine)")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] == "simpy":
                hit(node, "imports from simpy (use commsim.engine)")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.id if isinstance(base, ast.Name) else \
                    base.attr if isinstance(base, ast.Attribute) else None
                if name in ENGINE_SIMPY_CLASSES:
                    hit(node, f"subclasses the engine's SimPy class {name}")
    return found


def test_the_private_names_come_from_simpy():
    private = simpy_private_names()
    assert {"_now", "_value", "_ok", "_queue", "_eid", "_defused"} <= private


def test_no_simpy_private_outside_the_engine():
    private = simpy_private_names()
    files = [p for p in ROOT.rglob("*.py") if ENGINE not in p.parents]
    assert len(files) > 50  # the scan sees the package
    found = []
    for path in files:
        found += violations(path.read_text(), str(path.relative_to(ROOT.parent)), private)
    assert not found, "SimPy privates outside commsim/engine/:\n" + "\n".join(found)


PLANTED = '''
import operator
import simpy
from simpy.events import Event
from commsim.engine import Waker

def hot(env, ev, sim):
    now = env._now
    t = sim.env._now
    ev._ok = True
    ev._value = None
    n = getattr(env, "_eid")
    g = operator.attrgetter("_queue")

class Mine(Waker):
    pass

class Fine:
    def __init__(self):
        self._queue = None       # own attribute: allowed
        super()._value           # a base class's own attribute: allowed
'''


def test_the_scan_catches_planted_privates():
    found = violations(PLANTED, "planted.py", simpy_private_names())
    lines = sorted(int(f.split(":")[1]) for f in found)
    # imports (3, 4), env._now (8), sim.env._now (9), ev._ok (10),
    # ev._value (11), getattr (12), attrgetter (13), the Waker subclass (15);
    # nothing in Fine.
    assert lines == [3, 4, 8, 9, 10, 11, 12, 13, 15], found


def test_the_engine_itself_is_not_scanned_clean():
    # The engine does use SimPy's privates: if this scan found nothing there,
    # the scanner would be blind.
    private = simpy_private_names()
    found = []
    for path in ENGINE.rglob("*.py"):
        found += violations(path.read_text(), str(path), private)
    assert any("._now" in f for f in found) and any("._eid" in f for f in found)
