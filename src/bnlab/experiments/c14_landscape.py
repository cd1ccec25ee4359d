"""C14 — "Without BN the landscape is rugged (cliffs, ravines); with BN it is flat and smooth" (Li et al. 2018,
Sec. 4; Santurkar et al. 2018, Sec. 3). The visualisation the explanation offers.

What is measured (`bnlab.trials.surface_roughness`). A BN net and a no-BN net of the same architecture (bnlab's narrow
VGG on sklearn digits; VGG-11 on CIFAR-10 at paper scale) trained with the same data, optimiser, learning rate,
steps and seed. Around each trained net, the 2-D training-loss landscape on two filter-normalised random directions
and a 1-D landscape along a third, on a fixed training subset, with BN in mode ``train`` (batch statistics: the
function SGD optimises) and ``eval`` (running statistics). Roughness R = mean |second difference| / h² over the
interior grid points within ``rough_radius`` of the centre (nats per squared filter-normalised unit); the
filter-normalised coordinates make the BN net's surface independent of how large its scale-invariant filters grew.
On the curvature runs shared with C06 (`bnlab.experiments.curvature`): the Hessian λ_max, trace and spectral
density at the end of training.

Primary endpoint: per seed, log(R(no BN) / R(BN, train mode)) of the 2-D landscapes; the 95% t-interval wholly
above 0 -> supported (no BN rougher), wholly below -> refuted, else inconclusive.
Secondary, never voting: the same in eval mode, reported as a finding in its own right (PyHessian and the
loss-landscape tool evaluate BN this way); 1-D roughness per mode; the fraction of non-convex stencils; the
Hessian λ_max, λ_max·‖W‖² and trace at the end per mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.experiments import base, stats
from bnlab.experiments.curvature import curvature_caveats, curvature_trials, sharpness_effects, sharpness_figures
from bnlab.experiments.probed_training import family_seeds
from bnlab.state import BN_MODES
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C14"
TRIALS = "bnlab.trials.surface_roughness"
MODES = BN_MODES  # the BN modes every curvature / landscape number is measured in
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




PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="log(2-D landscape roughness without BN / with BN), BN mode train",
        measure="per seed: log R(no BN) − log R(BN) of the 2-D training-loss landscapes around the trained nets "
                "(filter-normalised directions, R = mean |Δ²L|/h² within r of the centre), BN with batch statistics",
        unit="log ratio", test="t", threshold=0.0,
        threshold_source="0 = equally rough; the claim predicts a rougher landscape without BN",
        settings=("train",)),
    cost="costly",
    secondary=("the same in BN eval mode (running statistics): a finding reported with its CI",
               "1-D roughness per BN mode", "fraction of non-convex stencils, no BN − BN",
               "Hessian λ_max, λ_max·‖W‖² and trace at the end of training, per BN mode (log ratio no BN / BN)"),
    runs="narrow VGG with and without BN on sklearn digits, SGD lr 0.05, momentum 0.9, 300 steps, 5 seeds; "
         "21 × 21 grid and 41-point line over ±1 filter-normalised units on 256 training examples",
    paper="Li et al. draw VGG/ResNet landscapes on CIFAR-10 (their BN runs in eval mode); Santurkar's Sec. 3 "
          "measures along the gradient. The paper scale trains VGG-11 on CIFAR-10 (needs --data-dir) for 20k steps.",
    why="The old rule required both BN modes to agree and buried a consistent eval-mode reversal as "
        "'inconclusive'. Train mode is the function SGD optimises and Santurkar's setting; the eval-mode result is a "
        "finding of its own, reported with its CI.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.69, base.FACTOR_TWO)

RULE = ("Per seed: effect = log R(no BN) − log R(BN) of the 2-D landscapes, BN in train mode (batch statistics). "
        "The 95% t-interval of the mean effect wholly above 0 -> supported, wholly below -> refuted, otherwise "
        "inconclusive. Eval mode, 1-D roughness, non-convexity and the Hessian are reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = base.config_for(CONFIGS, scale)
    seed_list = family_seeds("vgg", scale, seeds, first_seed)  # the curvature runs' seeds: shared with C06
    trials = [Trial(CLAIM_ID, f"{label}/seed={s}", f"{TRIALS}:roughness_run",
                    {"dataset": cfg.dataset, "model": cfg.model, "model_config": cfg.model_config,
                     "width": cfg.width, "norm": norm, "steps": cfg.steps, "batch_size": cfg.batch_size,
                     "lr": cfg.lr, "momentum": cfg.momentum, "eval_samples": cfg.eval_samples, "grid": cfg.grid,
                     "line": cfg.line, "radius": cfg.radius, "rough_radius": cfg.rough_radius,
                     "direction_seed": s + cfg.direction_seed_offset, "seed": s},
                    cost=(cfg.steps / 300 + cfg.grid**2 / 441) * (2.0 if norm == "bn" else 1.0))
              for label, norm in NORMS.items() for s in seed_list]
    trials += curvature_trials(CLAIM_ID, scale, seed_list)
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def _runs(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, list[dict]]:
    return {label: [results[f"{label}/seed={s}"] for s in plan.seeds] for label in NORMS}


def log_roughness_ratios(bn: Sequence[dict], plain: Sequence[dict], key: str, mode: str) -> list[float]:
    """Per seed: log(no BN / BN) of `key` in BN mode `mode` (positive: no BN rougher); NaN where either is not
    a positive finite number (a diverged run)."""
    return [stats.log_ratio(p["modes"][mode][key], b["modes"][mode][key]) for b, p in zip(bn, plain)]


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    runs = _runs(plan, results)
    bn, plain = runs["BN"], runs["no BN"]
    secondary: dict[str, dict[str, Any]] = {
        "log(2-D roughness no BN / BN), BN mode eval": {
            "values": log_roughness_ratios(bn, plain, "roughness_2d", "eval"), "unit": "log ratio",
            "note": "finding: the landscape with BN's running statistics (how PyHessian and loss-landscape "
                    "evaluate BN nets); negative = BN rougher in eval mode"},
    }
    for mode in MODES:
        secondary[f"log(1-D roughness no BN / BN), BN mode {mode}"] = {
            "values": log_roughness_ratios(bn, plain, "roughness_1d", mode), "unit": "log ratio"}
        secondary[f"non-convex stencil fraction, no BN − BN, BN mode {mode}"] = {
            "values": stats.paired_differences([p["modes"][mode]["negative_curvature"] for p in plain],
                                               [b["modes"][mode]["negative_curvature"] for b in bn]),
            "unit": "fraction"}
    for name, values in sharpness_effects(results, plan.seeds, at_end=True).items():
        secondary[f"{name}, end of training"] = {"values": values, "unit": "log ratio"}
    per_net = {label: {"diverged": sum(bool(r["diverged"]) for r in rs),
                       "final_test_acc": stats.mean_ci([r["final_test_acc"] for r in rs]).effect,
                       **{f"{key}_{mode}": stats.mean_ci([r["modes"][mode][key] for r in rs]).to_dict()
                          for mode in MODES for key in ("roughness_2d", "roughness_1d", "negative_curvature")}}
               for label, rs in runs.items()}
    return {"primary": {"train": log_roughness_ratios(bn, plain, "roughness_2d", "train")},
            "secondary": secondary, "per_net": per_net}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    cfg = plan.config
    runs = _runs(plan, results)
    first = {label: runs[label][0]["modes"] for label in NORMS}
    panels_2d = [{"title": f"{label}, BN {mode} mode" if label == "BN" else label, "x": first[label][mode]["x"],
                  "y": first[label][mode]["y"], "z": first[label][mode]["loss"]}
                 for label, mode in (("BN", "train"), ("BN", "eval"), ("no BN", "train"))]
    line_panels = [{"title": f"BN {mode} mode", "xlabel": "filter-normalised step", "ylabel": "training loss",
                    "yscale": "log",
                    "series": [{"label": label, "x": first[label][mode]["t"], "y": first[label][mode]["line_loss"]}
                               for label in NORMS]} for mode in MODES]
    pn = metrics["per_net"]
    bar_panels = [{"title": f"2-D roughness, BN {mode} mode", "ylabel": "mean |Δ²L| / h² (nats)",
                   "categories": list(NORMS),
                   "groups": [{"label": "roughness",
                               "values": [pn[lab][f"roughness_2d_{mode}"]["effect"] for lab in NORMS],
                               "lo": [pn[lab][f"roughness_2d_{mode}"]["ci_low"] for lab in NORMS],
                               "hi": [pn[lab][f"roughness_2d_{mode}"]["ci_high"] for lab in NORMS]}]}
                  for mode in MODES]
    return [
        base.Figure("landscape_2d", "contours", "2-D loss landscapes (first seed), shared levels and colour scale",
               "Training loss around each trained net on two filter-normalised random directions; identical axes, "
               "levels and log colour scale in every panel.",
               {"panels": panels_2d, "levels": 30, "zscale": "log", "same_scale": True}),
        base.Figure("landscape_3d", "surface", "The same landscapes as 3-D surfaces",
               "First seed; one z range and colour scale for all panels.", {"panels": panels_2d}),
        base.Figure("landscape_1d", "lines", "1-D loss landscapes (first seed)",
               "Training loss along a third filter-normalised random direction.", {"panels": line_panels}),
        base.Figure("roughness", "bars", "Roughness of the 2-D landscapes",
               f"Mean |Δ²L|/h² within r = {cfg['rough_radius']}; mean and 95% CI over {len(plan.seeds)} seeds.",
               {"panels": bar_panels}),
        *sharpness_figures(results, plan.seeds, at_end=True),
    ]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    cfg = plan.config
    pn = metrics["per_net"]
    ev = decision.secondary[0]
    lam = next((s for s in decision.secondary if s.name.startswith("log(λ_max no BN / BN), BN mode train")), None)
    summary = (f"2-D roughness within r = {cfg['rough_radius']}: BN (train mode) "
               f"{pn['BN']['roughness_2d_train']['effect']:.3g}, BN (eval mode) "
               f"{pn['BN']['roughness_2d_eval']['effect']:.3g}, no BN {pn['no BN']['roughness_2d_train']['effect']:.3g}"
               f". Primary, log(no BN / BN) in train mode: {base.brief(decision.primary[0])}. Finding, the same "
               f"with BN's running statistics (eval mode): {base.brief(ev)}"
               + (f"; Hessian λ_max at the end, log(no BN / BN), train mode: {base.brief(lam)}" if lam else "")
               + f". Verdict: {decision.verdict}.")
    method = (f"{cfg['model']} ({cfg['model_config']}, width {cfg['width']}) with and without BN on {cfg['dataset']}, "
              f"SGD lr {cfg['lr']}, momentum {cfg['momentum']}, batch {cfg['batch_size']}, {cfg['steps']} steps, "
              f"{len(plan.seeds)} seeds; landscapes on {cfg['eval_samples']} training examples, {cfg['grid']}×"
              f"{cfg['grid']} grid and {cfg['line']}-point line over ±{cfg['radius']} (filter-normalised Gaussian "
              "directions, 1-D parameters 0), BN in train and eval mode; Hessian on the C06 curvature runs.")
    caveats = [
        "Roughness grows with sharpness (a steep bowl) as well as with bumps and cliffs; the fraction of "
        "non-convex stencils (secondary) separates ruggedness from curvature.",
        "Both nets get the same learning rate and steps; a no-BN net trained with a smaller rate may sit in a "
        "different region of its landscape.",
        "Random 2-D slices show a tiny part of a high-dimensional landscape; seeds vary both the init and the "
        "directions.",
        "The Hessian is measured on the C05/C06 VGG runs (same architecture and data, that claim's learning rate), "
        "not on these landscape runs.", *curvature_caveats(plan.scale)]
    untrained = [lab for lab in NORMS if not (pn[lab]["final_test_acc"] or 0) >= 0.5]
    if untrained:
        caveats.append(f"{' and '.join(untrained)} reached under 50% test accuracy: an untrained net sits on a "
                       "plateau that is flat for reasons unrelated to BN.")
    if any(pn[lab]["diverged"] for lab in NORMS):
        caveats.append("Some training runs diverged; their seeds have no roughness ratio.")
    return base.Description(summary, method, caveats)
