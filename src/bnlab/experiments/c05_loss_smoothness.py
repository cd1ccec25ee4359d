"""C05 — "BN makes the loss smoother (Lipschitz)" (Santurkar et al. 2018, Sec. 3.1, Fig. 4a).

What is measured. At probe times during training, on the step's own batch, the loss is evaluated at w − ηg for K
step sizes (`bnlab.probes.along_gradient`, BN with batch statistics, running statistics untouched): VGG
η ∈ [½, 4] × lr, deep linear net η ∈ [1/100, 30] × lr (Santurkar's ranges). The *loss variation* at a probe time is
the width of that band, max_η L − min_η L.

Primary endpoint. Per net (VGG, deep linear net) and seed: the mean over probe times of log(loss variation) without
BN minus the same with BN — the log of the ratio of geometric means, paired by seed. Averaging in log space keeps
one heavy-tailed probe time (the no-BN net's band reaches 10¹⁰ early on) from deciding alone. Positive: BN smoother.
A run that diverged, or a probe time whose band is not finite, is the worst outcome for the net it belongs to
(`bnlab.experiments.outcomes.paired_worst`: only the no-BN run failed -> +inf, only the BN run -> −inf, both -> a
tie), never a missing seed.

Rule (RULE below, `decide`): per net, the exact Wilcoxon signed-rank test over seeds (ranks: a log ratio of 10⁴ or
a diverged run weighs as one rank): two-sided p < 0.05 with the Hodges–Lehmann effect above 0 -> supported, below 0
-> refuted, otherwise inconclusive; the nets combined by `stats.combine`. Secondary (never voting):
Santurkar's ℓ1, ℓ2, ℓ∞ normalisations against no BN on the VGG, and the loss variation relative to the loss at w.
The runs are shared with C03, C04 and C06 (`bnlab.experiments.probed_training`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.experiments import base, stats
from bnlab.experiments.smoothness import (
    LABELS,
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
    runs_of,
    scale_caveats,
    shared_trials,
    worst_effects,
)

CLAIM_ID = "C05"

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="log(loss variation without BN / with BN)",
        measure="per seed: mean over probe times of log(max_η L(w − ηg) − min_η L(w − ηg)) without BN, minus the "
                "same with BN (same batch, BN with batch statistics)",
        unit="log ratio", test="signed_rank", threshold=0.0,
        threshold_source="0 = equal smoothness; Santurkar Fig. 4a predicts a narrower band with BN (effect > 0)",
        settings=("vgg", "dln"), setting_costs={"dln": "cheap"}),
    cost="costly",
    secondary=("ℓ1 / ℓ2 / ℓ∞ normalisation vs no BN on the VGG (same measure)",
               "loss variation relative to the loss at w (BN vs no BN), per net"),
    runs=RUNS_TEXT,
    paper=PAPER_TEXT,
    why="The raw loss variation is Santurkar's Fig. 4a quantity and stays the vote; the mean of logs (geometric "
        "mean) keeps one heavy-tailed probe time from deciding. Much of the raw ratio is the loss level (on the "
        "VGG about 44× raw against about 1.7× relative to the loss at w), so the relative variation is reported "
        "beside it in the summary. The DLN runs Santurkar's protocol (summed loss, lr 1e-6).")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.69, base.FACTOR_TWO)

RULE = ("Per net (VGG, deep linear net) and seed: effect = mean over probe times of log(loss variation) without BN "
        "minus with BN; a run that diverged or a probe time with no finite band is the worst outcome for its net "
        "(only no BN failed -> +inf, only BN -> −inf, both -> a tie), never a missing seed. Per net: the exact "
        "Wilcoxon signed-rank test over seeds, two-sided p < 0.05 with the Hodges–Lehmann effect above 0 -> "
        "supported, below 0 -> refuted, otherwise inconclusive. The claim: supported only "
        "when both nets are; refuted when one is and none supported; one supported and one refuted -> mixed; "
        "otherwise inconclusive. ℓp nets and the relative variation are reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    config = plan_config(scale, seeds, first_seed)
    return base.Plan(CLAIM_ID, scale, tuple(config["seeds"]["dln"]), config,
                tuple(shared_trials(CLAIM_ID, scale, seeds, first_seed)))


# ----------------------------------------------------------------------------- measure


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    lv = log_means(plan, results, "loss_variation")
    fails = failures(plan, results, "loss_variation")
    relative = {family: {n: [stats.log_mean(v / m if v is not None and m else None
                                            for v, m in zip(r["along_gradient"]["loss_variation"],
                                                            r["along_gradient"]["loss_min"]))
                             for r in runs]
                         for n, runs in runs_of(plan, results, family).items() if n in ("bn", "none")}
                for family in NORMS}
    secondary: dict[str, dict[str, Any]] = {}
    for n in ("l1", "l2", "linf"):
        secondary[f"log(loss variation no BN / {LABELS[n]}) [vgg]"] = {"values": effects(lv, "vgg", n),
                                                                        "unit": "log ratio"}
    for family, runs in ((f, runs_of(plan, results, f)) for f in NORMS):
        for n in ("bn", "none"):
            secondary[f"fraction of runs that diverged, {LABELS[n]} [{family}]"] = {
                "values": [float(r["diverged_at_step"] is not None) for r in runs[n]], "unit": "fraction",
                "note": "a diverged run is the worst outcome for its net in the primary endpoint; the ℓp and "
                        "relative secondaries keep the probe times before the divergence"}
        secondary[f"log(relative loss variation no BN / BN) [{family}]"] = {
            "values": effects(relative, family, "bn"), "unit": "log ratio",
            "note": "loss variation divided by the lowest loss along −g, so a lower loss level alone cannot shrink it"}
    return {"primary": {family: worst_effects(lv, fails, family) for family in NORMS}, "secondary": secondary,
            "log_mean_loss_variation": lv}


# ----------------------------------------------------------------------------- decide


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


# ----------------------------------------------------------------------------- figures and words


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    return [band_figure("santurkar_fig4a", "Santurkar Fig. 4a: loss along the gradient",
                        "Left of each pair: min–max over the step sizes of L(w − ηg) on the step's batch (first "
                        "seed); right: its width (loss variation), mean over seeds with min–max band.",
                        plan, results, "loss_min", "loss_max", "loss_variation", "loss along −g", "loss variation")]



def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    relative = [next(s for s in decision.secondary if s.name == f"log(relative loss variation no BN / BN) [{f}]")
                for f in NORMS]
    parts, beside = per_net_factors(decision.primary), per_net_factors(relative)
    summary = (f"Mean log(loss variation without BN / with BN): {parts}. Positive means the loss varies "
               f"less along the gradient with BN. Relative to the loss level (variation / lowest loss along −g), "
               f"log(no BN / BN): {beside}: the part of the raw ratio that is not the no-BN net's higher "
               f"loss. Santurkar reports about two orders of magnitude (×100) early in training. Verdict: "
               f"{decision.verdict}.")
    caveats = ["Loss variation also scales with the loss level (a net that has trained further has smaller losses "
               "to vary); the variation relative to the loss at w is reported beside it in the summary.",
               "A run that diverged, or a probe time whose band is not finite (a diverged step size), counts as the "
               "worst outcome for its net (±inf, ranked beyond every finite value; both nets -> a tie), never as a "
               "missing seed; the ℓp and relative secondaries keep the finite probe times.", *scale_caveats(plan)]
    return base.Description(summary, method_text(plan), caveats)
