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
from commsim.experiment.capacity import capacity  # issue 12: `commsim capacity`
from commsim.experiment.compare import compare  # issue 12: `commsim compare`

__version__ = "0.1.0"
__all__ = ["load", "run", "run_experiment", "simulate", "Result", "compare", "capacity",
           "__version__"]
