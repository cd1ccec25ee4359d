"""C14: without BN the loss landscape is rugged; with BN it is flat and smooth (the visualisation the explanation
offers).

References: Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets" (filter-normalised random directions,
Sec. 4); Santurkar et al. 2018, Sec. 3 (BN makes the landscape smoother).

Protocol (sizes in `CONFIGS`): a BN net and a no-BN net of the same architecture (bnlab's narrow VGG) trained on
the same data with the same optimiser, learning rate, steps and seed. Around each trained net: a 2-D landscape on
two seeded filter-normalised Gaussian directions (1-D parameters get 0, Li's ``biasbn``) over
``[-radius, radius]^2`` and a 1-D landscape along a third direction, both of the training loss on a fixed subset of
the training data, in BN mode ``train`` (batch statistics of that subset) and ``eval`` (the trained running
statistics). A no-BN net has no BN layer (and no Dropout), so its two modes are the same function: it is evaluated
once and that surface serves both modes.

Roughness (`bnlab.landscape.roughness`): the mean |second difference| / h^2 along both grid axes over the interior
grid points within ``rough_radius`` of the centre -- loss (nats) per squared direction unit. Scale invariance: the
filter-normalised coordinates move every filter by its own norm, so the BN net's surface does not depend on how
large its (scale-invariant) filters grew, and both nets are measured in the same units of loss on the same data.

Rule (written before the run): for each BN mode m in (train, eval), the per-seed effect is
``log(R(no BN) / R(BN, m))``, paired by seed; `verdict_from_ci` of its 95% CI against 0 (supported: the no-BN
landscape is rougher). Overall: `combine_verdicts` over the modes. Key number: the train-mode effect (the papers'
choice). 1-D roughness and the fraction of non-convex stencils are reported beside it, not voted.

Extending (e.g. sharpness from the Hessian): add an entry to `EFFECTS` -- a function (results per seed) -> list of
per-seed values, each positive when the no-BN net is the rougher/sharper -- and, to let it vote, its name to
`VOTING`; trials may return extra keys for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
from bnlab.experiments.curvature import curvature_trials, summarise_curvature
from bnlab.landscape import random_directions, random_line, random_plane, roughness
from bnlab.landscape.directions import model_origin
from bnlab.landscape.roughness import negative_curvature_fraction
from bnlab.models import build_model
from bnlab.state import batchnorm_layers
from bnlab.sweeps.trial import Trial
from bnlab.train import TrainConfig, train

CLAIM_ID = "C14"
TITLE = "Without BN the loss landscape is rugged; with BN it is flat and smooth"
_MODULE = "bnlab.experiments.c14_landscape"
MODES: tuple[str, ...] = ("train", "eval")
NORMS: dict[str, str] = {"BN": "bn", "no BN": "none"}


@dataclass(frozen=True)
class C14Config:
    dataset: str = "digits"
    model: str = "vgg"
    model_config: str = "narrow"
    width: float = 1.0
    steps: int = 300  # training steps (same budget for both nets)
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    eval_samples: int = 256  # fixed prefix of the training set the landscapes are measured on
    grid: int = 21  # 2-D grid is grid x grid (odd: contains the centre)
    line: int = 41  # 1-D points (odd)
    radius: float = 1.0  # landscape range, in filter-normalised units
    rough_radius: float = 1.0  # roughness over interior points within this distance of the centre
    direction_seed_offset: int = 1000  # directions use seed + offset (independent of the init stream)


CONFIGS: dict[str, C14Config] = {
    "smoke": C14Config(width=0.5, steps=15, batch_size=32, eval_samples=128, grid=7, line=9),
    "default": C14Config(),
    "paper": C14Config(dataset="cifar10", model_config="vgg11", steps=20000, batch_size=128, lr=0.05,
                       eval_samples=5000, grid=51, line=101),
}


def config_for(scale: str) -> C14Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


def landscape_run(*, dataset: str, model: str, model_config: str, width: float, norm: str, steps: int,
                  batch_size: int, lr: float, momentum: float, eval_samples: int, grid: int, line: int,
                  radius: float, rough_radius: float, direction_seed: int, seed: int) -> dict[str, Any]:
    """Trial: train one net, then its 2-D and 1-D landscapes in each BN mode; returns grids and roughness."""
    data = load_dataset(dataset)
    config = TrainConfig(model=model, norm=norm, dataset=dataset, model_kwargs={"config": model_config,
                                                                                "width": width},
                         steps=steps, batch_size=batch_size, lr=lr, momentum=momentum, eval_every=0,
                         eval_train_size=min(eval_samples, len(data.train_x)), seed=seed, progress=False,
                         device="cpu", trackers=())
    torch.manual_seed(seed)
    net = build_model(model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes,
                      config=model_config, width=width)
    result = train(config, model=net, dataset=data)
    net = result.model
    batch = (data.train_x[:eval_samples], data.train_y[:eval_samples])
    loss_fn = nn.CrossEntropyLoss()
    origin = model_origin(net)
    dirs = random_directions(origin, 3, direction_seed)  # two for the plane, one for the line
    has_bn = bool(batchnorm_layers(net))
    out: dict[str, Any] = {"norm": norm, "diverged": result.diverged_at_step is not None,
                           "final_train_loss": float(result.final.get("train_eval_loss", math.nan)),
                           "final_test_acc": float(result.final.get("test_acc", math.nan)),
                           "modes": {}}
    for mode in MODES if has_bn else MODES[:1]:
        plane = random_plane(net, loss_fn, batch, radius=radius, steps=grid, bn_mode=mode, directions=dirs[:2],
                             seed=direction_seed)
        curve = random_line(net, loss_fn, batch, radius=radius, steps=line, bn_mode=mode, direction=dirs[2],
                            seed=direction_seed)
        out["modes"][mode] = {
            "x": plane.x.tolist(), "y": plane.y.tolist(), "loss": plane.loss.tolist(), "acc": plane.acc.tolist(),
            "t": curve.t.tolist(), "line_loss": curve.loss.tolist(),
            "centre_loss": float(plane.loss[grid // 2, grid // 2]),
            "roughness_2d": roughness(plane.loss, plane.x, plane.y, rough_radius),
            "roughness_1d": roughness(curve.loss, curve.t, None, rough_radius),
            "negative_curvature": negative_curvature_fraction(plane.loss, plane.x, plane.y, rough_radius),
        }
    if not has_bn:  # no BN layer and no Dropout: eval mode is the same function
        out["modes"]["eval"] = out["modes"]["train"]
    return out


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    seed_list = seeds_for(seeds)
    trials = []
    for label, norm in NORMS.items():
        for s in seed_list:
            trials.append(Trial(CLAIM_ID, f"{label}/seed={s}", f"{_MODULE}:landscape_run",
                                {"dataset": cfg.dataset, "model": cfg.model, "model_config": cfg.model_config,
                                 "width": cfg.width, "norm": norm, "steps": cfg.steps, "batch_size": cfg.batch_size,
                                 "lr": cfg.lr, "momentum": cfg.momentum, "eval_samples": cfg.eval_samples,
                                 "grid": cfg.grid, "line": cfg.line, "radius": cfg.radius,
                                 "rough_radius": cfg.rough_radius,
                                 "direction_seed": s + cfg.direction_seed_offset, "seed": s},
                                cost=(cfg.steps / 300 + cfg.grid**2 / 441) * (2.0 if norm == "bn" else 1.0)))
    # Hessian sharpness and spectral densities (bnlab.experiments.curvature; the same trials as C06's)

    trials += curvature_trials(CLAIM_ID, scale, seed_list)
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), tuple(trials))


def _log_ratio(a: float, b: float) -> float:
    return math.log(a / b) if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan


def _effect(key: str, mode: str) -> Callable[[Sequence[dict], Sequence[dict]], list[float]]:
    def per_seed(bn: Sequence[dict], plain: Sequence[dict]) -> list[float]:
        return [_log_ratio(p["modes"][mode][key], b["modes"][mode][key]) for b, p in zip(bn, plain)]
    return per_seed


# name -> (per-seed values from (BN runs, no-BN runs), description); positive = no BN rougher
EFFECTS: dict[str, tuple[Callable[[Sequence[dict], Sequence[dict]], list[float]], str]] = {
    "roughness_2d_train": (_effect("roughness_2d", "train"), "log R2d(no BN) / R2d(BN), BN train mode"),
    "roughness_2d_eval": (_effect("roughness_2d", "eval"), "log R2d(no BN) / R2d(BN), BN eval mode"),
    "roughness_1d_train": (_effect("roughness_1d", "train"), "log R1d(no BN) / R1d(BN), BN train mode"),
    "roughness_1d_eval": (_effect("roughness_1d", "eval"), "log R1d(no BN) / R1d(BN), BN eval mode"),
}
VOTING: list[str] = ["roughness_2d_train", "roughness_2d_eval"]


def _ci(values: list[float]) -> tuple[float, float | None, float | None]:
    vals = [v for v in values if math.isfinite(v)]
    return mean_ci(vals) if vals else (math.nan, None, None)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    cfg = from_mapping(C14Config, plan.config)
    seeds = plan.seeds
    runs = {label: [results[f"{label}/seed={s}"] for s in seeds] for label in NORMS}
    effects: dict[str, dict[str, Any]] = {}
    for name, (fn, description) in EFFECTS.items():
        values = fn(runs["BN"], runs["no BN"])
        m, lo, hi = _ci(values)
        effects[name] = {"description": description, "values": values, "mean": m, "ci": [lo, hi],
                         "verdict": verdict_from_ci(lo, hi, 0.0)}
    verdict = combine_verdicts([effects[k]["verdict"] for k in VOTING])
    per_net: dict[str, Any] = {}
    for label in NORMS:
        per_net[label] = {"diverged": sum(bool(r["diverged"]) for r in runs[label]),
                          # no CPU time here: results.json "claims" must be bit-identical across reruns
                          "final_test_acc": _ci([r["final_test_acc"] for r in runs[label]])[0]}
        for mode in MODES:
            for key in ("roughness_2d", "roughness_1d", "negative_curvature", "centre_loss"):
                per_net[label][f"{key}_{mode}"] = _ci([r["modes"][mode][key] for r in runs[label]])
    key = effects["roughness_2d_train"]
    first = {label: runs[label][0]["modes"] for label in NORMS}
    panels_2d = [{"title": f"{label}, BN {mode} mode" if label == "BN" else label, "x": first[label][mode]["x"],
                  "y": first[label][mode]["y"], "z": first[label][mode]["loss"]}
                 for label, mode in (("BN", "train"), ("BN", "eval"), ("no BN", "train"))]
    line_panels = [{"title": f"BN {mode} mode", "xlabel": "filter-normalised step", "ylabel": "training loss",
                    "yscale": "log",
                    "series": [{"label": label, "x": first[label][mode]["t"], "y": first[label][mode]["line_loss"]}
                               for label in NORMS]} for mode in MODES]
    bar_panels = [{"title": f"2-D roughness, BN {mode} mode", "ylabel": "mean |Δ²L| / h² (nats)",
                   "categories": list(NORMS),
                   "groups": [{"label": "roughness", "values": [per_net[lab][f"roughness_2d_{mode}"][0]
                                                                for lab in NORMS],
                               "lo": [_nan(per_net[lab][f"roughness_2d_{mode}"][1]) for lab in NORMS],
                               "hi": [_nan(per_net[lab][f"roughness_2d_{mode}"][2]) for lab in NORMS]}]}
                  for mode in MODES]
    caveats = [
        f"Small scale: narrow VGG on {cfg.dataset}, {cfg.steps} steps, landscapes on {cfg.eval_samples} training "
        f"examples over a {cfg.grid}×{cfg.grid} grid; Li et al. and Santurkar et al. used VGG/ResNets on CIFAR-10 "
        "(the `paper` scale).",
        "Roughness as defined here grows with sharpness (a steep bowl) as well as with bumps and cliffs; the "
        "fraction of non-convex stencils (metrics) separates ruggedness from curvature.",
        "Both nets get the same learning rate and steps; a no-BN net trained with a smaller rate may sit in a "
        "different region of its landscape.",
        "Random 2-D slices show a tiny part of a high-dimensional landscape; seeds vary both the init and the "
        "directions.",
    ]
    untrained = [lab for lab in NORMS if not per_net[lab]["final_test_acc"] >= 0.5]
    if untrained:
        caveats.append(f"{' and '.join(untrained)} reached under 50% test accuracy: an untrained net sits on a "
                       "plateau that is flat for reasons unrelated to BN, so the comparison says little at this "
                       "budget.")
    if any(per_net[lab]["diverged"] for lab in NORMS):
        caveats.append("Some training runs diverged (per_net.diverged); their landscapes are around a diverged "
                       "point.")
    ev = effects["roughness_2d_eval"]
    summary = (f"2-D roughness (mean |Δ²L|/h² within r = {cfg.rough_radius}): BN train mode "
               f"{per_net['BN']['roughness_2d_train'][0]:.3g}, BN eval mode "
               f"{per_net['BN']['roughness_2d_eval'][0]:.3g}, no BN {per_net['no BN']['roughness_2d_train'][0]:.3g}; "
               f"log ratio no BN / BN {key['mean']:+.2f} (train mode) → {key['verdict']}, "
               f"{ev['mean']:+.2f} (eval mode) → {ev['verdict']}.")
    # sharpness beside the roughness: reported (with the votes its own rule would give), not voted here

    sharp = summarise_curvature(CLAIM_ID, plan.scale, seeds, results)
    summary += f" {sharp.summary} (Hessian sharpness: reported beside the roughness, not voted.)"
    caveats += sharp.caveats + [
        "The Hessian sharpness is measured on the C05/C06 VGG runs (bnlab.experiments.curvature: same "
        "architecture and data, that claim's learning rate and no momentum), not on these landscape runs."]
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=("Per BN mode m in (train, eval): per-seed effect log(R(no BN) / R(BN, m)) with R = mean |second "
              "difference| / h² of the 2-D training-loss landscape over interior grid points within r of the "
              "centre (filter-normalised directions, biasbn = 0); verdict_from_ci of its 95% CI vs 0 (supported = "
              "no BN rougher); overall = combine_verdicts over the two modes."),
        summary=summary,
        method=(f"{cfg.model} ({cfg.model_config}, width {cfg.width}) with and without BN on {cfg.dataset}, SGD lr "
                f"{cfg.lr}, momentum {cfg.momentum}, batch {cfg.batch_size}, {cfg.steps} steps, {len(seeds)} seeds; "
                f"landscapes on {cfg.eval_samples} training examples, {cfg.grid}×{cfg.grid} grid and {cfg.line}-"
                f"point line over ±{cfg.radius} (filter-normalised Gaussian directions, 1-D parameters 0), BN in "
                "train and eval mode."),
        key_number=KeyNumber("log roughness ratio no BN / BN (train mode)", key["mean"], key["ci"][0], key["ci"][1],
                             "log ratio"),
        metrics={"effects": effects, "per_net": per_net, "voting": list(VOTING),
                 "sharpness": {"rule": sharp.rule, "verdicts": sharp.verdicts, **sharp.metrics}},
        figures=[
            Figure("landscape_2d", "contours", "2-D loss landscapes (seed 0), shared levels and colour scale",
                   "Training loss around each trained net on two filter-normalised random directions; identical "
                   "axes, levels and log colour scale in every panel.",
                   {"panels": panels_2d, "levels": 30, "zscale": "log", "same_scale": True}),
            Figure("landscape_3d", "surface", "The same landscapes as 3-D surfaces",
                   "Seed 0; one z range and colour scale for all panels.",
                   {"panels": panels_2d}),
            Figure("landscape_1d", "lines", "1-D loss landscapes (seed 0)",
                   "Training loss along a third filter-normalised random direction.",
                   {"panels": line_panels}),
            Figure("roughness", "bars", "Roughness of the 2-D landscapes",
                   f"Mean |Δ²L|/h² within r = {cfg.rough_radius}; mean and 95% CI over {len(seeds)} seeds.",
                   {"panels": bar_panels}),
            *sharp.figures,
        ],
        caveats=caveats)
