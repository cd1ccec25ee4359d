"""C06 — "BN makes the gradient more predictive (smaller β-smoothness)" (Santurkar et al. 2018, Fig. 4b, c).

What is measured. On the runs of C05 (shared trials): at probe times, ‖∇L(w − ηg) − g‖₂ for the K step sizes on
the step's batch. The *gradient predictiveness* at a probe time is the width of that band over η (Fig. 4b); the
*effective β-smoothness* is max over η of ‖∇L(w − ηg) − g‖ / ‖ηg‖ (Fig. 4c). On separate VGG runs
(`bnlab.experiments.curvature`, shared with C14): the Hessian's top eigenvalue every few steps, in both BN modes.

Primary endpoint. Per net (VGG, deep linear net) and seed: the mean over probe times of log(gradient
predictiveness) without BN minus the same with BN (log of the ratio of geometric means, paired by seed). Positive:
the gradient changes less along −g with BN, i.e. it is more predictive.

Rule (RULE, `decide`): as C05's — per net, the 95% t-interval wholly above 0 -> supported, wholly below -> refuted,
else inconclusive; nets combined by `stats.combine`. Secondary (never voting): the effective β-smoothness per net,
and the Hessian λ_max over training per BN mode (log ratio no BN / BN), its weight-norm-invariant form and trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from bnlab.experiments import base
from bnlab.experiments.curvature import config_for as curvature_config
from bnlab.experiments.curvature import (
    curvature_trials,
    edge_of_stability,
    sharpness_effects,
    sharpness_figures,
    stability_threshold,
)
from bnlab.experiments.probed_training import family_seeds
from bnlab.experiments.smoothness import (
    FAMILY_NAMES,
    NORMS,
    PAPER_TEXT,
    RUNS_TEXT,
    band_figure,
    effects,
    log_means,
    method_text,
    plan_config,
    scale_caveats,
    shared_trials,
)

CLAIM_ID = "C06"

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="log(gradient predictiveness without BN / with BN)",
        measure="per seed: mean over probe times of log(max_η − min_η of ‖∇L(w − ηg) − g‖) without BN, minus the "
                "same with BN (same batch, BN with batch statistics)",
        unit="log ratio", test="t", threshold=0.0,
        threshold_source="0 = equally predictive gradients; Santurkar Fig. 4b predicts a narrower band with BN",
        settings=("vgg", "dln"), setting_costs={"dln": "cheap"}),
    cost="costly",
    secondary=("effective β-smoothness max_η ‖∇L(w − ηg) − g‖ / ‖ηg‖, per net",
               "Hessian λ_max over training, BN modes train and eval, and λ_max·‖W‖² (VGG)",
               "Hessian trace over training, per BN mode (VGG)",
               "edge of stability: log(λ_max over the last third of training / 2/η) per net and BN mode (VGG)"),
    runs=RUNS_TEXT + "; the Hessian runs: the same VGG, λ_max by Lanczos every 50 steps on 128 examples",
    paper=PAPER_TEXT + " Santurkar reports about two orders of magnitude early in training.",
    why="One primary measure instead of seven votes that all had to agree (each added measure made a decision "
        "less likely): the band of Fig. 4b is the paper's headline for this claim; β-smoothness and the Hessian "
        "are reported beside it.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.69, base.FACTOR_TWO)

RULE = ("Per net (VGG, deep linear net) and seed: effect = mean over probe times of log(gradient predictiveness) "
        "without BN minus with BN. Per net: the 95% t-interval of the mean effect wholly above 0 -> supported, wholly "
        "below 0 -> refuted, otherwise inconclusive. The claim: supported only when both nets are; refuted when one "
        "is and none supported; one supported and one refuted -> mixed; otherwise inconclusive. β-smoothness and "
        "Hessian results are reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    vgg_seeds = family_seeds("vgg", scale, seeds, first_seed)
    trials = [*shared_trials(CLAIM_ID, scale, seeds, first_seed),
              *curvature_trials(CLAIM_ID, scale, vgg_seeds)]
    config = {**plan_config(scale, seeds, first_seed), "curvature": asdict(curvature_config(scale))}
    return base.Plan(CLAIM_ID, scale, tuple(config["seeds"]["dln"]), config, tuple(trials))


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    gp = log_means(plan, results, "gradient_predictiveness")
    beta = log_means(plan, results, "beta_smoothness")
    secondary = {f"log(β-smoothness no BN / BN) [{f}]": {"values": effects(beta, f, "bn"), "unit": "log ratio"}
                 for f in NORMS}
    for name, values in sharpness_effects(results, plan.config["seeds"]["vgg"], at_end=False).items():
        secondary[f"{name}, mean over training [vgg]"] = {"values": values, "unit": "log ratio"}
    secondary.update(edge_of_stability(results, plan.config["seeds"]["vgg"], plan.scale))
    return {"primary": {f: effects(gp, f, "bn") for f in NORMS}, "secondary": secondary,
            "log_mean_gradient_predictiveness": gp, "log_mean_beta_smoothness": beta}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    fig4b = band_figure("santurkar_fig4b", "Santurkar Fig. 4b: gradient predictiveness",
                        "Left of each pair: min–max over the step sizes of ‖∇L(w − ηg) − g‖ (first seed); right: "
                        "the band's width, mean over seeds with min–max band.", plan, results, "dist_min",
                        "dist_max", "gradient_predictiveness", "‖∇L(w − ηg) − g‖", "gradient predictiveness")
    fig4c = band_figure("santurkar_fig4c", "Santurkar Fig. 4c: effective β-smoothness",
                        "max over η of ‖∇L(w − ηg) − g‖ / ‖ηg‖, mean over seeds with min–max band.", plan,
                        results, "dist_min", "dist_max", "beta_smoothness", "‖∇L(w − ηg) − g‖",
                        "effective β-smoothness")
    fig4c.data["panels"] = [p for i, p in enumerate(fig4c.data["panels"]) if i % 2 == 1]  # bands are in Fig. 4b
    return [fig4b, fig4c, *sharpness_figures(results, plan.config["seeds"]["vgg"], at_end=False,
                                                  threshold=stability_threshold(plan.scale))]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    parts = [f"{FAMILY_NAMES[f]} {base.brief(r)}" for f, r in zip(NORMS, decision.primary)]
    summary = (f"Mean log(gradient predictiveness without BN / with BN): {'; '.join(parts)}. Positive means the "
               f"gradient changes less along −g with BN. Verdict: {decision.verdict}.")
    caveats = ["Like the loss variation, gradient distances shrink as the loss flattens late in training; the "
               "β-smoothness divides by ‖ηg‖ and is the less level-dependent of the two (reported as secondary).",
               "BN's scale invariance makes the raw Hessian λ_max fall as SGD grows the weight norm, with no change "
               "in the function; λ_max·‖W‖² is reported beside it as the invariant form.",
               *scale_caveats(plan)]
    return base.Description(summary, method_text(plan), caveats)
