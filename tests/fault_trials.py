"""Trial functions that misbehave on purpose, to check an executor's guarantees (tests, and a cluster smoke check).

They are ordinary trial functions (`Trial(fn="fault_trials:<name>", params={...})`):

* `tiny_fit`    -- a small seeded torch regression; its numbers must be identical under every executor;
* `fail_until`  -- raises for its first `fails` attempts, then succeeds (retries);
* `crash_until` -- SIGKILLs its own worker process for its first `crashes` attempts (worker loss); never run it
  with the ``local`` executor, whose worker is the sweep process itself;
* `sleep_then`  -- sleeps, then returns (a trial to interrupt mid-run).

Attempts are counted with marker files in `marker_dir` (created atomically with O_EXCL), so the count survives a
killed process and is shared by all workers on one machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def _next_attempt(marker_dir: str, tag: str) -> int:
    """1 for the first call with this (marker_dir, tag), 2 for the second, ... (atomic across processes)."""
    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        try:
            os.close(os.open(folder / f"{tag}.attempt{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n
        except FileExistsError:
            n += 1


def tiny_fit(seed: int, steps: int = 30, width: int = 16, lr: float = 0.05) -> dict[str, Any]:
    """Full-batch SGD on a seeded random regression with a 2-layer tanh net; returns the loss curve."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)  # (N, D)
    y = torch.randn(64, 1, generator=g)  # (N, 1)
    w1 = (torch.randn(8, width, generator=g) / 8**0.5).requires_grad_()
    w2 = (torch.randn(width, 1, generator=g) / width**0.5).requires_grad_()
    losses = []
    for _ in range(steps):
        loss = ((torch.tanh(x @ w1) @ w2 - y) ** 2).mean()  # (N, D) -> (N, width) -> (N, 1) -> ()
        losses.append(loss.item())
        g1, g2 = torch.autograd.grad(loss, (w1, w2))
        with torch.no_grad():
            w1 -= lr * g1
            w2 -= lr * g2
    return {"seed": seed, "final_loss": losses[-1], "losses": losses}


def fail_until(marker_dir: str, tag: str, fails: int, value: float = 0.0) -> dict[str, Any]:
    """Raise RuntimeError on the first `fails` attempts, then return {"value", "attempt"}."""
    n = _next_attempt(marker_dir, tag)
    if n <= fails:
        raise RuntimeError(f"injected failure {n} of {fails} for {tag}")
    return {"value": value, "attempt": n}


def crash_until(marker_dir: str, tag: str, crashes: int, value: float = 0.0) -> dict[str, Any]:
    """SIGKILL this process on the first `crashes` attempts, then return {"value", "attempt"}."""
    n = _next_attempt(marker_dir, tag)
    if n <= crashes:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"value": value, "attempt": n}


def sleep_then(seconds: float, value: float = 0.0, marker_dir: str | None = None,
               tag: str = "") -> dict[str, Any]:
    """Sleep `seconds`, then return {"value"}; with `marker_dir`, count this call as an attempt of `tag` first."""
    if marker_dir is not None:
        _next_attempt(marker_dir, tag)
    time.sleep(seconds)
    return {"value": value}


def returns(value: Any) -> Any:
    """Return `value` as the result, whatever it is (an empty mapping, a list): a trial function gone wrong."""
    return value
