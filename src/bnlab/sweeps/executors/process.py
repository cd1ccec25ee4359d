"""The `process` executor: a pool of spawned worker processes, one per core, one torch thread each.

Why not `concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (OOM killer, SIGKILL, a segfault in
a native extension), the whole pool breaks and every pending future fails without saying which trial killed it.
Here each worker has its own pipe, so the parent knows exactly which trial was running in a worker that died: that
trial is charged one failed attempt ("worker process died (SIGKILL)") and retried on a fresh worker, and nothing
else is disturbed.

Workers are never forked from the sweep process itself (that would copy its threads and torch state): on Linux
they come from a ``forkserver`` -- a clean process that imports torch and bnlab once and forks a worker in
milliseconds, so replacing a dead worker or starting a second sweep costs no new interpreter -- and elsewhere
from ``spawn``. Each worker sets ``torch.set_num_threads(1)`` (N workers on N cores; also what makes results
identical to the `local` executor), ignores Ctrl-C (the parent stops it), receives one `Trial` at a time and sends
back an `Outcome`. Workers never touch the store. A worker whose parent (the sweep process, or the forkserver,
which exits with the sweep process) dies exits within a second, so a killed sweep leaves no orphans computing
results nobody will read.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from bnlab.sweeps.executors.executor import Executor, Job, Outcome, Scheduler, attempt

PRELOAD: tuple[str, ...] = ("torch", "bnlab.sweeps.executors.process", "bnlab.train")


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _worker_main(conn: Connection) -> None:
    """Worker loop: receive a Trial, run one attempt, send the Outcome; None or a closed pipe ends it."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            trial = conn.recv()
        except (EOFError, OSError):
            return
        if trial is None:
            return
        outcome = attempt(trial)
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled is a failed attempt
            conn.send(Outcome(False, None, f"result could not be sent back: {exc}", outcome.duration_s, False))


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker process died ({signal.Signals(-exitcode).name})"
        except ValueError:
            pass
    return f"worker process died (exit code {exitcode})"


@dataclass
class _Worker:
    process: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    job: Job | None = None
    started: float = 0.0


class ProcessExecutor(Executor):
    name = "process"

    def __init__(self, *, workers: int | None = None, retries: int = 1) -> None:
        super().__init__(workers=workers, retries=retries)
        self.size = workers or os.cpu_count() or 1
        self._ctx = _context()

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child_conn,), name="bnlab-sweep-worker")
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _dispatch(self, pool: list[_Worker], job: Job) -> None:
        """Send `job` to an idle worker (starting one if the pool is not full); replaces a dead idle worker."""
        worker = next((w for w in pool if w.job is None), None)
        if worker is None:
            worker = self._start_worker()
            pool.append(worker)
        try:
            worker.conn.send(job.trial)
        except (BrokenPipeError, OSError):  # it died while idle: replace it and send again
            pool.remove(worker)
            self._stop(worker)
            worker = self._start_worker()
            pool.append(worker)
            worker.conn.send(job.trial)
        worker.job = job
        worker.started = time.perf_counter()

    @staticmethod
    def _stop(worker: _Worker) -> None:
        worker.process.join(timeout=2.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()

    def _execute(self, scheduler: Scheduler) -> None:
        pool: list[_Worker] = []
        try:
            while True:
                while sum(w.job is not None for w in pool) < self.size:
                    job = scheduler.take()
                    if job is None:
                        break
                    self._dispatch(pool, job)
                busy = [w for w in pool if w.job is not None]
                if not busy:
                    job = scheduler.take_waiting()  # only trials held by other processes remain: wait
                    if job is None:
                        return
                    self._dispatch(pool, job)
                    continue
                # with deferred trials, wake up now and then to try their locks again
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                             timeout=0.5 if scheduler.deferred else None)
                for w in busy:
                    if w.conn in ready or w.process.sentinel in ready:
                        self._collect(w, pool, scheduler)
        finally:
            for w in pool:
                if w.job is not None:
                    w.job.lock.release()
                    w.job = None
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
            scheduler.release_all([])
            for w in pool:
                self._stop(w)

    def _collect(self, worker: _Worker, pool: list[_Worker], scheduler: Scheduler) -> None:
        """Hand a finished worker's outcome to the scheduler; a dead worker's trial is charged one attempt."""
        job = worker.job
        assert job is not None
        outcome: Outcome | None = None
        if worker.conn.poll():
            try:
                outcome = worker.conn.recv()
            except (EOFError, OSError):
                outcome = None
        if outcome is None:
            worker.process.join(timeout=5.0)
            outcome = Outcome(False, None, _death_message(worker.process.exitcode),
                              time.perf_counter() - worker.started)
            pool.remove(worker)
            self._stop(worker)
        worker.job = None
        scheduler.finish(job, outcome)
