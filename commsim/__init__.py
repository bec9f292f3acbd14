"""commsim: a discrete-event simulator of backend communication patterns.

Python API::

    import commsim
    exp = commsim.load("experiments/request_response.yaml", ["clients.count=50"])
    result = commsim.run_experiment(exp)
    result.runs, result.summary        # pandas DataFrames
    result = commsim.run("experiments/request_response.yaml", records=True)
    result.read_records()              # one row per operation, taken during the runs
    commsim.compare("results/a", "results/b")                  # paired differences (CRN)
    commsim.capacity("experiments/capacity.yaml", "clients.count", ["latency_p99 < 1s"])
"""

from commsim.config import load
from commsim.experiment.runner import Result, run, run_experiment, simulate

__version__ = "0.1.0"
__all__ = ["load", "run", "run_experiment", "simulate", "Result", "compare", "capacity",
           "__version__"]

# Imported on first use (issue 14: a lean `import commsim`); `commsim.compare`
# and `from commsim import capacity` work as before.
_LAZY = {"capacity": "commsim.experiment.capacity",  # issue 12: `commsim capacity`
         "compare": "commsim.experiment.compare"}  # issue 12: `commsim compare`


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'commsim' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})
