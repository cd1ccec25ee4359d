"""C04 — "ICS is not the main reason BN helps" (Santurkar et al. 2018, Sec. 2.1, Fig. 2): a BN net with injected,
time-varying, non-zero-mean, non-unit-variance noise after every BN trains about as well as BN, and better than
no BN.

What is measured (the shared VGG runs, `bnlab.experiments.probed_training`): the same VGG with BN, with noisy BN
(BN followed by Santurkar's noise, `bnlab.layers.noisy`), without BN, and without BN but with the same noise, with
the ℓ1/ℓ2/ℓ∞ normalisations beside them. Per run: A = the mean test accuracy over all evaluations (the area under
the accuracy curve, which rewards fast training as Fig. 2's curves do), and the *activation drift* of the last conv
block's pre-activation on the training batches as training sees them (noise included): mean over units and
consecutive probe times of |Δ mean| + |Δ std| (`probed_training.moment_drift`).

Primary endpoint, four components (per seed, paired), combined by `decide`:
* superiority: A(noisy BN) − A(no BN) > 0 (t);
* "about as well as BN", as a relative margin: the share of BN's advantage over no BN that noisy BN keeps,
  K = (A(noisy BN) − A(no BN)) / (A(BN) − A(no BN)) = 1 − the share it loses; supported when the 95% t-interval of
  K lies wholly above ½ (noisy BN loses less than half of what BN gains), refuted when wholly below ½ (t against
  ½). Seeds where BN has no advantage (A(BN) ≤ A(no BN)) have no share and are left out;
* manipulation check: log(drift noisy BN / drift no BN) > 0 — the noise must move the distributions more than a net
  without BN moves on its own, or the experiment tests nothing;
* control: A(no BN) − A(noise on no BN) > 0 — the same noise hurts a net without BN.
A run that diverged is the worst outcome for its net, never a missing seed (`bnlab.experiments.outcomes`): its A
(and final accuracy) is chance, 0.1; its drift ratio in the manipulation check is ±inf (only no BN failed -> +inf,
only noisy BN -> −inf, both -> a tie), tested by the exact Wilcoxon signed-rank test (two-sided p < 0.05 with the
Hodges–Lehmann effect above 0 -> supported, below -> refuted); the accuracy components by t.
Secondary: A(noisy BN) − A(BN) by TOST within ±0.015 (half of Santurkar's 3-point CIFAR-10 advantage), the final
test accuracy noisy BN − BN (quoted in the summary), the ℓp nets, and the drift of noisy BN against BN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.experiments import base, outcomes, stats
from bnlab.experiments.probed_training import (
    family_seeds,
    finite_mean,
    moment_drift,
    run_settings,
    run_trial,
    seed_band,
)

CLAIM_ID = "C04"
NORMS: tuple[str, ...] = ("bn", "noisy_bn", "none", "noise", "l1", "l2", "linf")
LABELS: dict[str, str] = {"bn": "BN", "noisy_bn": "noisy BN", "none": "no BN", "noise": "noise only",
                          "l1": "ℓ1 norm", "l2": "ℓ2 norm", "linf": "ℓ∞ norm"}
MARGIN = base.ACCURACY_MARGIN  # the equivalence margin in accuracy (experiments.base)
# The margin's own rationale ("closer to BN than to halfway to no BN"), applied to the advantage measured here:
# noisy BN must keep more than half of BN's advantage over no BN.
KEPT_SHARE = 0.5

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="noisy BN: better than no BN, keeps most of BN's advantage",
        measure="per seed, A = mean test accuracy over all evaluations: A(noisy BN) − A(no BN); the share of BN's "
                "advantage noisy BN keeps, (A(noisy BN) − A(no BN)) / (A(BN) − A(no BN)); log(activation drift "
                "noisy BN / no BN); A(no BN) − A(noise on no BN)",
        unit="accuracy; share; log ratio", test="t", threshold=0.0,
        threshold_source=f"0 for the directional components; {KEPT_SHARE} for the kept share: noisy BN is 'about as "
                         "good as BN' when it is closer to BN than to halfway to no BN — the rationale of the "
                         f"±{MARGIN} margin (half of Santurkar's 3-point CIFAR-10 advantage), applied to the "
                         "advantage BN has in this setting",
        settings=("noisy_vs_none", "kept_share", "manipulation", "control"),
        per_setting={"kept_share": ("t", KEPT_SHARE), "manipulation": ("signed_rank", 0.0)},
        gates=("manipulation", "control"),
        units={"noisy_vs_none": "accuracy", "kept_share": "share of BN's advantage", "manipulation": "log ratio",
               "control": "accuracy"}),
    cost="costly",
    secondary=(f"A(noisy BN) − A(BN) within ±{MARGIN} (TOST): the absolute margin", "final test accuracy, noisy BN − "
               "BN (in the summary)", "A(ℓ1 / ℓ2 / ℓ∞ norm) − A(no BN)", "log(activation drift noisy BN / BN)"),
    runs="bnlab's narrow VGG on sklearn digits, SGD lr 0.1, batch 64, 300 steps, with each of BN, noisy BN, no BN, "
         "noise on no BN, ℓ1, ℓ2, ℓ∞; 5 seeds; Santurkar's noise (μ_t ~ U(−0.5, 0.5), σ_t ~ U(1, 1.25) per step and "
         "unit, m ~ U(μ_t ± 0.1), s ~ N(σ_t, 0.1) per element)",
    paper="Santurkar Fig. 2: VGG on CIFAR-10, 15k steps; 'almost exactly like BN', and the noise stops a no-BN net "
          "from training. The default scale is a narrow VGG on 8x8 digits for 300 steps.",
    why="The equivalence component is a relative margin. The absolute ±0.015 is half of BN's 3-point advantage on "
        "CIFAR-10; here BN's advantage is about 13 points, so ±0.015 asked noisy BN to come within 12% of BN's gain, "
        "and TOST would have needed about 150–200 seeds to show it. The share of BN's advantage noisy BN keeps, "
        "tested against ½, is the same rationale in this setting's units; the absolute TOST is reported beside it. "
        "The manipulation check compares noisy BN with no BN, as the claim's 'distributions move more than without "
        "BN' requires (BN's own drift is ≈ 0 by construction); the noise-on-no-BN control is stated by the claim, "
        "so it is part of the rule.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.01, base.ONE_POINT + "; kept share: a true share of 0.75 (0.25 above ½); manipulation: "
                         "a factor of 2", per_setting={"manipulation": 0.69, "kept_share": 0.25})

RULE = ("Per seed, A = mean test accuracy over all evaluations; a run that diverged scores chance (0.1), and in the "
        "drift ratio counts as the worst outcome for its net (only no BN diverged -> +inf, only noisy BN -> −inf, "
        "both -> a tie), never a missing seed. Four components, each over seeds: (1) A(noisy BN) − "
        "A(no BN), 95% t-interval wholly above 0 -> supported, below -> refuted; (2) the share of BN's advantage "
        "noisy BN keeps, (A(noisy BN) − A(no BN)) / (A(BN) − A(no BN)) (seeds with A(BN) ≤ A(no BN) left out): "
        f"95% t-interval wholly above {KEPT_SHARE} -> supported (noisy BN loses less than half of BN's advantage), "
        f"wholly below {KEPT_SHARE} -> refuted; (3) the manipulation check log(drift noisy BN / drift no BN), exact "
        "Wilcoxon signed-rank test, two-sided p < 0.05 with the Hodges–Lehmann effect above 0 -> supported, below "
        "-> refuted, and (4) the control A(no BN) − A(noise on no BN), directional as (1). (3) and (4) are "
        "gates: if either is not supported, the verdict is inconclusive (the noise did not shift the distributions "
        "more than training without BN does, or did not hurt a net without BN). Otherwise (1) and (2) vote by "
        "stats.combine: supported only when both are, refuted when one is refuted and none supported, mixed when "
        f"one is supported and the other refuted, inconclusive otherwise. The absolute TOST (±{MARGIN}) and the ℓp "
        "nets are reported, never voted.")


def kept_shares(noisy: list, bn: list, none: list) -> list[float]:
    """Per seed: (A(noisy BN) − A(no BN)) / (A(BN) − A(no BN)), the share of BN's advantage noisy BN keeps (1 − the
    share it loses); NaN where BN has no advantage (A(BN) ≤ A(no BN)) or a value is missing."""
    gains = stats.paired_differences(noisy, none)
    advantages = stats.paired_differences(bn, none)
    return [g / a if a > 0 else float("nan") for g, a in zip(gains, advantages)]  # nan > 0 is False: NaN


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    seed_list = family_seeds("vgg", scale, seeds, first_seed)
    trials = [run_trial(CLAIM_ID, "vgg", scale, norm, seed) for norm in NORMS for seed in seed_list]
    config = {"runs": {"vgg": run_settings("vgg", scale)}, "norms": list(NORMS), "margin": MARGIN}
    return base.Plan(CLAIM_ID, scale, seed_list, config, tuple(trials))


def _runs(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, list[dict[str, Any]]]:
    return {n: [results[f"vgg/{n}/seed={s}"] for s in plan.seeds] for n in NORMS}


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    runs = _runs(plan, results)
    diverged = {n: [r["diverged_at_step"] is not None for r in runs[n]] for n in NORMS}
    auc = {n: [outcomes.scored_accuracy(finite_mean(r["curves"]["test_acc"]), d) for r, d in zip(runs[n], diverged[n])]
           for n in NORMS}  # a diverged run scores chance: the worst outcome for its net
    final = {n: [outcomes.scored_accuracy(r["final"].get("test_acc"), d) for r, d in zip(runs[n], diverged[n])]
             for n in NORMS}
    drift = {n: [moment_drift(r["activations"]) for r in runs[n]] for n in NORMS}
    failed = {n: [outcomes.failed(d, x) for d, x in zip(diverged[n], drift[n])] for n in NORMS}
    primary = {"noisy_vs_none": stats.paired_differences(auc["noisy_bn"], auc["none"]),
               "kept_share": kept_shares(auc["noisy_bn"], auc["bn"], auc["none"]),
               "manipulation": outcomes.paired_worst_values(stats.paired_log_ratios(drift["noisy_bn"], drift["none"]),
                                                            failed["noisy_bn"], failed["none"]),
               "control": stats.paired_differences(auc["none"], auc["noise"])}
    secondary: dict[str, dict[str, Any]] = {
        f"A(noisy BN) − A(BN) within ±{MARGIN} (TOST)": {
            "values": stats.paired_differences(auc["noisy_bn"], auc["bn"]), "unit": "accuracy", "test": "tost",
            "threshold": MARGIN, "note": "the absolute margin: half of Santurkar's 3-point CIFAR-10 advantage"},
        "final test accuracy, noisy BN − BN": {
            "values": stats.paired_differences(final["noisy_bn"], final["bn"]), "unit": "accuracy"}}
    secondary.update({f"A({LABELS[n]}) − A(no BN)": {"values": stats.paired_differences(auc[n], auc["none"]),
                                                 "unit": "accuracy"} for n in ("l1", "l2", "linf")})
    secondary["log(activation drift noisy BN / BN)"] = {
        "values": stats.paired_log_ratios(drift["noisy_bn"], drift["bn"]), "unit": "log ratio",
        "note": "BN's own drift is ≈ 0 by construction, so this ratio is large whatever the noise does"}
    return {"primary": primary, "secondary": secondary, "mean_test_acc": auc, "final_test_acc": final,
            "activation_drift": drift}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    """The gates (manipulation check, control) first: not supported -> inconclusive; then superiority and the
    kept share combined by stats.combine (see RULE)."""
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    runs = _runs(plan, results)
    drift = metrics["activation_drift"]
    acc = {"title": "test accuracy", "xlabel": "step", "ylabel": "test accuracy",
           "series": [seed_band([r["curves"]["eval_step"] for r in runs[n]], [r["curves"]["test_acc"] for r in runs[n]],
                                LABELS[n]) for n in NORMS]}
    loss = {"title": "training loss", "xlabel": "step", "ylabel": "train loss", "yscale": "log",
            "series": [seed_band([r["curves"]["step"] for r in runs[n]], [r["curves"]["train_loss"] for r in runs[n]],
                                 LABELS[n]) for n in ("bn", "noisy_bn", "none", "noise")]}
    act_panels = []
    for n in ("bn", "noisy_bn", "none", "noise"):
        a = runs[n][0]["activations"]
        mu, sd = [m[0] for m in a["unit_mean"]], [s[0] for s in a["unit_std"]]
        act_panels.append({"title": f"{LABELS[n]}: unit {a['units'][0]} of {a['module']}", "xlabel": "step",
                           "ylabel": "pre-activation mean ± std",
                           "series": [{"label": f"{LABELS[n]}: mean ± std", "x": a["step"], "y": mu,
                                       "lo": [m - s for m, s in zip(mu, sd)], "hi": [m + s for m, s in zip(mu, sd)]}]})
    bars = {"title": "activation drift (mean |Δ mean| + |Δ std| between probes)", "ylabel": "drift",
            "categories": [LABELS[n] for n in NORMS],
            "groups": [{"label": "mean over seeds", "values": [finite_mean(drift[n]) for n in NORMS],
                        "lo": [min(stats.finite(drift[n]), default=None) for n in NORMS],
                        "hi": [max(stats.finite(drift[n]), default=None) for n in NORMS]}]}
    return [
        base.Figure("santurkar_fig2_curves", "lines", "Santurkar Fig. 2: training with injected distribution shift",
               "Test accuracy and training loss; mean over seeds, band min–max.", {"panels": [acc, loss]}),
        base.Figure("santurkar_fig2_activations", "lines", "Activation distributions over training (first seed)",
               "Mean ± std of one unit's pre-activation on the training batch as training sees it: noisy BN moves "
               "it at every step while BN keeps it at (β, γ).", {"panels": act_panels}),
        base.Figure("activation_drift", "bars", "Activation drift per net",
               "Mean over units and consecutive probe times of |Δ mean| + |Δ std| of the pre-activation.",
               {"panels": [bars]}),
    ]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    names = {"noisy_vs_none": "noisy BN − no BN", "kept_share": "share of BN's advantage noisy BN keeps (vs ½)",
             "manipulation": "manipulation check", "control": "no BN − noise on no BN"}
    parts = "; ".join(f"{names[r.setting]} {base.brief(r, 3)}" for r in decision.primary)
    final = next(r for r in decision.secondary if r.name == "final test accuracy, noisy BN − BN")
    tost = decision.secondary[0]
    summary = (f"Mean test accuracy over training and activation drift, per seed: {parts}. Final test accuracy, "
               f"noisy BN − BN: {base.brief(final, 3)}; mean accuracy noisy BN − BN against the absolute ±{MARGIN} "
               f"margin (TOST, 90% interval): {base.brief(tost, 3)}. Verdict: {decision.verdict}.")
    c = plan.config["runs"]["vgg"]["config"]
    method = (f"VGG ({c['model_kwargs']['config']}) on {c['dataset']}, SGD lr {c['lr']}, batch {c['batch_size']}, "
              f"{c['steps']} steps, {len(plan.seeds)} seeds, with each of: {', '.join(LABELS[n] for n in NORMS)}. "
              "Noise per step and unit μ_t ~ U(−0.5, 0.5), σ_t ~ U(1, 1.25); per element m ~ U(μ_t ± 0.1), "
              f"s ~ N(σ_t, 0.1); a ← s·a + m. Activation statistics of the last conv block's pre-activation every "
              f"{plan.config['runs']['vgg']['probe_every']} steps on the training batch, as training sees it.")
    dropped = len(metrics["primary"]["kept_share"]) - len(stats.finite(metrics["primary"]["kept_share"]))
    caveats = [f"The kept-share margin (½) applies the rationale of an absolute ±{MARGIN} margin (half of the BN "
               "advantage Santurkar et al. report; they judge Fig. 2 by eye) to the advantage measured here; a share "
               "per seed is noisy where BN's advantage is small.",
               "A run that diverged scores chance (0.1) in every accuracy, and ±inf in the drift ratio of the "
               "manipulation check (the worst outcome for its net), never a missing seed; the drift ratio noisy BN / "
               "BN (secondary) keeps the drift measured up to the divergence."]
    if dropped:
        caveats.append(f"{dropped} seed(s) where BN had no advantage over no BN (a BN run that diverged scores "
                       "chance, so has none) have no kept share and are left out of component (2).")
    if plan.scale != "paper":
        caveats.append(f"Scale '{plan.scale}': a narrow VGG on a small data set for {c['steps']} steps, not VGG on "
                       "CIFAR-10 for 15k steps; on an easy data set all nets can end close together.")
    return base.Description(summary, method, caveats)
