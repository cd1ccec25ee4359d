"""C04 — "ICS is not the main reason BN helps" (Santurkar et al. 2018, Sec. 2.1, Fig. 2).

The same VGG is trained with BN, with *noisy* BN (BN followed by time-varying, non-zero-mean, non-unit-variance
noise, `bnlab.layers.noisy`: a distribution shift injected on purpose), without BN, and without BN but with the same
noise, with Santurkar's ℓ1/ℓ2/ℓ∞ normalisations beside them. Per run: the test-accuracy curve, and the *activation
drift* of the last conv block's pre-activation on the training batches, exactly as training sees it (noise
included): the mean over four units and consecutive probe times of |Δ mean| + |Δ std|
(`probed_training.moment_drift`).

Accuracy is summarised per run by the mean test accuracy over all evaluations (the area under the accuracy curve,
which rewards fast training as Fig. 2's curves do); the final test accuracy is in the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.experiments.base import ClaimResult, Figure, KeyNumber, Plan, combine_verdicts, seeds_for, verdict_from_ci
from bnlab.experiments.probed_training import (
    finite_ci,
    finite_mean,
    log_ratio,
    moment_drift,
    run_settings,
    run_trial,
    seed_band,
)

CLAIM_ID = "C04"
TITLE = "ICS is not the main reason BN helps"
NORMS: tuple[str, ...] = ("bn", "noisy_bn", "none", "noise", "l1", "l2", "linf")
LABELS: dict[str, str] = {"bn": "BN", "noisy_bn": "noisy BN", "none": "no BN", "noise": "noise only",
                          "l1": "ℓ1 norm", "l2": "ℓ2 norm", "linf": "ℓ∞ norm"}
MARGIN = 0.02  # "about as well": noisy BN's mean test accuracy at most 2 points below BN's

RULE = (
    "Per seed, A = mean test accuracy over all evaluations. (1) noisy BN beats no BN: 95% CI of A(noisy BN) − A(no BN) "
    "wholly > 0 -> supported, wholly < 0 -> refuted. (2) noisy BN trains about as well as BN: CI of "
    f"A(BN) − A(noisy BN) wholly < {MARGIN} -> supported, wholly > {MARGIN} -> refuted. (3) Manipulation check: the "
    "noise must really move the distributions: CI of log(drift noisy BN / drift BN) wholly > 0. "
    "Verdict: when (3) holds, combine_verdicts of (1) and (2); otherwise 'inconclusive' (the injected shift was "
    "not measurable). Otherwise inconclusive."
)


def plan(scale: str, seeds: int) -> Plan:
    seed_list = seeds_for(seeds)
    trials = [run_trial(CLAIM_ID, "vgg", scale, norm, seed) for norm in NORMS for seed in seed_list]
    config = {"runs": {"vgg": run_settings("vgg", scale)}, "norms": list(NORMS), "margin": MARGIN}
    return Plan(claim=CLAIM_ID, scale=scale, seeds=seed_list, config=config, trials=tuple(trials))


def _runs(plan: Plan, results: Mapping[str, dict]) -> dict[str, list[dict[str, Any]]]:
    return {n: [results[f"vgg/{n}/seed={s}"] for s in plan.seeds] for n in NORMS}


def _ci_dict(ci: tuple) -> dict[str, Any]:
    return {"mean": ci[0], "ci_low": ci[1], "ci_high": ci[2]}


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    runs = _runs(plan, results)
    auc = {n: [finite_mean(r["curves"]["test_acc"]) for r in runs[n]] for n in NORMS}
    final = {n: [r["final"].get("test_acc") for r in runs[n]] for n in NORMS}
    drift = {n: [moment_drift(r["activations"]) for r in runs[n]] for n in NORMS}
    diverged = {n: [r["diverged_at_step"] for r in runs[n]] for n in NORMS}
    ci1 = finite_ci([a - b for a, b in zip(auc["noisy_bn"], auc["none"])])
    ci2 = finite_ci([a - b for a, b in zip(auc["bn"], auc["noisy_bn"])])
    ci3 = finite_ci([log_ratio(a, b) for a, b in zip(drift["noisy_bn"], drift["bn"])])
    v1 = verdict_from_ci(ci1[1], ci1[2])
    v2 = verdict_from_ci(None if ci2[2] is None else MARGIN - ci2[2], None if ci2[1] is None else MARGIN - ci2[1])
    v3 = verdict_from_ci(ci3[1], ci3[2])
    verdict = combine_verdicts([v1, v2]) if v3 == "supported" else "inconclusive"
    metrics = {
        "mean_test_acc": auc, "final_test_acc": final, "activation_drift": drift, "diverged_at_step": diverged,
        "noisy_minus_none": _ci_dict(ci1), "bn_minus_noisy": _ci_dict(ci2), "log_drift_noisy_over_bn": _ci_dict(ci3),
        "verdicts": {"noisy_beats_none": v1, "noisy_as_good_as_bn": v2, "noise_moves_distributions": v3},
    }
    mean = {n: finite_ci(auc[n])[0] for n in NORMS}
    summary = (
        f"Mean test accuracy over training: BN {mean['bn']:.3f}, noisy BN {mean['noisy_bn']:.3f}, no BN "
        f"{mean['none']:.3f}, noise only (no BN) {mean['noise']:.3f}; the noise raised the activation drift "
        f"{'' if ci3[0] > 0 else 'not '}above BN's (log ratio {ci3[0]:+.2f}). Noisy BN vs no BN: {v1}; "
        f"noisy BN as good as BN (margin {MARGIN}): {v2}."
    )
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict, rule=RULE, summary=summary, method=_method(plan),
        key_number=KeyNumber("mean test acc: noisy BN − no BN", ci1[0], ci1[1], ci1[2]),
        metrics=metrics, figures=_figures(plan, runs, drift), caveats=_caveats(plan),
    )


def _method(plan: Plan) -> str:
    vgg = plan.config["runs"]["vgg"]
    c = vgg["config"]
    return (
        f"VGG ({c['model_kwargs']['config']}) on {c['dataset']}, SGD lr {c['lr']}, batch {c['batch_size']}, "
        f"{c['steps']} steps, {len(plan.seeds)} seeds, with each of: {', '.join(LABELS[n] for n in NORMS)}. "
        "Noise per step and unit μ_t ~ U(−0.5, 0.5), σ_t ~ U(1, 1.25); per element m ~ U(μ_t ± 0.1), "
        "s ~ N(σ_t, 0.1); a ← s·a + m. "
        f"Activation statistics of the last conv block's pre-activation every {vgg['probe_every']} steps on the "
        "training batch, as training sees it."
    )


def _caveats(plan: Plan) -> list[str]:
    out = ["The equivalence margin (2 accuracy points) is a choice written before the run; Santurkar et al. judge "
           "Fig. 2 by eye."]
    if plan.scale != "paper":
        out.append(f"Scale '{plan.scale}': a narrow VGG on a small data set for "
                   f"{plan.config['runs']['vgg']['config']['steps']} steps, not VGG on CIFAR-10 for 15k steps; on an "
                   "easy data set all nets can end close together, which shrinks every accuracy difference.")
    return out


def _figures(plan: Plan, runs: dict[str, list[dict[str, Any]]], drift: dict[str, list[float]]) -> list[Figure]:
    acc = {"title": "test accuracy", "xlabel": "step", "ylabel": "test accuracy",
           "series": [seed_band([r["curves"]["eval_step"] for r in runs[n]], [r["curves"]["test_acc"] for r in runs[n]],
                                LABELS[n]) for n in NORMS]}
    loss = {"title": "training loss", "xlabel": "step", "ylabel": "train loss", "yscale": "log",
            "series": [seed_band([r["curves"]["step"] for r in runs[n]], [r["curves"]["train_loss"] for r in runs[n]],
                                 LABELS[n]) for n in ("bn", "noisy_bn", "none", "noise")]}
    act_panels = []
    for n in ("bn", "noisy_bn", "none", "noise"):
        a = runs[n][0]["activations"]
        mu = [m[0] for m in a["unit_mean"]]
        sd = [s[0] for s in a["unit_std"]]
        act_panels.append({"title": f"{LABELS[n]}: unit {a['units'][0]} of {a['module']}", "xlabel": "step",
                           "ylabel": "pre-activation mean ± std",
                           "series": [{"label": f"{LABELS[n]}: mean ± std", "x": a["step"], "y": mu,
                                       "lo": [m - s for m, s in zip(mu, sd)], "hi": [m + s for m, s in zip(mu, sd)]}]})
    bars = {"title": "activation drift (mean |Δ mean| + |Δ std| between probes)", "ylabel": "drift",
            "categories": [LABELS[n] for n in NORMS],
            "groups": [{"label": "mean over seeds", "values": [finite_ci(drift[n])[0] for n in NORMS],
                        "lo": [min(drift[n]) for n in NORMS], "hi": [max(drift[n]) for n in NORMS]}]}
    return [
        Figure("santurkar_fig2_curves", "lines", "Santurkar Fig. 2: training with injected distribution shift",
               "Test accuracy and training loss; mean over seeds, band min–max.", {"panels": [acc, loss]}),
        Figure("santurkar_fig2_activations", "lines", "Activation distributions over training (first seed)",
               "Mean ± std of one unit's pre-activation on the training batch as training sees it: noisy BN moves "
               "it at every step while BN keeps it at (β, γ).", {"panels": act_panels}),
        Figure("activation_drift", "bars", "Activation drift per net",
               "Mean over units and consecutive probe times of |Δ mean| + |Δ std| of the pre-activation.",
               {"panels": [bars]}),
    ]
