"""C12: BN regularises, like a weak Dropout, through the noise of mini-batch statistics.

References: Ioffe & Szegedy 2015, Sec. 3.4 ("BN regularizes the model ... reduces the need for Dropout"); Luo et
al. 2019 (BN's batch noise acts as an adaptive regulariser, stronger for smaller batches); Hoffer et al. 2017
(ghost batch norm); Wu & Johnson 2021 (normalisation batch size and population statistics in training).

Protocol (sizes in `CONFIGS`): a small training subset of mnist5k so the nets overfit, Ioffe's MLP shape (`mlp`,
3 × 100 units, norm before the nonlinearity) with ReLU, trained by SGD with momentum for many epochs. Variants:

* no BN; BN; Dropout (p after every hidden layer); BN + Dropout;
* BN with ghost batches of g < B examples (`ghost_batch_size`; B itself is plain BN): more noise as g shrinks;
* control: BN trained with **population statistics** — every BN layer normalises with the exact mean and (unbiased)
  variance of the whole training subset at the current weights (recomputed every `refresh_every` steps, no
  gradient through them), so the normalisation has no batch noise (`PopulationStatisticsModel`).

The train–test gap is the final accuracy on the whole training subset minus the test accuracy.

Rule (written before the run): three paired-by-seed effects, each judged by `verdict_from_ci` of its 95% CI against
0: (i) regularisation: gap(no BN) − gap(BN); (ii) batch noise as the mechanism: gap(population-statistics BN) −
gap(BN); (iii) more noise, less overfitting: the least-squares slope of the gap against log2 of the normalisation
batch size (ghost sizes and B). Overall: `combine_verdicts` of (i), (ii), (iii). Dropout's effect, gap(no BN) −
gap(Dropout), is reported beside (i) for scale ("like a weak Dropout").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bnlab.config import from_mapping, to_mapping
from bnlab.data import load_dataset
from bnlab.errors import BnlabError
from bnlab.experiments.base import (
    SCALES,
    ClaimResult,
    Figure,
    KeyNumber,
    Plan,
    combine_verdicts,
    mean_ci,
    seeds_for,
    verdict_from_ci,
)
from bnlab.models import build_model
from bnlab.state import batchnorm_layers
from bnlab.sweeps.trial import Trial
from bnlab.train import TrainConfig, train
from bnlab.train.evaluate import evaluate

CLAIM_ID = "C12"
TITLE = "BN regularises like a weak Dropout"
_MODULE = "bnlab.experiments.c12_regularisation"


@dataclass(frozen=True)
class C12Config:
    dataset: str = "mnist5k"
    model: str = "mlp"
    activation: str = "relu"
    train_size: int = 500
    steps: int = 1000
    batch_size: int = 50
    lr: float = 0.05
    momentum: float = 0.9
    dropout: float = 0.3
    ghost_sizes: tuple[int, ...] = (5, 10, 25)  # < batch_size; batch_size itself is plain BN
    refresh_every: int = 5  # population statistics recomputed every k training forwards


CONFIGS: dict[str, C12Config] = {
    "smoke": C12Config(train_size=100, steps=10, batch_size=20, ghost_sizes=(5,), refresh_every=2),
    "default": C12Config(),
    "paper": C12Config(train_size=1000, steps=20000, batch_size=100, ghost_sizes=(4, 8, 16, 32, 64),
                       refresh_every=1),
}


class PopulationStatisticsModel(nn.Module):
    """Wraps a BN model so that in training mode every BN layer normalises with the population statistics of a
    fixed data set (`data`) instead of the batch's: BN layers run in eval mode (running statistics, no gradient
    through them); every `refresh_every` training forwards the running statistics are recomputed exactly on
    `data` (one no-grad forward with BN in training mode and cumulative averaging, so mean = the data's mean and
    var = its unbiased variance). Dropout and other modules keep their mode. In eval mode it is the wrapped model.
    Side effect: overwrites the BN layers' running statistics (they *are* this model's population statistics)."""

    def __init__(self, model: nn.Module, data: torch.Tensor, refresh_every: int = 1) -> None:
        super().__init__()
        if refresh_every < 1:
            raise BnlabError(f"refresh_every must be >= 1, got {refresh_every}")
        self.model = model
        self.register_buffer("data", data, persistent=False)
        self.refresh_every = refresh_every
        self._bn = [m for _, m in batchnorm_layers(model)]
        if not self._bn:
            raise BnlabError("population statistics: the model has no BN layers")
        self._calls = 0

    @torch.no_grad()
    def refresh(self) -> None:
        """Running statistics := mean and unbiased variance of `data` at the current weights, per BN layer."""
        modes = [m.training for m in self.model.modules()]
        saved = [m.momentum for m in self._bn]
        self.model.eval()
        for m in self._bn:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
            m.train()
        self.model(self.data)  # (N, *in_shape): one batch, the whole data set
        for m, momentum in zip(self._bn, saved):
            m.momentum = momentum
        for m, mode in zip(self.model.modules(), modes):
            m.training = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.model(x)
        if self._calls % self.refresh_every == 0:
            self.refresh()
        self._calls += 1
        for m in self._bn:
            m.training = False  # normalise with the population statistics
        try:
            return self.model(x)
        finally:
            for m in self._bn:
                m.training = True


def regularisation_run(*, dataset: str, model: str, activation: str, train_size: int, norm: str,
                       norm_kwargs: dict[str, Any], dropout: float, population_stats: bool, refresh_every: int,
                       steps: int, batch_size: int, lr: float, momentum: float, seed: int) -> dict:
    """Trial: train one variant on the training subset; final train / test accuracy and loss, the gap."""
    data = load_dataset(dataset, train_size=train_size)
    config = TrainConfig(model=model, norm=norm, norm_kwargs=dict(norm_kwargs), dataset=dataset,
                         dataset_kwargs={"train_size": train_size},
                         model_kwargs={"activation": activation, "dropout": dropout}, steps=steps,
                         batch_size=batch_size, lr=lr, momentum=momentum, eval_every=0, eval_train_size=train_size,
                         seed=seed, progress=False, device="auto")
    torch.manual_seed(seed)
    net: nn.Module = build_model(model, norm=norm, norm_kwargs=dict(norm_kwargs), in_shape=data.in_shape,
                                 num_classes=data.num_classes, activation=activation, dropout=dropout)
    if population_stats:
        net = PopulationStatisticsModel(net, data.train_x, refresh_every)
    result = train(config, model=net, dataset=data)
    if population_stats:
        result.model.refresh()  # the final evaluation used statistics up to refresh_every steps old: redo it
        loss_fn = nn.functional.cross_entropy
        on = data.to(result.model.data.device)
        train_loss, train_acc = evaluate(result.model, on.train_x, on.train_y, loss_fn)
        test_loss, test_acc = evaluate(result.model, on.test_x, on.test_y, loss_fn)
        final = {"train_acc": train_acc, "test_acc": test_acc, "train_eval_loss": train_loss, "test_loss": test_loss}
    else:
        final = result.final
    train_acc = float(final.get("train_acc", math.nan))
    test_acc = float(final.get("test_acc", math.nan))
    diverged = result.diverged_at_step is not None
    return {
        "diverged": diverged,
        "train_acc": train_acc,
        "test_acc": test_acc,
        "gap": train_acc - test_acc if not diverged else math.nan,
        "train_loss": float(final.get("train_eval_loss", math.nan)),
        "test_loss": float(final.get("test_loss", math.nan)),
        "n_test": len(data.test_y),
    }


def config_for(scale: str) -> C12Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    cfg = CONFIGS[scale]
    if any(g >= cfg.batch_size or g < 2 for g in cfg.ghost_sizes):
        raise BnlabError(f"C12 ghost sizes must be in [2, batch_size), got {cfg.ghost_sizes}")
    return cfg


def variants(cfg: C12Config) -> dict[str, dict[str, Any]]:
    """label -> (norm, norm_kwargs, dropout, population_stats) of every variant."""
    out = {
        "no BN": {"norm": "none", "norm_kwargs": {}, "dropout": 0.0, "population_stats": False},
        "BN": {"norm": "bn", "norm_kwargs": {}, "dropout": 0.0, "population_stats": False},
        "Dropout": {"norm": "none", "norm_kwargs": {}, "dropout": cfg.dropout, "population_stats": False},
        "BN + Dropout": {"norm": "bn", "norm_kwargs": {}, "dropout": cfg.dropout, "population_stats": False},
        "BN, population statistics": {"norm": "bn", "norm_kwargs": {}, "dropout": 0.0, "population_stats": True},
    }
    for g in cfg.ghost_sizes:
        out[f"BN, ghost {g}"] = {"norm": "bn", "norm_kwargs": {"ghost_batch_size": g}, "dropout": 0.0,
                                 "population_stats": False}
    return out


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    seed_list = seeds_for(seeds)
    trials = []
    for label, v in variants(cfg).items():
        for s in seed_list:
            trials.append(Trial(CLAIM_ID, f"{label}/seed={s}", f"{_MODULE}:regularisation_run",
                                {"dataset": cfg.dataset, "model": cfg.model, "activation": cfg.activation,
                                 "train_size": cfg.train_size, **v, "refresh_every": cfg.refresh_every,
                                 "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                 "momentum": cfg.momentum, "seed": s},
                                cost=cfg.steps / 1000 * (2.0 if v["norm"] == "bn" else 1.0)))
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), tuple(trials))


def _slope(xs: list[float], ys: list[float]) -> float:
    pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def _finite_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    vals = [v for v in values if math.isfinite(v)]
    if len(vals) < len(values):  # a diverged run: no paired effect for that seed
        return mean_ci(vals) if vals else (math.nan, None, None)
    return mean_ci(vals)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    cfg = from_mapping(C12Config, plan.config)
    seeds = plan.seeds
    labels = list(variants(cfg))
    runs = {label: [results[f"{label}/seed={s}"] for s in seeds] for label in labels}

    def gaps(label: str) -> list[float]:
        return [r["gap"] for r in runs[label]]

    def paired(a: str, b: str) -> list[float]:
        return [x - y for x, y in zip(gaps(a), gaps(b))]

    d_reg = paired("no BN", "BN")
    d_noise = paired("BN, population statistics", "BN")
    d_dropout = paired("no BN", "Dropout")
    sizes = [*cfg.ghost_sizes, cfg.batch_size]
    ghost_labels = [f"BN, ghost {g}" for g in cfg.ghost_sizes] + ["BN"]
    slopes = [_slope([math.log2(g) for g in sizes], [runs[lab][i]["gap"] for lab in ghost_labels])
              for i in range(len(seeds))]
    effects = {}
    for name, values in (("regularisation", d_reg), ("batch_noise", d_noise), ("ghost_slope", slopes),
                         ("dropout", d_dropout)):
        m, lo, hi = _finite_ci(values)
        effects[name] = {"values": values, "mean": m, "ci": [lo, hi], "verdict": verdict_from_ci(lo, hi, 0.0)}
    verdict = combine_verdicts([effects[k]["verdict"] for k in ("regularisation", "batch_noise", "ghost_slope")])

    per_variant = {}
    for label in labels:
        per_variant[label] = {key: mean_ci([r[key] for r in runs[label] if math.isfinite(r[key])])
                              for key in ("gap", "train_acc", "test_acc")}
        per_variant[label]["diverged"] = sum(r["diverged"] for r in runs[label])

    def group(key: str, label_: str) -> dict:
        vals = [per_variant[lab][key] for lab in labels]
        return {"label": label_, "values": [v[0] for v in vals], "lo": [_nan(v[1]) for v in vals],
                "hi": [_nan(v[2]) for v in vals]}

    ghost_series = {"label": "BN (ghost batches)", "x": sizes,
                    "y": [per_variant[lab]["gap"][0] for lab in ghost_labels],
                    "lo": [_nan(per_variant[lab]["gap"][1]) for lab in ghost_labels],
                    "hi": [_nan(per_variant[lab]["gap"][2]) for lab in ghost_labels]}
    ref_series = [{"label": lab, "x": sizes, "y": [per_variant[lab]["gap"][0]] * len(sizes)}
                  for lab in ("no BN", "BN, population statistics")]
    min_train_acc = min(per_variant[lab]["train_acc"][0] for lab in labels)
    caveats = [
        f"Small scale: {cfg.train_size} training examples, {cfg.steps} steps; the gap measures overfitting of this "
        "subset only.",
        "A smaller gap can also come from fitting the training set less well (lower train accuracy), not only from "
        "better generalisation: compare train and test accuracy per variant (metrics).",
        f"Population statistics are recomputed every {cfg.refresh_every} steps on the training subset, with no "
        "gradient through them, which also removes BN's projection of the gradient (C08) — the control changes "
        "more than the noise alone.",
    ]
    if not min_train_acc > 0.97:
        caveats.append(f"Not every variant fits the training subset (lowest mean train accuracy "
                       f"{min_train_acc:.3f}), so part of the gap differences is under-fitting.")
    else:
        bn_test = per_variant["BN"]["test_acc"][0]
        n_test = results[f"BN/seed={seeds[0]}"].get("n_test", 0)
        se = math.sqrt(bn_test * (1 - bn_test) / n_test) if n_test and 0 < bn_test < 1 else math.nan
        gaps_all = [per_variant[lab]["gap"][0] for lab in labels]
        caveats.append(f"Every variant fits the training subset (train accuracy ≥ {min_train_acc:.3f}), so the gaps "
                       f"({min(gaps_all):.3f}–{max(gaps_all):.3f}) measure real overfitting; but one test accuracy "
                       f"has a binomial standard error of about {se:.3f} ({n_test} test examples), so differences "
                       "between variants of ~0.01 are within noise at this number of seeds.")
    reg, noise, slope = effects["regularisation"], effects["batch_noise"], effects["ghost_slope"]
    summary = (f"Train–test accuracy gap: no BN {per_variant['no BN']['gap'][0]:.3f}, BN "
               f"{per_variant['BN']['gap'][0]:.3f}, Dropout {per_variant['Dropout']['gap'][0]:.3f}, BN + Dropout "
               f"{per_variant['BN + Dropout']['gap'][0]:.3f}, BN with population statistics "
               f"{per_variant['BN, population statistics']['gap'][0]:.3f}. (i) no BN − BN {reg['mean']:+.3f} → "
               f"{reg['verdict']}; (ii) population − batch statistics {noise['mean']:+.3f} → {noise['verdict']}; "
               f"(iii) gap slope per doubling of the normalisation batch {slope['mean']:+.4f} → {slope['verdict']}.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=("Paired by seed, 95% CI vs 0 (verdict_from_ci) of (i) gap(no BN) − gap(BN), (ii) gap(BN with "
              "population statistics) − gap(BN), (iii) slope of gap vs log2(normalisation batch size); overall = "
              "combine_verdicts(i, ii, iii). gap = train accuracy − test accuracy at the end."),
        summary=summary,
        method=(f"{cfg.model} ({cfg.activation}) on {cfg.train_size} {cfg.dataset} training examples, SGD lr "
                f"{cfg.lr}, momentum {cfg.momentum}, batch {cfg.batch_size}, {cfg.steps} steps, Dropout p = "
                f"{cfg.dropout}, ghost batches {list(cfg.ghost_sizes)}, {len(seeds)} seeds."),
        key_number=KeyNumber("train–test gap, no BN − BN", reg["mean"], reg["ci"][0], reg["ci"][1], "accuracy"),
        metrics={"effects": effects, "per_variant": per_variant},
        figures=[
            Figure("gap_by_variant", "bars", "Train–test gap per variant",
                   f"Final train accuracy (whole subset) minus test accuracy; mean and 95% CI over {len(seeds)} "
                   "seeds.", {"panels": [{"title": "train − test accuracy", "ylabel": "gap",
                                          "categories": labels, "groups": [group("gap", "gap")]},
                                         {"title": "test accuracy", "ylabel": "accuracy", "categories": labels,
                                          "groups": [group("test_acc", "test accuracy")]}]}),
            Figure("gap_vs_ghost", "lines", "Gap vs normalisation batch size",
                   f"BN normalising ghost batches of g examples inside batches of {cfg.batch_size} (g = "
                   f"{cfg.batch_size}: plain BN); no BN and population-statistics BN as flat references.",
                   {"panels": [{"title": "train − test accuracy", "xlabel": "normalisation batch size",
                                "ylabel": "gap", "xscale": "log", "series": [ghost_series, *ref_series]}]}),
        ],
        caveats=caveats)
