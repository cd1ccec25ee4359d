"""The `ray` executor: every trial is a Ray task with its own CPU/GPU reservation, on a local Ray or a cluster.

* ``address=None`` starts a private local Ray (``ray.init(address="local")``) with `workers` CPUs, the dashboard
  off and every service bound to 127.0.0.1, and shuts it down when the run ends; nothing listens beyond localhost.
* ``address="auto"`` (or ``"ray://host:10001"``, ``"host:6379"``) joins an existing cluster, which is left
  running. bnlab must be installed on the cluster's nodes (same version), as for any Ray library.

Each task reserves `cpus_per_trial` CPUs (default 1) and `gpus_per_trial` GPUs; Ray sets CUDA_VISIBLE_DEVICES,
so a trial function that picks "cuda when available" (e.g. `bnlab.sweeps.run.train_trial` with device "auto")
lands on the GPU it was given, and on CPU elsewhere: the device is chosen per trial, where it runs. A task runs
with torch threads = its CPU reservation.

Retries are the driver's, not Ray's (``max_retries=0``): an exception inside the trial comes back as a failed
`Outcome`, a lost worker or node as a Ray error; both are charged one attempt and resubmitted up to `retries`
times, exactly as in the other executors. Only the driver writes the store, so the sweep folder need not be on a
shared file system. Ray is imported lazily (``pip install "bnlab[ray]"``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from bnlab.errors import BnlabError
from bnlab.sweeps.executors.executor import Executor, Job, Outcome, Scheduler, attempt
from bnlab.sweeps.trial import Trial


def _import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a lab machine
    try:
        import ray
    except ImportError:
        raise BnlabError('the ray executor needs Ray: pip install "bnlab[ray]"') from None
    return ray


def ray_attempt(trial: Trial, threads: int) -> Outcome:
    """The body of one Ray task: one attempt of `trial` with `threads` torch threads."""
    torch.set_num_threads(max(1, threads))
    return attempt(trial)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, *, workers: int | None = None, address: str | None = None, retries: int = 1,
                 gpus_per_trial: float = 0, cpus_per_trial: float = 1) -> None:
        super().__init__(workers=workers, retries=retries)
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise BnlabError(f"ray address must be 'auto', 'host:port' or 'ray://host:port', got {address!r}")
        for label, value in (("gpus_per_trial", gpus_per_trial), ("cpus_per_trial", cpus_per_trial)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise BnlabError(f"{label} must be a non-negative number, got {value!r}")
        if cpus_per_trial == 0 and gpus_per_trial == 0:
            raise BnlabError("a ray trial must reserve some CPU or GPU (cpus_per_trial = gpus_per_trial = 0)")
        self.address = address
        self.gpus_per_trial = float(gpus_per_trial)
        self.cpus_per_trial = float(cpus_per_trial)

    def _connect(self, ray: Any) -> bool:
        """Connect to the cluster or start a private local Ray; True when we started it (and must stop it)."""
        if ray.is_initialized():
            return False
        quiet = {"include_dashboard": False, "configure_logging": True, "logging_level": "warning",
                 "log_to_driver": False}
        if self.address is not None:
            try:
                ray.init(address=self.address, **quiet)
            except ConnectionError as exc:
                raise BnlabError(f"cannot reach the Ray cluster at {self.address!r}: {exc}") from None
            return True
        # Ray resolves "127.0.0.1" to the machine's network address and then listens on every interface,
        # unless it thinks it is on a laptop (its Windows/macOS single-node mode): then every Ray service binds
        # to the loopback address. A private sweep Ray needs no more, so we switch that mode on while starting.
        constants = ray._private.ray_constants
        before = constants.ENABLE_RAY_CLUSTER
        constants.ENABLE_RAY_CLUSTER = False
        try:
            ray.init(address="local", num_cpus=self.workers or os.cpu_count() or 1, **quiet)
        finally:
            constants.ENABLE_RAY_CLUSTER = before
        return True

    def _execute(self, scheduler: Scheduler) -> None:
        ray = _import_ray()
        started = self._connect(ray)
        try:
            self._run_tasks(ray, scheduler)
        finally:
            if started:
                ray.shutdown()

    def _run_tasks(self, ray: Any, scheduler: Scheduler) -> None:
        remote = ray.remote(ray_attempt).options(
            num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial, max_retries=0, retry_exceptions=False)
        threads = max(1, int(self.cpus_per_trial))
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        # enough tasks queued to keep the cluster busy, few enough that the held trial locks stay bounded
        limit = max(2, min(512, 2 * int(cpus / max(self.cpus_per_trial, 1e-9)) + 2))
        running: dict[Any, tuple[Job, float]] = {}
        try:
            while True:
                while len(running) < limit:
                    job = scheduler.take()
                    if job is None:
                        break
                    running[remote.remote(job.trial, threads)] = (job, time.perf_counter())
                if not running:
                    job = scheduler.take_waiting()
                    if job is None:
                        return
                    running[remote.remote(job.trial, threads)] = (job, time.perf_counter())
                    continue
                ready, _ = ray.wait(list(running), num_returns=1,
                                    timeout=0.5 if scheduler.deferred else None)
                for ref in ready:
                    job, start = running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # worker or node lost, task cancelled, ...
                        first = " ".join(str(exc).split())[:300]
                        outcome = Outcome(False, None, f"ray: {type(exc).__name__}: {first}",
                                          time.perf_counter() - start)
                    scheduler.finish(job, outcome)
        finally:
            for ref, (job, _) in running.items():
                ray.cancel(ref, force=True)
                job.lock.release()
            scheduler.release_all([])
