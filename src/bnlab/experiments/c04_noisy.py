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
* equivalence: A(noisy BN) − A(BN) within ±0.015 (TOST): "about as well as BN";
* manipulation check: log(drift noisy BN / drift no BN) > 0 — the noise must move the distributions more than a net
  without BN moves on its own, or the experiment tests nothing;
* control: A(no BN) − A(noise on no BN) > 0 — the same noise hurts a net without BN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.experiments import base, stats
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

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="noisy BN: better than no BN, as good as BN",
        measure="per seed, A = mean test accuracy over all evaluations: A(noisy BN) − A(no BN); A(noisy BN) − A(BN); "
                "log(activation drift noisy BN / no BN); A(no BN) − A(noise on no BN)",
        unit="accuracy; log ratio", test="t", threshold=0.0,
        threshold_source=f"0 for the directional components; the equivalence margin ±{MARGIN} is half of Santurkar's "
                         "BN advantage on VGG/CIFAR-10 (83% vs 80%): closer to BN than to halfway to no BN",
        settings=("noisy_vs_none", "noisy_vs_bn", "manipulation", "control"),
        per_setting={"noisy_vs_bn": ("tost", MARGIN)}, gates=("manipulation", "control"),
        units={s: "log ratio" if s == "manipulation" else "accuracy"
               for s in ("noisy_vs_none", "noisy_vs_bn", "manipulation", "control")}),
    cost="costly",
    secondary=("A(ℓ1 / ℓ2 / ℓ∞ norm) − A(no BN)", "final test accuracy, noisy BN − BN",
               "log(activation drift noisy BN / BN)"),
    runs="bnlab's narrow VGG on sklearn digits, SGD lr 0.1, batch 64, 300 steps, with each of BN, noisy BN, no BN, "
         "noise on no BN, ℓ1, ℓ2, ℓ∞; 5 seeds; Santurkar's noise (μ_t ~ U(−0.5, 0.5), σ_t ~ U(1, 1.25) per step and "
         "unit, m ~ U(μ_t ± 0.1), s ~ N(σ_t, 0.1) per element)",
    paper="Santurkar Fig. 2: VGG on CIFAR-10, 15k steps; 'almost exactly like BN', and the noise stops a no-BN net "
          "from training. The default scale is a narrow VGG on 8x8 digits for 300 steps.",
    why="The manipulation check compared noisy BN with BN, whose drift is ≈ 0 by construction, so it always passed; "
        "it now compares with no BN, as the claim's 'distributions move more than without BN' requires. The "
        "noise-on-no-BN control was computed and never used; the claim states it, so it is part of the rule.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.01, base.ONE_POINT, per_setting={"manipulation": 0.69})

RULE = ("Per seed, A = mean test accuracy over all evaluations. Four components, each over seeds: (1) A(noisy BN) − "
        "A(no BN), 95% t-interval wholly above 0 -> supported, below -> refuted; (2) A(noisy BN) − A(BN) within "
        f"±{MARGIN} by TOST (90% interval inside the margin) -> supported, 95% interval wholly outside -> refuted; "
        "(3) the manipulation check log(drift noisy BN / drift no BN) and (4) the control A(no BN) − A(noise on no "
        "BN), each directional as (1). (3) and (4) are gates: if either is not supported, the verdict is inconclusive "
        "(the noise did not shift the distributions more than training without BN does, or did not hurt a net "
        "without BN). Otherwise (1) and (2) vote by stats.combine: supported only when both are, refuted when one "
        "is refuted and none supported, mixed when one is supported and the other refuted, inconclusive otherwise. "
        "The ℓp nets are reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    seed_list = family_seeds("vgg", scale, seeds, first_seed)
    trials = [run_trial(CLAIM_ID, "vgg", scale, norm, seed) for norm in NORMS for seed in seed_list]
    config = {"runs": {"vgg": run_settings("vgg", scale)}, "norms": list(NORMS), "margin": MARGIN}
    return base.Plan(CLAIM_ID, scale, seed_list, config, tuple(trials))


def _runs(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, list[dict[str, Any]]]:
    return {n: [results[f"vgg/{n}/seed={s}"] for s in plan.seeds] for n in NORMS}


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    runs = _runs(plan, results)
    auc = {n: [finite_mean(r["curves"]["test_acc"]) for r in runs[n]] for n in NORMS}
    final = {n: [r["final"].get("test_acc") for r in runs[n]] for n in NORMS}
    drift = {n: [moment_drift(r["activations"]) for r in runs[n]] for n in NORMS}
    primary = {"noisy_vs_none": stats.paired_differences(auc["noisy_bn"], auc["none"]),
               "noisy_vs_bn": stats.paired_differences(auc["noisy_bn"], auc["bn"]),
               "manipulation": stats.paired_log_ratios(drift["noisy_bn"], drift["none"]),
               "control": stats.paired_differences(auc["none"], auc["noise"])}
    secondary = {f"A({LABELS[n]}) − A(no BN)": {"values": stats.paired_differences(auc[n], auc["none"]),
                                                 "unit": "accuracy"} for n in ("l1", "l2", "linf")}
    secondary["final test accuracy, noisy BN − BN"] = {
        "values": stats.paired_differences(final["noisy_bn"], final["bn"]), "unit": "accuracy"}
    secondary["log(activation drift noisy BN / BN)"] = {
        "values": stats.paired_log_ratios(drift["noisy_bn"], drift["bn"]), "unit": "log ratio",
        "note": "the old manipulation check: BN's drift is ≈ 0 by construction"}
    return {"primary": primary, "secondary": secondary, "mean_test_acc": auc, "final_test_acc": final,
            "activation_drift": drift}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    """The gates (manipulation check, control) first: not supported -> inconclusive; then superiority and
    equivalence combined by stats.combine (see RULE)."""
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
    names = {"noisy_vs_none": "noisy BN − no BN", "noisy_vs_bn": "noisy BN − BN (equivalence)",
             "manipulation": "manipulation check", "control": "no BN − noise on no BN"}
    parts = "; ".join(f"{names[r.setting]} {base.brief(r, 3)}" for r in decision.primary)
    summary = f"Mean test accuracy over training and activation drift, per seed: {parts}. Verdict: {decision.verdict}."
    c = plan.config["runs"]["vgg"]["config"]
    method = (f"VGG ({c['model_kwargs']['config']}) on {c['dataset']}, SGD lr {c['lr']}, batch {c['batch_size']}, "
              f"{c['steps']} steps, {len(plan.seeds)} seeds, with each of: {', '.join(LABELS[n] for n in NORMS)}. "
              "Noise per step and unit μ_t ~ U(−0.5, 0.5), σ_t ~ U(1, 1.25); per element m ~ U(μ_t ± 0.1), "
              f"s ~ N(σ_t, 0.1); a ← s·a + m. Activation statistics of the last conv block's pre-activation every "
              f"{plan.config['runs']['vgg']['probe_every']} steps on the training batch, as training sees it.")
    caveats = [f"The equivalence margin (±{MARGIN} accuracy) is half of the BN advantage Santurkar et al. report; they "
               "judge Fig. 2 by eye."]
    if plan.scale != "paper":
        caveats.append(f"Scale '{plan.scale}': a narrow VGG on a small data set for {c['steps']} steps, not VGG on "
                       "CIFAR-10 for 15k steps; on an easy data set all nets can end close together.")
    return base.Description(summary, method, caveats)
