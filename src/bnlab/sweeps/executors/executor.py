"""What every executor shares: cache lookup, claiming trials, retries, records and progress.

An executor runs a list of `experiments.base.Trial`s and fills a `TrialStore`. The rules, the same for `local`,
`process` and `ray`:

* Trials with the same `Trial.key()` run once (two claims may share a trial).
* A trial whose record in the store has status ``ok`` is never recomputed; a ``failed`` or unreadable record is.
* The longest trials (`Trial.cost`) start first, so a pool does not end waiting on one long straggler.
* A trial that raises (or whose worker process dies) is retried up to `retries` more times, then recorded as
  ``failed`` with its error; the other trials go on. A `BnlabError` (bad input) is not retried: it would fail
  the same way again. A diverged training run is *not* a failure: it is a result the trial function returns.
* A trial is run only while holding its store lock (`TrialStore.claim`), so two sweeps on one folder share the
  work instead of racing; a trial locked by another process is waited for and its record reused.
* Only the parent process writes the store (workers, possibly on other machines, return plain data), and it
  writes each record the moment its trial ends, so a kill loses at most the trials still running.
* `progress(event)` is called in the parent after every trial, cached ones included, with a `ProgressEvent`
  (``done, total, trial, record = event``; ``event.cached`` tells a stored result from a computed one).
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bnlab.errors import BnlabError
from bnlab.sweeps.store import TrialLock, TrialStore
from bnlab.sweeps.trial import Trial, execute_trial


@dataclass(frozen=True)
class ProgressEvent:
    """One finished trial: `done` of `total` unique trials are finished (cached ones count as done).

    `cached` is True for a trial whose record was already in the store. Unpacks as the 4-tuple
    ``done, total, trial, record = event``.
    """

    done: int
    total: int
    trial: Trial
    record: dict[str, Any]
    cached: bool = False

    def __iter__(self) -> Iterator[Any]:
        return iter((self.done, self.total, self.trial, self.record))


Progress = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a trial produced, as plain data (it crosses process and machine boundaries)."""

    ok: bool
    result: dict[str, Any] | None
    error: str | None
    duration_s: float
    retryable: bool = True


def describe_error(exc: BaseException) -> str:
    """One line: ``Type: message (at file:line in function)``, the innermost frame of the traceback."""
    message = " ".join(str(exc).split()) or "(no message)"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {message}{where}"


def attempt(trial: Trial) -> Outcome:
    """Run one attempt of `trial` in this process and catch its failure into an `Outcome`."""
    start = time.perf_counter()
    try:
        result = execute_trial(trial)
    except Exception as exc:  # noqa: BLE001 - a failing trial is recorded, never raised
        return Outcome(False, None, describe_error(exc), time.perf_counter() - start,
                       retryable=not isinstance(exc, BnlabError))
    return Outcome(True, result, None, time.perf_counter() - start)


def make_record(trial: Trial, outcome: Outcome, attempts: int) -> dict[str, Any]:
    return {
        "key": trial.key(),
        "claim": trial.claim,
        "name": trial.name,
        "fn": trial.fn,
        "params": dict(trial.params),
        "data": dict(trial.data) if trial.data else None,
        "code_fingerprint": trial.code(),
        "status": "ok" if outcome.ok else "failed",
        "result": outcome.result if outcome.ok else None,
        "error": None if outcome.ok else outcome.error,
        "attempts": attempts,
        "duration_s": round(outcome.duration_s, 6),
    }


def unique_by_cost(trials: Sequence[Trial]) -> list[Trial]:
    """Drop repeated keys (first one wins) and order longest first (stable, so equal costs keep plan order)."""
    seen: dict[str, Trial] = {}
    for t in trials:
        if not isinstance(t, Trial):
            raise BnlabError(f"executors run experiments.base.Trial objects, got {type(t).__name__}")
        seen.setdefault(t.key(), t)
    return sorted(seen.values(), key=lambda t: -float(t.cost))


@dataclass
class Job:
    """A claimed trial: we hold its lock until its record is written."""

    trial: Trial
    lock: TrialLock
    attempts: int = 0


class Scheduler:
    """The bookkeeping of one `Executor.run`: which trials remain, who holds them, records and progress."""

    def __init__(self, trials: Sequence[Trial], store: TrialStore, retries: int,
                 progress: Progress | None) -> None:
        self.store = store
        self.retries = retries
        self.progress = progress
        self.order = unique_by_cost(trials)
        self.total = len(self.order)
        self.records: dict[str, dict[str, Any]] = {}
        self.queue: deque[Trial] = deque()
        self.retry: deque[Job] = deque()
        self.deferred: deque[Trial] = deque()  # locked by another process right now
        for t in self.order:
            record = store.get(t.key())
            if record is not None and record["status"] == "ok":
                self._finished(t, record)
            else:
                self.queue.append(t)

    def _finished(self, trial: Trial, record: dict[str, Any], cached: bool = True) -> None:
        self.records[trial.key()] = record
        if self.progress is not None:
            self.progress(ProgressEvent(len(self.records), self.total, trial, record, cached))

    def _claim(self, trial: Trial, lock: TrialLock | None) -> Job | None:
        """Holding the lock, re-read the store: another process may have finished the trial meanwhile."""
        if lock is None:
            return None
        record = self.store.get(trial.key())
        if record is not None and record["status"] == "ok":
            lock.release()
            self._finished(trial, record)
            return None
        return Job(trial, lock)

    def take(self) -> Job | None:
        """The next trial to run, claimed, without waiting; None when none can be claimed right now."""
        if self.retry:
            return self.retry.popleft()
        while self.queue:
            job = self._try(self.queue.popleft())
            if job is not None:
                return job
        for _ in range(len(self.deferred)):  # a deferred trial whose holder has finished or died
            job = self._try(self.deferred.popleft())
            if job is not None:
                return job
        return None

    def _try(self, trial: Any) -> Any:
        """Claim `trial`'s lock and its job; defer it when another process holds the lock."""
        lock = self.store.claim(trial.key())
        if lock is None:
            self.deferred.append(trial)
            return None
        return self._claim(trial, lock)

    def take_waiting(self) -> Job | None:
        """Like `take`, but when only trials held by other processes remain, wait for them; None when all done."""
        while True:
            job = self.take()
            if job is not None or not self.deferred:
                return job
            trial = self.deferred.popleft()
            job = self._claim(trial, self.store.wait_for(trial.key()))
            if job is not None:
                return job

    @property
    def has_work(self) -> bool:
        return bool(self.retry or self.queue or self.deferred)

    def finish(self, job: Job, outcome: Outcome) -> None:
        """Record one attempt: retry it (keeping the lock) or write its record and let the lock go."""
        job.attempts += 1
        if not outcome.ok and outcome.retryable and job.attempts <= self.retries:
            self.retry.append(job)
            return
        record = make_record(job.trial, outcome, job.attempts)
        try:
            self.store.put(record)
        finally:
            job.lock.release()
        self._finished(job.trial, record, cached=False)

    def release_all(self, jobs: Sequence[Job]) -> None:
        for job in (*jobs, *self.retry):
            job.lock.release()


class Executor(ABC):
    """Runs trials into a store; see the module docstring for the rules every executor follows."""

    name: str = ""

    def __init__(self, *, workers: int | None = None, retries: int = 1) -> None:
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise BnlabError(f"workers must be a positive integer, got {workers!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise BnlabError(f"retries must be a non-negative integer, got {retries!r}")
        self.workers = workers
        self.retries = retries

    def run(self, trials: Sequence[Trial], store: TrialStore,
            progress: Progress | None = None) -> dict[str, dict[str, Any]]:
        """Run every trial not yet finished in `store`; return key -> record for all unique trials."""
        scheduler = Scheduler(trials, store, self.retries, progress)
        if scheduler.has_work:
            self._execute(scheduler)
        return {t.key(): scheduler.records[t.key()] for t in scheduler.order}

    @abstractmethod
    def _execute(self, scheduler: Scheduler) -> None:
        """Run jobs from `scheduler.take()` / `take_waiting()` and report each attempt to `scheduler.finish`."""
