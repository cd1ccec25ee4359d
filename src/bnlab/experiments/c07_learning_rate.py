"""C07 — "BN allows much larger learning rates without divergence" (Santurkar et al. Fig. 1; Ioffe & Szegedy BN-x5,
BN-x30; Bjorck et al. 2018).

What is measured (`bnlab.trials.lr_search.lr_search`, one trial per net and seed): an SGD run at every lr of a
grid over four decades, with and without BN, same init and batches; then two bisection runs between the last
stable and the first unstable grid lr, so the largest stable lr is known to a quarter of a grid step. Divergence
comes from the training loss alone: non-finite, ≥ 1000× its first value, or a final loss (last 10% of steps) ≥
the initial one. Slowness -- finite but below `trained_acc` test accuracy -- is reported, never counted as
divergence.

Primary endpoint: per seed, d = log10(largest stable lr with BN) − log10(largest stable lr without), paired. The
values are discrete (grid and bisection points: unit "decades of lr (grid)"), so the rule is the exact sign test:
p < 0.05 with d > 0 -> supported, with d < 0 -> refuted, else inconclusive -- a zero-width interval never decides.
Divergence is this endpoint's own outcome, so it already enters as the worst outcome and never as a missing seed: a
net unstable at every grid lr scores one grid step below the smallest lr, the lowest value the search can give.
Secondary: the slow fraction per net, final test accuracy per lr, and Bjorck's "the curves coincide at small lr" as an
equivalence test (TOST) of BN − no BN test accuracy at the grid's smallest lr.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bnlab.config import to_mapping
from bnlab.experiments import base, outcomes, stats
from bnlab.experiments.curvature import curvature_trials, edge_of_stability, sharpness_figures, stability_threshold
from bnlab.experiments.lr_grid import LR_GRIDS, NORMS, lr_trials, settings_of, trial_name
from bnlab.experiments.probed_training import family_seeds

CLAIM_ID = "C07"
CONFIGS = LR_GRIDS  # shared with C13 (bnlab.experiments.lr_grid)
COINCIDE_MARGIN = base.ACCURACY_MARGIN  # the C04 margin


PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="log10(largest stable lr with BN / without)",
        measure="per seed: log10 of the largest learning rate whose run does not diverge (grid, then two bisection "
                "steps), with BN minus without; divergence = non-finite loss, ≥ 1000× the first loss, or a final "
                "loss ≥ the initial one",
        unit="decades of lr (grid)", test="sign", threshold=0.0,
        threshold_source="0 = the same largest stable lr; the claim predicts a larger one with BN (d > 0)",
        settings=("setting:*",)),
    cost="cheap",
    secondary=("fraction of runs that are finite but slow (test accuracy below trained_acc), per net",
               f"test accuracy BN − no BN at the smallest grid lr, TOST within ±{COINCIDE_MARGIN} (Bjorck et al.)",
               "the largest stable lr per net (decades)",
               "edge of stability (C06's VGG curvature runs): log(λ_max late in training / 2/η) per net and BN mode, "
               "and of the batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] (SGD's own curvature)"),
    runs="Ioffe's 3 × 100 sigmoid MLP on mnist5k, SGD, batch 60, 800 steps per run, lr grid 0.01 … 100 (half "
         "decades) plus two bisection runs, 8 seeds",
    paper="Santurkar Fig. 1: VGG on CIFAR-10 at lr 0.1 and 0.5; Ioffe: Inception at 5× and 30× the lr; Bjorck et "
          "al.: a 110-layer ResNet, BN and no BN coincide at lr 1e-4. The default scale runs Ioffe's MNIST net; the "
          "paper scale adds VGG-11 on CIFAR-10 (given a local copy).",
    why="Divergence comes from the training loss: an accuracy threshold ('test accuracy ≥ 0.8 after 800 steps') "
        "would count slowness and sigmoid saturation as divergence. A grid alone knows the lr to a grid step, so "
        "every seed would give the same number and a zero-width interval; bisection refines it, and the exact sign "
        "test decides.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(
    0.7,
    "0.7 decades = a 5x larger stable learning rate: Ioffe & Szegedy's smaller learning-rate increase "
    "with BN (BN-x5, Sec. 4.2.1)")

RULE = ("Per seed: d = log10(largest stable lr with BN) − log10(largest stable lr without BN), where a run is stable "
        "unless its training loss turns non-finite, reaches 1000× its first value, or ends no lower than it began; "
        "a net unstable at every grid lr scores one grid step below the smallest (never a missing seed). "
        "Exact two-sided sign test over seeds: p < 0.05 with d > 0 -> supported, p < 0.05 with d < 0 -> refuted, "
        "otherwise inconclusive. Slowness and Bjorck's small-lr equivalence are reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = base.config_for(CONFIGS, scale)
    seed_list = base.seeds_for(scale, seeds, first_seed, PROTOCOL.cost)
    vgg_seeds = family_seeds("vgg", scale, seeds, first_seed)  # C06's curvature runs, shared (run once)
    return base.Plan(CLAIM_ID, scale, seed_list, {**to_mapping(cfg), "curvature_seeds": list(vgg_seeds)},
                     (*lr_trials(CLAIM_ID, cfg.settings, seed_list), *curvature_trials(CLAIM_ID, scale, vgg_seeds)))


def accuracy(rec: Mapping[str, Any], chance: float = outcomes.TEN_CLASS_CHANCE) -> float:
    """Final test accuracy; chance when the run diverged or its accuracy is not finite (`outcomes.scored_accuracy`:
    the worst outcome for the net that diverged)."""
    return outcomes.scored_accuracy(rec["test_acc"], rec["divergence"] is not None, chance)


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    primary, secondary, per_setting = {}, {}, {}
    for s in settings_of(plan.config):
        search = {n: [results[trial_name(s, n, seed)] for seed in plan.seeds] for n, _ in NORMS}
        largest = {n: [r["log10_largest_stable_lr"] for r in search[n]] for n, _ in NORMS}
        primary[f"setting:{s.label}"] = stats.paired_differences(largest["bn"], largest["none"])
        small = {n: [accuracy(r["grid"][0]) for r in search[n]] for n, _ in NORMS}  # diverged: chance
        secondary[f"test accuracy BN − no BN at lr {s.lrs[0]:g} (Bjorck: coincide) [{s.label}]"] = {
            "values": stats.paired_differences(small["bn"], small["none"]), "unit": "accuracy", "test": "tost",
            "threshold": COINCIDE_MARGIN}
        for n, label in NORMS:
            secondary[f"largest stable lr, {label} [{s.label}]"] = {"values": largest[n], "unit": "log10 lr"}
            slow = [sum(g["divergence"] is None and g["test_acc"] < s.trained_acc for g in r["grid"]) / len(r["grid"])
                    for r in search[n]]
            secondary[f"fraction of grid runs finite but slow, {label} [{s.label}]"] = {"values": slow,
                                                                                         "unit": "fraction"}
        per_setting[s.label] = {
            n: {"accuracy_per_lr": [[accuracy(g) for g in r["grid"]] for r in search[n]],
                "diverged_per_lr": [[g["divergence"] for g in r["grid"]] for r in search[n]],
                "censored": [r["censored"] for r in search[n]]} for n, _ in NORMS}
    secondary.update(edge_of_stability(results, plan.config["curvature_seeds"], plan.scale))
    return {"primary": primary, "secondary": secondary, "per_setting": per_setting}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    """One vote per lr setting (the default scale has one; the paper scale adds VGG-11 / CIFAR-10)."""
    return base.decide_each(PROTOCOL.endpoint, metrics)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    acc_panels, loss_panels = [], []
    for s in settings_of(plan.config):
        series = []
        for n, label in NORMS:
            per_lr = list(zip(*metrics["per_setting"][s.label][n]["accuracy_per_lr"]))  # (lr, seeds)
            ests = [stats.mean_ci(v) for v in per_lr]
            series.append({"label": label, "x": list(s.lrs), "y": [e.effect for e in ests],
                           "lo": [math.nan if e.ci_low is None else e.ci_low for e in ests],
                           "hi": [math.nan if e.ci_high is None else e.ci_high for e in ests]})
        acc_panels.append({"title": s.label, "xlabel": "learning rate", "ylabel": "test accuracy", "xscale": "log",
                           "series": series})
        first = {n: results[trial_name(s, n, plan.seeds[0])]["grid"] for n, _ in NORMS}
        for i in sorted({0, len(s.lrs) // 2, len(s.lrs) - 1}):
            loss_panels.append({"title": f"{s.label}, lr {s.lrs[i]:g} (seed {plan.seeds[0]})", "xlabel": "step",
                                "ylabel": "training loss (window mean)", "yscale": "log",
                                "series": [{"label": label, "x": first[n][i]["loss_step"],
                                            "y": [v if math.isfinite(v) else None for v in first[n][i]["train_loss"]]}
                                           for n, label in NORMS]})
    return [base.Figure("accuracy_vs_lr", "lines", "Final test accuracy vs learning rate",
                   f"Mean and 95% CI over {len(plan.seeds)} seeds; diverged runs count as chance (0.1).",
                   {"panels": acc_panels}),
            base.Figure("loss_curves", "lines", "Training loss at small, middle and large learning rates",
                   "Window-averaged training loss of the first seed; a curve stops where the run diverged.",
                   {"panels": loss_panels}),
            *sharpness_figures(results, plan.config["curvature_seeds"], at_end=False,
                               threshold=stability_threshold(plan.scale))]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    settings = settings_of(plan.config)
    parts = "; ".join(f"{r.setting.removeprefix('setting:')}: d = {base.brief(r)} decades" for r in decision.primary)
    summary = (f"log10(largest stable lr with BN / without), median over seeds with the sign test: {parts}. "
               f"Verdict: {decision.verdict}.")
    method = "; ".join(f"{s.label}: {s.model} on {s.dataset}, lr grid {list(s.lrs)} + {s.bisect} bisection runs, SGD "
                       f"momentum {s.momentum}, batch {s.batch_size}, {s.steps} steps per run, {len(plan.seeds)} seeds"
                       for s in settings)
    caveats = ["A net stable at the grid's largest lr is censored there, so its advantage is a lower bound.",
               "Stability is not monotone in the lr for every run; the first unstable grid lr bounds the search.",
               f"Bjorck's 'coincide at small lr' is judged by TOST within ±{COINCIDE_MARGIN} accuracy after the same "
               "number of steps; at the smallest lr a no-BN sigmoid net may simply not have finished training."]
    caveats.append("The edge-of-stability results come from C06's VGG curvature runs (mini-batch SGD at one lr, "
                   "λ_max on a fixed batch), not from the MLP whose largest stable lr votes; Cohen et al.'s picture "
                   "is for full-batch GD (`bnlab sharpness` runs that protocol).")
    if plan.scale != "paper":
        caveats.append("Santurkar et al.'s VGG / CIFAR-10 sweep (Fig. 1) runs only at paper scale.")
    return base.Description(summary, method, caveats)
