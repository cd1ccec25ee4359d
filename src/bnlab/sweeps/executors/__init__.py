"""Executors behind one small interface: `get_executor(name, ...)`.run(trials, store, progress) -> records.

* ``local``   -- in this process, one trial at a time (`local.LocalExecutor`);
* ``process`` -- a pool of spawned worker processes, one per core, one torch thread each (`process.ProcessExecutor`);
* ``ray``     -- Ray tasks with per-trial CPU/GPU resources, on a local Ray or an existing cluster
  (`ray_tasks.RayExecutor`; Ray is imported only when this executor is used: ``pip install bnlab[ray]``).

All follow the rules in `executor` (cache, locks, retries, longest first, progress).
"""

from __future__ import annotations

from bnlab.errors import BnlabError
from bnlab.sweeps.executors.executor import Executor, Outcome, ProgressEvent
from bnlab.sweeps.executors.local import LocalExecutor
from bnlab.sweeps.executors.process import ProcessExecutor
from bnlab.sweeps.executors.ray_tasks import RayExecutor

# name -> executor class; every one takes (workers, retries), ray also the cluster options (address, gpus_per_trial)
EXECUTOR_CLASSES: dict[str, type[Executor]] = {"local": LocalExecutor, "process": ProcessExecutor, "ray": RayExecutor}
EXECUTORS: tuple[str, ...] = tuple(EXECUTOR_CLASSES)
_CLUSTER_EXECUTORS = ("ray",)  # the executors that take address and gpus_per_trial

__all__ = ["EXECUTORS", "EXECUTOR_CLASSES", "Executor", "Outcome", "ProgressEvent", "get_executor"]


def get_executor(name: str, *, workers: int | None = None, address: str | None = None, retries: int = 1,
                 gpus_per_trial: float = 0) -> Executor:
    """The executor called `name`.

    workers: parallel trials (process: default os.cpu_count(); ray: CPUs of a local Ray, default all cores);
    address: Ray cluster address ("auto" joins the running cluster), ray only;
    retries: extra attempts of a failing trial before it is recorded as failed;
    gpus_per_trial: GPUs each Ray task reserves (fractions share a GPU), ray only.
    """
    if name not in EXECUTORS:
        raise BnlabError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")
    if name not in _CLUSTER_EXECUTORS:
        if address is not None:
            raise BnlabError(f"--address is for the ray executor, not {name!r}")
        if gpus_per_trial:
            raise BnlabError(f"gpus_per_trial is for the ray executor, not {name!r}")
        return EXECUTOR_CLASSES[name](workers=workers, retries=retries)
    return EXECUTOR_CLASSES[name](workers=workers, address=address, retries=retries, gpus_per_trial=gpus_per_trial)
