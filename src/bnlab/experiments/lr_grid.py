"""The learning-rate searches C07 and C13 share: per scale, the settings (model x data set x lr grid), the trials
that search them with and without BN, and the censored steps-to-target C13 and the study compute from a run.

`lr_trials(claim, settings, seeds)` names `bnlab.trials.lr_search.lr_search`; C07 and C13 plan byte-identical
parameters, so the audit runs each search once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bnlab.config import from_mapping
from bnlab.sweeps.trial import Trial

TRIALS = "bnlab.trials.lr_search"  # the trial function this plan names
NORMS: tuple[tuple[str, str], ...] = (("bn", "BN"), ("none", "no BN"))


@dataclass(frozen=True)
class LrSetting:
    """One model x data set x lr grid, searched with and without BN."""

    label: str
    dataset: str = "mnist5k"
    model: str = "mlp"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    lrs: tuple[float, ...] = (0.01, 0.1, 1.0)
    bisect: int = 2
    steps: int = 800
    batch_size: int = 60
    momentum: float = 0.0
    weight_decay: float = 0.0
    eval_every: int = 25
    trained_acc: float = 0.8  # slow below this final test accuracy (reported; not divergence)
    device: str = "cpu"


@dataclass(frozen=True)
class LrGridConfig:
    """The lr searches of one scale: one model x data set x lr grid per setting."""

    settings: tuple[LrSetting, ...]


GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
LR_GRIDS: dict[str, LrGridConfig] = {
    "smoke": LrGridConfig(settings=(
        LrSetting(label="small MLP / digits", dataset="digits", model_kwargs={"hidden": [32, 32]},
                  lrs=(0.1, 1.0, 10.0, 100.0), bisect=1, steps=60, batch_size=32, eval_every=20, trained_acc=0.5),)),
    "default": LrGridConfig(settings=(LrSetting(label="Ioffe MLP / mnist5k", lrs=GRID),)),
    "paper": LrGridConfig(settings=(
        LrSetting(label="Ioffe MLP / mnist5k", lrs=(*GRID, 300.0), steps=50_000, eval_every=500, trained_acc=0.9,
                  device="auto"),
        LrSetting(label="VGG-11 / CIFAR-10", dataset="cifar10", model="vgg", model_kwargs={"config": "vgg11"},
                  lrs=(0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0), steps=15_000, batch_size=128, momentum=0.9,
                  weight_decay=5e-4, eval_every=500, trained_acc=0.5, device="auto"),
    )),
}


def trial_name(s: LrSetting, norm: str, seed: int) -> str:
    return f"{s.label}/{norm}/search/seed={seed}"


def run_params(s: LrSetting, norm: str, seed: int) -> dict[str, Any]:
    return {"lrs": list(s.lrs), "bisect": s.bisect, "dataset": s.dataset, "model": s.model,
            "model_kwargs": dict(s.model_kwargs), "dataset_kwargs": dict(s.dataset_kwargs), "norm": norm,
            "steps": s.steps, "batch_size": s.batch_size, "momentum": s.momentum, "weight_decay": s.weight_decay,
            "eval_every": s.eval_every, "device": s.device, "seed": seed}


def lr_trials(claim: str, settings: tuple[LrSetting, ...], seeds: tuple[int, ...]) -> tuple[Trial, ...]:
    return tuple(Trial(claim, trial_name(s, norm, seed), f"{TRIALS}:lr_search", run_params(s, norm, seed),
                       cost=(len(s.lrs) + s.bisect) * s.steps * (1.5 if norm == "bn" else 1.0) / 1000)
                 for s in settings for norm, _ in NORMS for seed in seeds)


def settings_of(config: Mapping[str, Any]) -> tuple[LrSetting, ...]:
    return tuple(from_mapping(LrSetting, s) for s in config["settings"])


def censored_steps_to_target(rec: Mapping[str, Any], target: float, censor: int) -> tuple[int, bool]:
    """(first evaluated step with test accuracy >= target, reached?); (censor, False) when never reached before
    the run ended or diverged. Step 0 counts as 1 so that log-ratios stay finite."""
    end = rec["stopped_at_step"]
    for step, acc in zip(rec["eval_step"], rec["test_acc_curve"]):
        if end is not None and step > end:
            break
        if math.isfinite(acc) and acc >= target:
            return max(int(step), 1), True
    return censor, False
