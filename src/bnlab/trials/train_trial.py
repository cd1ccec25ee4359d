"""The trial function of sweep files: one training run, returned as final metrics and subsampled curves.

`train_trial(config, curve_points, target_acc)` rebuilds the `bnlab.train.TrainConfig` from plain data, trains
(`bnlab.train.train`, no run folder: the sweep store keeps the result) and returns plain data:

    {"final": {...},            # the last evaluation: test_loss, test_acc, train_acc, ..., steps_done, diverged
     "diverged_at_step": int | None,
     "steps_to_target": int | None,   # with target_acc: first evaluation step whose test_acc >= target_acc
     "device": "cpu" | "cuda",        # where it ran ("auto" resolves per worker)
     "curves": {"step": [...], "train_loss": [...],                 # <= curve_points points each
                "eval_step": [...], "test_loss": [...], "test_acc": [...], "train_acc": [...]}}

A diverged run is a result, not an error: its curves end at the divergence step. Timing fields of the run
("seconds", "steps_per_s") are left out so that the result is a pure function of the config (the same numbers
under every executor); the store records each trial's wall time in ``duration_s``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bnlab.config import from_mapping, plain
from bnlab.train import train
from bnlab.train.config import TrainConfig

TIMING_KEYS: frozenset[str] = frozenset({"seconds", "steps_per_s"})


def subsample_indices(n: int, points: int) -> list[int]:
    """At most `points` indices spread evenly over range(n), always including the first and the last."""
    if n <= points:
        return list(range(n))
    return sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})


def subsample(series: Mapping[str, Sequence[Any]], index_key: str, keys: Sequence[str],
              points: int) -> dict[str, list[Any]]:
    """The entries `keys` (and `index_key`) of equal-length `series`, taken at the same subsampled positions."""
    n = len(series.get(index_key, ()))
    idx = subsample_indices(n, points)
    return {k: [plain(series[k][i]) for i in idx] for k in (index_key, *keys) if k in series}


def first_step_reaching(eval_steps: Sequence[int], accs: Sequence[float], target: float) -> int | None:
    """The first evaluation step whose accuracy reaches `target` (NaN never does); None if none does (uncensored:
    the record's ``steps_to_target``; C13's censored count is `experiments.lr_grid.censored_steps_to_target`)."""
    for step, acc in zip(eval_steps, accs):
        if not math.isnan(acc) and acc >= target:
            return int(step)
    return None


def train_trial(config: dict[str, Any], curve_points: int = 200, target_acc: float | None = None) -> dict[str, Any]:
    """Train one `TrainConfig` (plain data) and return its final metrics and curves (see the module docstring)."""
    cfg = from_mapping(TrainConfig, config, where="trial.config.")
    result = train(cfg)
    history = result.history
    curves = subsample(history, "step", ["train_loss"], curve_points)
    curves.update(subsample(history, "eval_step", ["test_loss", "test_acc", "train_acc"], curve_points))
    final = {k: plain(v) for k, v in result.final.items() if k not in TIMING_KEYS}
    device = next((p.device.type for p in result.model.parameters()), "cpu")
    out = {"final": final, "diverged_at_step": result.diverged_at_step, "device": device, "curves": curves,
           "steps_to_target": None}
    if target_acc is not None:
        out["steps_to_target"] = first_step_reaching(history.get("eval_step", []), history.get("test_acc", []),
                                                     target_acc)
    return out
