"""Trial functions of the learning-rate claims (C07, C13): a grid of SGD runs per (net, seed), then bisection of the
largest stable learning rate between the last stable and the first unstable grid lr.

**Divergence** is defined from the training loss alone (issue "Faithful protocols"): a run diverged when a loss is
non-finite, or reaches ≥ `diverge_factor` (1000) × its first value (`bnlab.train` stops it there), or when its
final training loss -- the mean over the last 10% of steps -- is ≥ its initial loss (the loss of the first step,
at the initial weights): it went nowhere or up. A finite run that learns slowly is *not* divergent; slowness
(final test accuracy below `trained_acc`) is reported separately.

**The largest stable lr**, in log10 units: scanning the grid upwards, the last stable grid lr L before the first
unstable one U; `bisect` times the geometric midpoint of [L, U] is trained and replaces L or U (each step halves
the log-interval: after 2 steps the lr is known to a quarter of a grid step). A net stable at every grid lr is
censored at the grid's largest; one unstable at every grid lr gets one grid step below the smallest.
Plain data in, plain data out; no claim prose is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bnlab.train import TrainConfig, train

TAIL = 0.1  # the final training loss: mean over the last 10% of steps


def _window_means(values: Sequence[float], points: int) -> tuple[list[int], list[float]]:
    """Split a per-step series into <= `points` equal windows: (window start steps, window means)."""
    n = len(values)
    if n == 0:
        return [], []
    width = max(1, math.ceil(n / points))
    starts = list(range(0, n, width))
    return starts, [sum(values[s:s + width]) / len(values[s:s + width]) for s in starts]


def _every(values: Sequence[Any], points: int) -> list[Any]:
    stride = max(1, math.ceil(len(values) / points))
    return list(values[::stride]) if (len(values) - 1) % stride == 0 else list(values[::stride]) + [values[-1]]


def divergence(losses: Sequence[float], stopped_at: int | None) -> str | None:
    """Why a run diverged ("non-finite", "1000x initial", "no decrease"), or None when it did not."""
    if stopped_at is not None:
        return "non-finite" if any(not math.isfinite(v) for v in losses) else "1000x initial"
    if not losses:
        return "no decrease"
    tail = losses[-max(1, int(len(losses) * TAIL)):]
    initial, final = losses[0], sum(tail) / len(tail)
    if not (math.isfinite(initial) and math.isfinite(final)):
        return "non-finite"
    return "no decrease" if final >= initial else None


def lr_run(*, dataset: str, model: str, model_kwargs: Mapping[str, Any], dataset_kwargs: Mapping[str, Any],
           norm: str, lr: float, steps: int, batch_size: int, momentum: float, weight_decay: float, eval_every: int,
           device: str, seed: int) -> dict[str, Any]:
    """One SGD run: divergence by the loss rule above, final accuracies, the eval curve (<= 200 points) and a
    window-averaged training-loss curve (<= 100 points)."""
    config = TrainConfig(model=model, norm=norm, dataset=dataset, model_kwargs=dict(model_kwargs),
                         dataset_kwargs=dict(dataset_kwargs), lr=lr, steps=steps, batch_size=batch_size,
                         momentum=momentum, weight_decay=weight_decay, eval_every=eval_every, seed=seed,
                         device=device, progress=False)
    result = train(config)
    h = result.history
    losses = [float(v) for v in h["train_loss"]]
    loss_step, loss = _window_means(losses, 100)
    return {
        "lr": lr,
        "divergence": divergence(losses, result.diverged_at_step),
        "stopped_at_step": result.diverged_at_step,
        "test_acc": float(result.final.get("test_acc", math.nan)),
        "train_acc": float(result.final.get("train_acc", math.nan)),
        "initial_loss": losses[0] if losses else math.nan,
        "eval_step": _every(h["eval_step"], 200),
        "test_acc_curve": _every(h["test_acc"], 200),
        "loss_step": loss_step,
        "train_loss": loss,
    }


def largest_stable(grid: Sequence[float], stable: Sequence[bool]) -> tuple[int | None, int | None]:
    """(index of the last stable grid lr before the first unstable one, index of that unstable one)."""
    first_unstable = next((i for i, ok in enumerate(stable) if not ok), None)
    if first_unstable is None:
        return len(grid) - 1, None
    return (first_unstable - 1 if first_unstable > 0 else None), first_unstable


def lr_search(*, lrs: Sequence[float], bisect: int, **run: Any) -> dict[str, Any]:
    """Trial: the grid of `lr_run`s of one (net, seed), then `bisect` bisection runs; the largest stable lr."""
    grid = [lr_run(lr=lr, **run) for lr in lrs]
    stable = [g["divergence"] is None for g in grid]
    lo_i, hi_i = largest_stable(lrs, stable)
    bisection: list[dict[str, Any]] = []
    if lo_i is None:  # unstable everywhere: one grid step below the smallest
        step = math.log10(lrs[1] / lrs[0]) if len(lrs) > 1 else 1.0
        log_lr, censored = math.log10(lrs[0]) - step, "below the grid"
    elif hi_i is None:  # stable everywhere
        log_lr, censored = math.log10(lrs[lo_i]), "at the top of the grid"
    else:
        lo, hi = math.log10(lrs[lo_i]), math.log10(lrs[hi_i])
        for _ in range(bisect):
            mid = (lo + hi) / 2
            rec = lr_run(lr=10 ** mid, **run)
            bisection.append(rec)
            lo, hi = (mid, hi) if rec["divergence"] is None else (lo, mid)
        log_lr, censored = lo, None
    return {"grid": grid, "bisection": bisection, "log10_largest_stable_lr": log_lr, "censored": censored,
            "resolution_decades": (math.log10(lrs[1] / lrs[0]) if len(lrs) > 1 else 1.0) / 2 ** bisect}
