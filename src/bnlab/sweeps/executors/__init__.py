"""Executors behind one small interface: `get_executor(name, ...)`.run(trials, store, progress) -> records.

* ``local``   -- in this process, one trial at a time (`local.LocalExecutor`);
* ``process`` -- a pool of spawned worker processes, one per core, one torch thread each (`process.ProcessExecutor`);
* ``ray``     -- Ray tasks with per-trial CPU/GPU resources, on a local Ray or an existing cluster
  (`ray_tasks.RayExecutor`; Ray is imported only when this executor is used: ``pip install bnlab[ray]``).

All follow the rules in `base` (cache, locks, retries, longest first, progress).
"""

from __future__ import annotations

from bnlab.errors import BnlabError
from bnlab.sweeps.executors.base import Executor, Outcome, ProgressEvent
from bnlab.sweeps.executors.local import LocalExecutor
from bnlab.sweeps.executors.process import ProcessExecutor
from bnlab.sweeps.executors.ray_tasks import RayExecutor

EXECUTORS: tuple[str, ...] = ("local", "process", "ray")

__all__ = ["EXECUTORS", "Executor", "Outcome", "ProgressEvent", "get_executor"]


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
    if name != "ray" and address is not None:
        raise BnlabError(f"--address is for the ray executor, not {name!r}")
    if name != "ray" and gpus_per_trial:
        raise BnlabError(f"gpus_per_trial is for the ray executor, not {name!r}")
    if name == "local":
        return LocalExecutor(workers=workers, retries=retries)
    if name == "process":
        return ProcessExecutor(workers=workers, retries=retries)

    return RayExecutor(workers=workers, address=address, retries=retries, gpus_per_trial=gpus_per_trial)
