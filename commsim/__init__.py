"""commsim: a discrete-event simulator of backend communication patterns.

Python API::

    import commsim
    exp = commsim.load("experiments/request_response.yaml", ["clients.count=50"])
    result = commsim.run_experiment(exp)
    result.runs, result.summary        # pandas DataFrames
"""

from commsim.config import load
from commsim.experiment.runner import Result, run, run_experiment, simulate

__version__ = "0.1.0"
__all__ = ["load", "run", "run_experiment", "simulate", "Result", "__version__"]
