"""A progress bar for long runs of trials: done / total, elapsed time and an estimate of the time left.

The estimate weighs trials by their planned `Trial.cost` (the executors also use it to run the longest first):
time left ≈ elapsed × (cost still to run) / (cost run so far), over the trials computed in this run (trials found
in the store cost nothing). On a terminal the bar rewrites one line (carriage return); elsewhere (a log file, CI)
bnlab prints plain lines instead and this class is not used.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def clock(seconds: float) -> str:
    """12 s, 3:05, 1:02:07."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """Call `expect(trials, cached_keys)` once, then the bar with every `ProgressEvent`; `close()` ends the line."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self.remaining: dict[str, float] = {}
        self.total_cost = 0.0
        self.failed = 0
        self._open = False

    def expect(self, trials: Sequence[Any], cached: set[str] = frozenset()) -> None:
        """The trials of the run (unique by key) and the keys already in the store."""
        self.remaining = {t.key(): max(float(getattr(t, "cost", 1.0) or 1.0), 1e-6) for t in trials
                          if t.key() not in cached}
        self.total_cost = sum(self.remaining.values())
        self.start = time.perf_counter()

    def line(self, done: int, total: int) -> str:
        elapsed = time.perf_counter() - self.start
        left_cost = sum(self.remaining.values())
        run_cost = self.total_cost - left_cost
        fraction = done / total if total else 1.0
        filled = int(round(self.width * fraction))
        eta = f", ~{clock(elapsed * left_cost / run_cost)} left" if run_cost > 0 and left_cost > 0 else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} trials, {clock(elapsed)}{eta}{failed}"

    def __call__(self, event: Any) -> None:
        self.remaining.pop(event.trial.key(), None)
        self.failed += event.record.get("status") == "failed"
        self.stream.write("\r" + self.line(event.done, event.total) + "\033[K")  # \033[K: clear to the line's end
        self.stream.flush()
        self._open = True

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
