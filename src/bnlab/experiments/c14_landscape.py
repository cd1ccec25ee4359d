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

Ruggedness U = sqrt(SS_res / SS_tot) of the least-squares quadratic fit to the 2-D surface within the same radius
(`bnlab.landscape.roughness.quadratic_residual`): the part of the surface a smooth bowl does not explain — cliffs,
ravines and bumps, whatever the bowl's sharpness (which R measures).

Primary endpoint, four votes: in each BN mode (``train``: batch statistics, the function SGD optimises and
Santurkar's setting; ``eval``: running statistics, how the visualisation tools the explanation offers — Li et al.'s
loss-landscape code, PyHessian — evaluate a BN net), per seed
* roughness: log(R(no BN) / R(BN)) of the 2-D landscapes ("flat with BN");
* ruggedness: U(no BN) − U(BN) ("rugged without BN, smooth with BN").
A run that diverged, or a landscape with no finite number, is the worst outcome for its net, never a missing seed
(`bnlab.experiments.outcomes`): its log roughness ratio is ±inf (only the no-BN net failed -> +inf, only BN -> −inf,
both -> a tie), its ruggedness U = 1, the top of the bounded scale (no part of the surface explained by a bowl).
Roughness (log ratios): the exact Wilcoxon signed-rank test, two-sided p < 0.05 with the Hodges–Lehmann effect above
0 -> supported, below -> refuted, else inconclusive; ruggedness (bounded): the 95% t-interval wholly above 0 ->
supported, wholly below -> refuted, else inconclusive. The four votes combined by `stats.combine` (supported or
refuted only when all four agree; both -> mixed).
Secondary, never voting: 1-D roughness per mode; the fraction of non-convex stencils; the Hessian λ_max,
λ_max·‖W‖² and trace at the end per mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.experiments import base, outcomes, stats
from bnlab.experiments.curvature import curvature_caveats, curvature_trials, sharpness_effects, sharpness_figures
from bnlab.experiments.probed_training import family_seeds
from bnlab.state import BN_MODES
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C14"
TRIALS = "bnlab.trials.surface_roughness"
MODES = BN_MODES  # the BN modes every curvature / landscape number is measured in
NORMS: dict[str, str] = {"BN": "bn", "no BN": "none"}
# the ruggedness a diverged run counts as: the top of the bounded scale, U = 1 (no part of the surface is a bowl)
WORST_RUGGEDNESS = 1.0


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




SETTINGS: tuple[str, ...] = ("roughness:train", "roughness:eval", "ruggedness:train", "ruggedness:eval")

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="no BN rougher and more rugged than BN, per BN mode",
        measure="per seed and BN mode (train: batch statistics; eval: running statistics): log R(no BN) − log R(BN) "
                "of the 2-D training-loss landscapes around the trained nets (filter-normalised directions, R = mean "
                "|Δ²L|/h² within r of the centre), and U(no BN) − U(BN), U = sqrt(SS_res / SS_tot) of the "
                "least-squares quadratic fit within r (the part a smooth bowl does not explain)",
        unit="log ratio; share of the surface's spread", test="t", threshold=0.0,
        threshold_source="0 = as rough / as rugged with BN as without; the claim predicts more without BN in both",
        settings=SETTINGS, per_setting={s: ("signed_rank", 0.0) for s in SETTINGS if s.startswith("roughness")},
        units={s: "log ratio" if s.startswith("roughness") else "share of the surface's spread" for s in SETTINGS}),
    cost="costly",
    secondary=("1-D roughness per BN mode", "fraction of non-convex stencils, no BN − BN, per BN mode",
               "Hessian λ_max, λ_max·‖W‖² and trace at the end of training, per BN mode (log ratio no BN / BN)"),
    runs="narrow VGG with and without BN on sklearn digits, SGD lr 0.05, momentum 0.9, 300 steps, 5 seeds; "
         "21 × 21 grid and 41-point line over ±1 filter-normalised units on 256 training examples",
    paper="Li et al. draw VGG/ResNet landscapes on CIFAR-10 (their BN runs in eval mode); Santurkar's Sec. 3 "
          "measures along the gradient. The paper scale trains VGG-11 on CIFAR-10 (needs --data-dir) for 20k steps.",
    why="Both BN modes vote. Train mode is the function SGD optimises; eval mode is how the visualisation tools the "
        "explanation offers (Li et al.'s landscapes, PyHessian) draw a BN net, so the picture the claim rests on is "
        "an eval-mode picture. Letting train mode alone vote, after eval mode had refuted the claim, chose the "
        "setting by its outcome. Mean |curvature| (roughness) measures how sharp the surface is, not 'cliffs and "
        "ravines': a steep smooth bowl is rough by it. Ruggedness, the part of the surface a quadratic bowl does "
        "not explain, votes beside it.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(
    0.69, base.FACTOR_TWO + "; ruggedness: 0.1 of unexplained root-mean-square (U) between the arms",
    per_setting={"ruggedness:train": 0.1, "ruggedness:eval": 0.1})

RULE = ("Per seed and BN mode (train, eval): roughness effect = log R(no BN) − log R(BN) of the 2-D landscapes; "
        "ruggedness effect = U(no BN) − U(BN), U = sqrt(SS_res / SS_tot) of the quadratic fit within r. A run that "
        "diverged or a landscape with no finite number is the worst outcome for its net, never a missing seed: "
        "roughness ratio +inf if only no BN failed, −inf if only BN, a tie if both; ruggedness U = 1. Four votes: "
        "roughness by the exact Wilcoxon signed-rank test (two-sided p < 0.05 with the Hodges–Lehmann effect above "
        "0 -> supported, below 0 -> refuted), ruggedness by the 95% t-interval of the mean effect (wholly above 0 "
        "-> supported, wholly below -> refuted), otherwise inconclusive. "
        "The claim: supported only when all four are; refuted when one is and none supported; some supported and "
        "some refuted -> mixed; otherwise inconclusive. 1-D roughness, non-convexity and the Hessian are reported, "
        "never voted.")


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


def log_roughness_ratios(bn: Sequence[dict], plain: Sequence[dict], key: str, mode: str,
                         worst: bool = False) -> list[float]:
    """Per seed: log(no BN / BN) of `key` in BN mode `mode` (positive: no BN rougher). Where a run diverged or
    its number is not a positive finite one: NaN (the secondary results' treatment: left out), or with `worst` the
    worst outcome for the net that failed (`outcomes.paired_worst`: ±inf, a tie when both failed)."""
    values = [stats.log_ratio(p["modes"][mode][key], b["modes"][mode][key]) for b, p in zip(bn, plain)]
    if not worst:
        return values
    fails = {n: [outcomes.failed(r["diverged"], r["modes"][mode][key], positive=True) for r in rs]
             for n, rs in (("bn", bn), ("none", plain))}
    return outcomes.paired_worst_values(values, fails["bn"], fails["none"])


def ruggedness_differences(bn: Sequence[dict], plain: Sequence[dict], mode: str) -> list[float]:
    """Per seed: U(no BN) − U(BN) of the 2-D landscapes in BN mode `mode` (positive: no BN more rugged); a run
    that diverged or has no finite U scores `WORST_RUGGEDNESS` (`outcomes.scored`: the worst outcome for its net)."""
    def u(runs: Sequence[dict]) -> list[float]:
        return [outcomes.scored(r["modes"][mode]["ruggedness_2d"], r["diverged"], WORST_RUGGEDNESS) for r in runs]

    return stats.paired_differences(u(plain), u(bn))


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    runs = _runs(plan, results)
    bn, plain = runs["BN"], runs["no BN"]
    primary = {**{f"roughness:{mode}": log_roughness_ratios(bn, plain, "roughness_2d", mode, worst=True)
                  for mode in MODES},
               **{f"ruggedness:{mode}": ruggedness_differences(bn, plain, mode) for mode in MODES}}
    secondary: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        secondary[f"log(1-D roughness no BN / BN), BN mode {mode}"] = {
            "values": log_roughness_ratios(bn, plain, "roughness_1d", mode), "unit": "log ratio"}
        secondary[f"non-convex stencil fraction, no BN − BN, BN mode {mode}"] = {
            "values": stats.paired_differences([p["modes"][mode]["negative_curvature"] for p in plain],
                                               [b["modes"][mode]["negative_curvature"] for b in bn]),
            "unit": "fraction"}
    for name, values in sharpness_effects(results, plan.seeds, at_end=True).items():
        secondary[f"{name}, end of training"] = {"values": values, "unit": "log ratio"}
    keys = ("roughness_2d", "ruggedness_2d", "roughness_1d", "negative_curvature")
    per_net = {label: {"diverged": sum(bool(r["diverged"]) for r in rs),
                       "final_test_acc": stats.mean_ci([r["final_test_acc"] for r in rs]).effect,
                       **{f"{key}_{mode}": stats.mean_ci([r["modes"][mode][key] for r in rs]).to_dict()
                          for mode in MODES for key in keys}}
               for label, rs in runs.items()}
    return {"primary": primary, "secondary": secondary, "per_net": per_net}


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
    bar_panels = [{"title": f"2-D {name}, BN {mode} mode", "ylabel": ylabel, "categories": list(NORMS),
                   "groups": [{"label": name,
                               "values": [pn[lab][f"{key}_{mode}"]["effect"] for lab in NORMS],
                               "lo": [pn[lab][f"{key}_{mode}"]["ci_low"] for lab in NORMS],
                               "hi": [pn[lab][f"{key}_{mode}"]["ci_high"] for lab in NORMS]}]}
                  for key, name, ylabel in (("roughness_2d", "roughness", "mean |Δ²L| / h² (nats)"),
                                            ("ruggedness_2d", "ruggedness", "sqrt(SS_res / SS_tot), quadratic fit"))
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
        base.Figure("roughness", "bars", "Roughness and ruggedness of the 2-D landscapes",
               f"Roughness: mean |Δ²L|/h² within r = {cfg['rough_radius']} (how sharp); ruggedness: the share of "
               "the surface's spread a quadratic bowl does not explain (cliffs, ravines, bumps); mean and 95% CI "
               f"over {len(plan.seeds)} seeds.",
               {"panels": bar_panels}),
        *sharpness_figures(results, plan.seeds, at_end=True),
    ]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    cfg = plan.config
    pn = metrics["per_net"]
    lam = next((s for s in decision.secondary if s.name.startswith("log(λ_max no BN / BN), BN mode train")), None)
    votes = {r.setting: r for r in decision.primary}
    per_mode = "; ".join(
        f"BN {mode} mode: roughness BN {pn['BN'][f'roughness_2d_{mode}']['effect']:.3g} vs no BN "
        f"{pn['no BN'][f'roughness_2d_{mode}']['effect']:.3g}, log(no BN / BN) {base.brief(votes[f'roughness:{mode}'])}"
        f"; ruggedness BN {pn['BN'][f'ruggedness_2d_{mode}']['effect']:.3g} vs no BN "
        f"{pn['no BN'][f'ruggedness_2d_{mode}']['effect']:.3g}, no BN − BN {base.brief(votes[f'ruggedness:{mode}'])}"
        for mode in MODES)
    summary = (f"2-D landscapes within r = {cfg['rough_radius']}, {per_mode}"
               + (f". Hessian λ_max at the end, log(no BN / BN), train mode: {base.brief(lam)}" if lam else "")
               + f". The eval-mode numbers describe the picture the visualisation tools draw of a BN net. Verdict: "
               f"{decision.verdict}.")
    method = (f"{cfg['model']} ({cfg['model_config']}, width {cfg['width']}) with and without BN on {cfg['dataset']}, "
              f"SGD lr {cfg['lr']}, momentum {cfg['momentum']}, batch {cfg['batch_size']}, {cfg['steps']} steps, "
              f"{len(plan.seeds)} seeds; landscapes on {cfg['eval_samples']} training examples, {cfg['grid']}×"
              f"{cfg['grid']} grid and {cfg['line']}-point line over ±{cfg['radius']} (filter-normalised Gaussian "
              "directions, 1-D parameters 0), BN in train and eval mode; Hessian on the C06 curvature runs.")
    caveats = [
        "Roughness grows with sharpness (a steep bowl) as well as with bumps and cliffs; ruggedness (the residual of "
        "a quadratic fit) does not grow with sharpness, and the fraction of non-convex stencils is reported beside "
        "them.",
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
        caveats.append("Some training runs diverged: each counts as the worst outcome for its net in the primary "
                       "endpoint (roughness ratio ±inf, a tie when both nets diverged; ruggedness 1), never as a "
                       "missing seed; the secondary results keep the landscapes' numbers (a seed with none finite is "
                       "left out of them).")
    return base.Description(summary, method, caveats)
