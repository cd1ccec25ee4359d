"""Sweeps: a trial store, executors (local | process | ray) and sweep files.

* `store.TrialStore` -- one atomic JSON record per trial key; finished trials are never recomputed.
* `executors.get_executor(name, ...)` -- run `experiments.base.Trial`s into a store.
* `spec` -- sweep files (TOML: a base `TrainConfig`, axes, seeds) expanded into trials; `run` -- the training
  trial function and `run_sweep`.
"""

from bnlab.sweeps.executors import EXECUTORS, Executor, ProgressEvent, get_executor
from bnlab.sweeps.store import TrialStore

__all__ = ["EXECUTORS", "Executor", "ProgressEvent", "TrialStore", "get_executor"]
