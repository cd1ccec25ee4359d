"""The `local` executor: trials one after another in this process (the default for tiny runs and debugging).

Each trial runs with one torch thread (the previous count is restored afterwards), as in the `process` and `ray`
workers: a CPU reduction's summation order depends on the thread count, so this is what makes a trial's numbers
bitwise identical whichever executor ran it. A KeyboardInterrupt stops the run at once; every trial finished so far
is already in the store, and a rerun picks up the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from bnlab.sweeps.executors.executor import Executor, Scheduler, attempt


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch.set_num_threads(1) for the duration of the block (side effect: process-wide, restored on exit)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalExecutor(Executor):
    name = "local"

    def _execute(self, scheduler: Scheduler) -> None:
        job = None
        try:
            with one_torch_thread():
                while (job := scheduler.take_waiting()) is not None:
                    scheduler.finish(job, attempt(job.trial))
                    job = None
        finally:
            scheduler.release_all([job] if job is not None else [])
