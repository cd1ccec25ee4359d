"""The frozen, validated configuration of one training run.

Build it from plain data with `bnlab.config.from_mapping(TrainConfig, {...})` (unknown keys are rejected by name)
or directly; `__post_init__` rejects bad values with a one-line BnlabError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from bnlab.data import DATASETS
from bnlab.errors import BnlabError
from bnlab.layers.factory import norm_kind
from bnlab.models import MODELS, check_model_options
from bnlab.tracking.trackers import TRACKERS

LOSSES: tuple[str, ...] = ("auto", "cross_entropy", "mse", "sum_squared")

# keys that may change between an interrupted run and its resumption without changing its numbers
RESUMABLE_CHANGES: frozenset[str] = frozenset({"steps", "progress", "trackers", "checkpoint_every", "sync_every",
                                               "device"})


@dataclass(frozen=True)
class TrainConfig:
    """One run: model x norm x dataset x optimiser, trained for `steps` SGD/Adam steps of `batch_size`."""

    model: str = "mlp"  # bnlab.models.MODELS name (ignored when train() is given a model)
    norm: str = "none"  # a row of bnlab.layers.factory.NORMS
    dataset: str = "mnist5k"  # bnlab.data.DATASETS name (ignored when train() is given a dataset)
    data_dir: str | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"train_size": 1000}
    data_seed: int = 0  # seed of procedural data sets (synthetic, dln_regression)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"config": "narrow", "width": 0.5}
    norm_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"affine": False}
    init_scale: float = 1.0  # multiplier on Glorot-uniform weights
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0  # L2 penalty added to the gradient (torch's `weight_decay`)
    steps: int = 1000
    batch_size: int = 60
    eval_every: int = 100  # evaluate at step 0, every `eval_every` steps and at the end; 0: start and end only
    eval_train_size: int = 1000  # train accuracy/loss is measured on this fixed prefix of the training set
    eval_batch_size: int = 2000  # chunk size for evaluation forwards (memory only; numbers do not depend on it)
    # auto: cross-entropy / MSE by the data set's task; sum_squared: Σ_i ‖f(x_i) − y_i‖² over the batch, summed over
    # examples and outputs (Santurkar et al.'s deep-linear-net loss, whose scale their lr 1e-6 is set for)
    loss: Literal["auto", "cross_entropy", "mse", "sum_squared"] = "auto"
    # diverged when a train loss is non-finite or > diverge_factor x the first step's loss. Not lower: at large lr a
    # BN net's cross-entropy often spikes to 10-30x its initial value and recovers (measured: Ioffe's MLP with BN,
    # lr 10, on mnist5k peaks at 14x, then reaches 92% test accuracy)
    diverge_factor: float = 1000.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = 0  # with a run folder: save every k steps; 0 = at every evaluation
    sync_every: int = 0  # read losses back from the device every k steps; 0 = 1 on CPU, 50 on CUDA
    trackers: tuple[str, ...] = ("jsonl",)  # with a run folder: jsonl | tensorboard | wandb
    progress: bool = True  # tqdm bar (only shown on a terminal)

    def __post_init__(self) -> None:
        def bad(key: str, what: str, value: Any) -> BnlabError:
            return BnlabError(f"{key} must be {what}, got {value!r}")

        kind = norm_kind(self.norm)  # unknown norms are refused by name
        if self.model not in MODELS:
            raise BnlabError(f"unknown model '{self.model}' (choose from {', '.join(MODELS)})")
        check_model_options(self.model, self.model_kwargs)  # names only; the model checks the values
        if self.dataset not in DATASETS:
            raise BnlabError(f"unknown dataset '{self.dataset}' (choose from {', '.join(DATASETS)})")
        if self.optimizer not in ("sgd", "adam"):
            raise bad("optimizer", "'sgd' or 'adam'", self.optimizer)
        if self.loss not in LOSSES:
            raise bad("loss", "one of " + ", ".join(repr(k) for k in LOSSES), self.loss)
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise bad("lr", "a finite number > 0", self.lr)
        if not math.isfinite(self.init_scale) or self.init_scale <= 0:
            raise bad("init_scale", "a finite number > 0", self.init_scale)
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "in [0, 1)", self.momentum)
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "a finite number >= 0", self.weight_decay)
        for key in ("steps", "batch_size", "eval_train_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise bad(key, "an integer >= 1", getattr(self, key))
        for key in ("eval_every", "checkpoint_every", "sync_every"):
            if getattr(self, key) < 0:
                raise bad(key, "an integer >= 0", getattr(self, key))
        if not self.diverge_factor > 1:
            raise bad("diverge_factor", "> 1", self.diverge_factor)
        if self.batch_size == 1 and kind.batch_dependent:
            raise BnlabError(f"batch_size 1 with norm '{self.norm}': batch statistics of one example are degenerate")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", "auto, cpu, cuda or cuda:N", self.device)
        for name in self.trackers:
            if name not in TRACKERS:
                raise BnlabError(f"unknown tracker '{name}' (choose from {', '.join(TRACKERS)})")
