"""C02: γ and β restore representational power (Ioffe & Szegedy 2015, Sec. 3; Santurkar et al. 2018, Obs. 4.3).

The claim has three testable parts:

(a) **identity recovery**: with γ = √(σ²_B + ε) and β = μ_B, BN's output y = γ (x − μ_B)/√(σ²_B + ε) + β equals its
    input x. Measured with bnlab's `BatchNorm` in training mode on random data of very different per-feature
    scales, (N, C) and (N, C, H, W), in float64 and float32: max |y − x| / max |x|.
(b) **the near-linear regime**: without γ, β each sigmoid input is normalised to zero mean and unit variance, so
    about 68% of them (P(|z| < 1) for z ~ N(0, 1)) sit in the sigmoid's near-linear band |x| < 1; learnable γ, β can
    move them out. Measured over training: the fraction of sigmoid inputs with |x| < 1 on a fixed held-out batch
    (BN with the batch's statistics), Ioffe's MNIST net (`mlp`, 3 × 100 sigmoid) with BN with vs without
    affine parameters (no-BN net as a reference).
(c) **accuracy**: final test accuracy of the two BN nets.

Rule (written before the run): (a) supported if the relative error is ≤ 1e-12 in float64 and ≤ 1e-5 in float32,
else refuted. (b) d_band = band fraction without affine − with affine at the end of training, per seed (paired):
`verdict_from_ci` of its 95% CI against 0. (c) d_acc = test accuracy with affine − without: `verdict_from_ci`
against 0. Overall: `combine_verdicts` of (a), (b), (c).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

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
from bnlab.layers import BatchNorm
from bnlab.probes.activations import sigmoid_input_fractions
from bnlab.sweeps.trial import Trial
from bnlab.train import TrainConfig, train

CLAIM_ID = "C02"
TITLE = "γ and β restore representational power"
_MODULE = "bnlab.experiments.c02_affine"
# (label, norm, affine)
_VARIANTS: tuple[tuple[str, str, bool], ...] = (("BN with γ, β", "bn", True), ("BN without γ, β", "bn", False),
                                                ("no BN", "none", True))
TOL_FLOAT64 = 1e-12
TOL_FLOAT32 = 1e-5


@dataclass(frozen=True)
class C02Config:
    dataset: str = "mnist5k"
    model: str = "mlp"
    steps: int = 1500
    batch_size: int = 60
    lr: float = 0.5
    momentum: float = 0.0
    probe_every: int = 50
    probe_examples: int = 500  # held-out test examples the band fraction is measured on
    band: float = 1.0
    identity_batch: int = 64


CONFIGS: dict[str, C02Config] = {
    "smoke": C02Config(steps=20, batch_size=32, probe_every=10, probe_examples=100, identity_batch=16),
    "default": C02Config(),
    "paper": C02Config(steps=50000, probe_every=500, probe_examples=1000),  # Ioffe Fig. 1: 50k steps, batch 60
}


def identity_recovery(*, batch: int, seed: int) -> dict:
    """Trial (a): relative error of BN with γ = √(σ²_B + ε), β = μ_B, for (N, C) and (N, C, H, W) inputs."""
    gen = torch.Generator().manual_seed(seed)
    errors: dict[str, float] = {}
    for dtype in (torch.float64, torch.float32):
        for shape in ((batch, 8), (batch, 4, 3, 3)):
            channels = shape[1]
            spread = (10.0 ** torch.linspace(-3, 3, channels, dtype=torch.float64))  # per-channel std
            offset = torch.randn(channels, generator=gen, dtype=torch.float64) * 10.0
            view = (1, channels) + (1,) * (len(shape) - 2)
            x64 = torch.randn(shape, generator=gen, dtype=torch.float64) * spread.view(view) + offset.view(view)
            x = x64.to(dtype)
            layer = BatchNorm(channels).to(dtype).train()
            dims = (0,) + tuple(range(2, len(shape)))
            var, mean = torch.var_mean(x, dim=dims, correction=0)  # (C,), (C,): batch statistics
            with torch.no_grad():
                layer.weight.copy_(torch.sqrt(var + layer.eps))
                layer.bias.copy_(mean)
                y = layer(x)
            key = f"{str(dtype).replace('torch.', '')}/{'x'.join(map(str, shape))}"
            errors[key] = float(((y - x).abs().max() / x.abs().max()).double())
    return {"relative_error": errors}


class _BandProbe:
    """Fraction of every sigmoid's inputs with |x| < band on fixed inputs, BN with those inputs' statistics."""

    name = "sigmoid_band"

    def __init__(self, every: int, inputs: Any, band: float) -> None:
        self.every, self.inputs, self.band = every, inputs, band

    def __call__(self, ctx: Any) -> dict:
        x = self.inputs.to(next(ctx.model.parameters()).device)
        fractions = sigmoid_input_fractions(ctx.model, x, band=self.band, bn_mode="train")
        return {"fractions": list(fractions.values())}


def affine_run(*, dataset: str, model: str, norm: str, affine: bool, steps: int, batch_size: int, lr: float,
               momentum: float, probe_every: int, probe_examples: int, band: float, seed: int) -> dict:
    """Trial (b, c): train `model` with BN with / without affine parameters; band fraction over training."""
    data = load_dataset(dataset)
    norm_kwargs = {} if affine else {"affine": False}
    config = TrainConfig(model=model, norm=norm, norm_kwargs=norm_kwargs, dataset=dataset, steps=steps,
                         batch_size=batch_size, lr=lr, momentum=momentum, eval_every=0, seed=seed, progress=False,
                         device="auto")
    probe = _BandProbe(probe_every, data.test_x[:probe_examples], band)
    result = train(config, dataset=data, probes=[probe])
    records = result.probes[probe.name]
    final = _BandProbe(1, data.test_x[:probe_examples], band)(_Ctx(result.model))
    steps_seen = [r["step"] for r in records] + [result.final["steps_done"]]
    curves = [r["fractions"] for r in records] + [final["fractions"]]
    return {
        "steps": steps_seen,
        "band_fraction": [sum(f) / len(f) for f in curves],  # mean over the sigmoid layers
        "band_fraction_per_layer_final": final["fractions"],
        "test_acc": float(result.final.get("test_acc", math.nan)),
        "train_acc": float(result.final.get("train_acc", math.nan)),
        "diverged": result.diverged_at_step is not None,
    }


@dataclass
class _Ctx:
    model: Any


def config_for(scale: str) -> C02Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    seed_list = seeds_for(seeds)
    trials = [Trial(CLAIM_ID, f"identity/seed={s}", f"{_MODULE}:identity_recovery",
                    {"batch": cfg.identity_batch, "seed": s}, cost=0.01) for s in seed_list]
    for label, norm, affine in _VARIANTS:
        for s in seed_list:
            trials.append(Trial(CLAIM_ID, f"train/{label}/seed={s}", f"{_MODULE}:affine_run",
                                {"dataset": cfg.dataset, "model": cfg.model, "norm": norm, "affine": affine,
                                 "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                 "momentum": cfg.momentum, "probe_every": cfg.probe_every,
                                 "probe_examples": cfg.probe_examples, "band": cfg.band, "seed": s},
                                cost=cfg.steps / 1000))
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), tuple(trials))


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    cfg = from_mapping(C02Config, plan.config)
    seeds = plan.seeds
    # (a) identity recovery
    worst: dict[str, float] = {}
    for s in seeds:
        for key, err in results[f"identity/seed={s}"]["relative_error"].items():
            worst[key] = max(worst.get(key, 0.0), err)
    err64 = max((v for k, v in worst.items() if k.startswith("float64")), default=math.nan)
    err32 = max((v for k, v in worst.items() if k.startswith("float32")), default=math.nan)
    v_identity = "supported" if err64 <= TOL_FLOAT64 and err32 <= TOL_FLOAT32 else "refuted"

    runs = {label: [results[f"train/{label}/seed={s}"] for s in seeds] for label, _, _ in _VARIANTS}
    with_ab, without_ab = runs["BN with γ, β"], runs["BN without γ, β"]
    d_band = [b["band_fraction"][-1] - a["band_fraction"][-1] for a, b in zip(with_ab, without_ab)]
    band_m, band_lo, band_hi = mean_ci(d_band)
    v_band = verdict_from_ci(band_lo, band_hi, 0.0)
    d_acc = [a["test_acc"] - b["test_acc"] for a, b in zip(with_ab, without_ab)]
    acc_m, acc_lo, acc_hi = mean_ci(d_acc)
    v_acc = verdict_from_ci(acc_lo, acc_hi, 0.0)
    verdict = combine_verdicts([v_identity, v_band, v_acc])

    series = []
    finals = {}
    for label, _, _ in _VARIANTS:
        recs = runs[label]
        steps = recs[0]["steps"]
        curve = [sum(r["band_fraction"][i] for r in recs) / len(recs) for i in range(len(steps))]
        series.append({"label": label, "x": steps, "y": curve})
        finals[label] = {"band_fraction": mean_ci([r["band_fraction"][-1] for r in recs]),
                         "test_acc": mean_ci([r["test_acc"] for r in recs]),
                         "train_acc": mean_ci([r["train_acc"] for r in recs]),
                         "diverged": sum(r["diverged"] for r in recs)}
    acc_groups = [{"label": label, "values": [finals[label]["test_acc"][0]],
                   "lo": [_nan(finals[label]["test_acc"][1])], "hi": [_nan(finals[label]["test_acc"][2])]}
                  for label, _, _ in _VARIANTS]
    gaussian_band = math.erf(cfg.band / math.sqrt(2))  # P(|z| < band), z ~ N(0, 1)
    summary = (f"(a) identity recovery: relative error {err64:.1e} (float64), {err32:.1e} (float32) → {v_identity}. "
               f"(b) sigmoid inputs in |x| < {cfg.band:g} at the end: "
               f"{finals['BN without γ, β']['band_fraction'][0]:.3f} without γ, β vs "
               f"{finals['BN with γ, β']['band_fraction'][0]:.3f} with (N(0,1): {gaussian_band:.3f}) → {v_band}. "
               f"(c) test accuracy with − without γ, β: {acc_m:+.4f} → {v_acc}.")
    caveats = [
        "The band fraction is measured with the statistics of a fixed held-out batch (BN in training mode), so it "
        "shows where the learned γ, β put the sigmoid inputs, not the running-statistics inference path.",
    ]
    if cfg.steps < 10000:
        caveats.append(f"{cfg.steps} SGD steps instead of Ioffe's 50k: γ and β may not have moved far from 1 and 0 "
                       "yet, so the difference between the two BN nets is likely smaller than at convergence.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=(f"(a) identity error ≤ {TOL_FLOAT64:g} (float64) and ≤ {TOL_FLOAT32:g} (float32) → supported, else "
              "refuted; (b) 95% CI of band fraction (no affine − affine) at the end > 0 → supported, < 0 → refuted; "
              "(c) 95% CI of test accuracy (affine − no affine) > 0 → supported, < 0 → refuted; otherwise "
              "inconclusive; overall = combine_verdicts(a, b, c)."),
        summary=summary,
        method=(f"{cfg.model} (3×100 sigmoid, BN before the sigmoid) on {cfg.dataset}, SGD lr {cfg.lr}, batch "
                f"{cfg.batch_size}, {cfg.steps} steps, {len(seeds)} seeds; band fraction on {cfg.probe_examples} "
                f"test examples every {cfg.probe_every} steps."),
        key_number=KeyNumber(f"sigmoid inputs in |x|<{cfg.band:g}: no affine − affine", band_m, band_lo, band_hi,
                             "fraction"),
        metrics={"identity_relative_error": worst, "identity_verdict": v_identity, "band_diff": d_band,
                 "band_verdict": v_band, "acc_diff": d_acc, "acc_diff_ci": [acc_m, acc_lo, acc_hi],
                 "acc_verdict": v_acc, "finals": finals, "gaussian_band_fraction": gaussian_band},
        figures=[
            Figure("band_fraction", "lines", "Sigmoid inputs in the near-linear band over training",
                   f"Fraction of sigmoid inputs with |x| < {cfg.band:g} (mean over the 3 hidden layers and "
                   f"{len(seeds)} seeds) on {cfg.probe_examples} held-out examples. N(0,1) inputs give "
                   f"{gaussian_band:.3f}.",
                   {"panels": [{"title": "near-linear fraction", "xlabel": "step", "ylabel": "fraction |x| < 1",
                                "series": series}]}),
            Figure("accuracy", "bars", "Final test accuracy",
                   f"Mean and 95% CI over {len(seeds)} seeds after {cfg.steps} steps.",
                   {"panels": [{"title": "test accuracy", "ylabel": "accuracy", "categories": [cfg.model],
                                "groups": acc_groups}]}),
        ],
        caveats=caveats)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v
