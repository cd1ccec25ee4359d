"""C06 — "BN makes the gradient more predictive (smaller β-smoothness)" (Santurkar et al. 2018, Fig. 4b, c).

What is measured. On the runs of C05 (shared trials): at probe times, ‖∇L(w − ηg) − g‖₂ for the K step sizes on
the step's batch. The *gradient predictiveness* at a probe time is the width of that band over η (Fig. 4b); the
*effective β-smoothness* is max over η of ‖∇L(w − ηg) − g‖ / ‖ηg‖ (Fig. 4c). On separate VGG runs
(`bnlab.experiments.curvature`, shared with C14): the Hessian's top eigenvalue every few steps, in both BN modes.

Primary endpoint. Per net (VGG, deep linear net) and seed: the mean over probe times of log(effective
β-smoothness) without BN minus the same with BN (log of the ratio of geometric means, paired by seed). Positive:
a smaller β with BN. The claim is the constant β in ‖∇L(w₁) − ∇L(w₂)‖ ≤ β‖w₁ − w₂‖; along −g, w₁ − w₂ = ηg, so
max_η ‖∇L(w − ηg) − g‖ / ‖ηg‖ is the claim's own quantity. The raw band of Fig. 4b (gradient predictiveness) is not
divided by ‖ηg‖: it shrinks whenever the gradient is small, so most of its ratio is gradient scale. A run that
diverged, or a probe time with no finite β, is the worst outcome for its net (`bnlab.experiments.outcomes`: only
no BN failed -> +inf, only BN -> −inf, both -> a tie), never a missing seed -- as in C05.

Rule (RULE, `decide`): as C05's — per net, the exact Wilcoxon signed-rank test, two-sided p < 0.05 with the
Hodges–Lehmann effect above 0 -> supported, below -> refuted, else inconclusive; nets combined by `stats.combine`.
Secondary (never voting): the gradient-predictiveness band per net (Fig. 4b), and the Hessian λ_max over training per BN
mode (log ratio no BN / BN), its weight-norm-invariant form and trace.
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
    NORMS,
    PAPER_TEXT,
    RUNS_TEXT,
    band_figure,
    effects,
    failures,
    log_means,
    method_text,
    per_net_factors,
    plan_config,
    scale_caveats,
    shared_trials,
    worst_effects,
)

CLAIM_ID = "C06"

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="log(effective β-smoothness without BN / with BN)",
        measure="per seed: mean over probe times of log(max_η ‖∇L(w − ηg) − g‖ / ‖ηg‖) without BN, minus the same "
                "with BN (same batch, BN with batch statistics)",
        unit="log ratio", test="signed_rank", threshold=0.0,
        threshold_source="0 = equal β; Santurkar Fig. 4c predicts a smaller effective β-smoothness with BN",
        settings=("vgg", "dln"), setting_costs={"dln": "cheap"}),
    cost="costly",
    secondary=("gradient predictiveness (the band max_η − min_η of ‖∇L(w − ηg) − g‖, Fig. 4b), per net",
               "Hessian λ_max over training, BN modes train and eval, and λ_max·‖W‖² (VGG)",
               "Hessian trace over training, per BN mode (VGG)",
               "edge of stability: log(λ_max over the last third of training / 2/η) per net and BN mode, and the same "
               "for the batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] over SGD mini-batches (VGG)"),
    runs=RUNS_TEXT + "; the Hessian runs: the same VGG, λ_max by Lanczos every 50 steps on 128 examples",
    paper=PAPER_TEXT + " Santurkar reports about two orders of magnitude early in training.",
    why="The claim is the constant β in ‖∇L(w₁) − ∇L(w₂)‖ ≤ β‖w₁ − w₂‖, so the primary is the effective β "
        "(max over η of ‖Δg‖ / ‖ηg‖), the claim's own quantity. The band of Fig. 4b, which voted before, is not "
        "divided by the step length: on the VGG its ratio (about 14×) is mostly gradient scale, where the effective "
        "β differs about 1.4×. The band is reported beside it.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.69, base.FACTOR_TWO)

RULE = ("Per net (VGG, deep linear net) and seed: effect = mean over probe times of log(effective β-smoothness, "
        "max_η ‖∇L(w − ηg) − g‖ / ‖ηg‖) without BN minus with BN; a run that diverged or a probe time with no "
        "finite β is the worst outcome for its net (only no BN failed -> +inf, only BN -> −inf, both -> a tie), "
        "never a missing seed. Per net: the exact Wilcoxon signed-rank test over seeds, two-sided p < 0.05 with the "
        "Hodges–Lehmann effect above 0 -> supported, below 0 -> refuted, otherwise inconclusive. "
        "The claim: supported only when both nets are; refuted when one is and none supported; one supported and "
        "one refuted -> mixed; otherwise inconclusive. The gradient-predictiveness band and the Hessian results are "
        "reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    vgg_seeds = family_seeds("vgg", scale, seeds, first_seed)
    trials = [*shared_trials(CLAIM_ID, scale, seeds, first_seed),
              *curvature_trials(CLAIM_ID, scale, vgg_seeds)]
    config = {**plan_config(scale, seeds, first_seed), "curvature": asdict(curvature_config(scale))}
    return base.Plan(CLAIM_ID, scale, tuple(config["seeds"]["dln"]), config, tuple(trials))


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    gp = log_means(plan, results, "gradient_predictiveness")
    beta = log_means(plan, results, "beta_smoothness")
    fails = failures(plan, results, "beta_smoothness")
    secondary = {f"log(gradient predictiveness no BN / BN) [{f}]": {
        "values": effects(gp, f, "bn"), "unit": "log ratio",
        "note": "Fig. 4b's band, not divided by ‖ηg‖: it also shrinks with the gradient's size; a diverged run "
                "keeps its probe times before the divergence here (the primary counts it as the worst outcome)"}
        for f in NORMS}
    for name, values in sharpness_effects(results, plan.config["seeds"]["vgg"], at_end=False).items():
        secondary[f"{name}, mean over training [vgg]"] = {"values": values, "unit": "log ratio"}
    secondary.update(edge_of_stability(results, plan.config["seeds"]["vgg"], plan.scale))
    return {"primary": {f: worst_effects(beta, fails, f) for f in NORMS}, "secondary": secondary,
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
    band = [next(s for s in decision.secondary if s.name == f"log(gradient predictiveness no BN / BN) [{f}]")
            for f in NORMS]
    parts, beside = per_net_factors(decision.primary), per_net_factors(band)
    summary = (f"Mean log(effective β-smoothness without BN / with BN): {parts}. Positive means a smaller "
               f"β with BN: the gradient changes less per unit step along −g. Beside it, the raw band of Fig. 4b, "
               f"log(gradient predictiveness no BN / BN): {beside}; the gap between the two ratios is "
               f"gradient scale. Santurkar reports about two orders of magnitude (×100) early in training. Verdict: "
               f"{decision.verdict}.")
    caveats = ["Like the loss variation, gradient distances shrink as the loss flattens late in training; the "
               "β-smoothness divides by ‖ηg‖ and is the less level-dependent of the two, which is why it votes.",
               "BN's scale invariance makes the raw Hessian λ_max fall as SGD grows the weight norm, with no change "
               "in the function; λ_max·‖W‖² is reported beside it as the invariant form.",
               "A run that diverged, or a probe time with no finite β, counts as the worst outcome for its net (±inf, "
               "ranked beyond every finite value; both nets -> a tie), never as a missing seed; the secondary "
               "results keep the finite probe times.",
               *scale_caveats(plan)]
    return base.Description(summary, method_text(plan), caveats)

