"""C05 — "BN makes the loss smoother (Lipschitz)" (Santurkar et al. 2018, Sec. 3.1, Fig. 4a).

What is measured. At probe times during training, on the step's own batch, the loss is evaluated at w − ηg for K
step sizes (`bnlab.probes.along_gradient`, BN with batch statistics, running statistics untouched): VGG
η ∈ [½, 4] × lr, deep linear net η ∈ [1/100, 30] × lr (Santurkar's ranges). The *loss variation* at a probe time is
the width of that band, max_η L − min_η L.

Primary endpoint. Per net (VGG, deep linear net) and seed: the mean over probe times of log(loss variation) without
BN minus the same with BN — the log of the ratio of geometric means, paired by seed. Averaging in log space keeps
one heavy-tailed probe time (the no-BN net's band reaches 10¹⁰ early on) from deciding alone. Positive: BN smoother.

Rule (RULE below, `decide`): per net, the 95% t-interval of the mean effect over seeds wholly above 0 -> supported,
wholly below 0 -> refuted, otherwise inconclusive; the nets combined by `stats.combine`. Secondary (never voting):
Santurkar's ℓ1, ℓ2, ℓ∞ normalisations against no BN on the VGG, and the loss variation relative to the loss at w.
The runs are shared with C03, C04 and C06 (`bnlab.experiments.probed_training`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.experiments import base, stats
from bnlab.experiments.probed_training import (
    ETA_RANGES,
    family_seeds,
    run_settings,
    run_trial,
    seed_band,
)

CLAIM_ID = "C05"
TITLE = "BN makes the loss smoother (Lipschitz)"
NORMS: dict[str, tuple[str, ...]] = {"vgg": ("bn", "none", "l1", "l2", "linf"), "dln": ("bn", "none")}
FAMILY_NAMES: dict[str, str] = {"vgg": "VGG", "dln": "deep linear net"}
LABELS: dict[str, str] = {"bn": "BN", "none": "no BN", "l1": "ℓ1 norm", "l2": "ℓ2 norm", "linf": "ℓ∞ norm"}

PROTOCOL = base.Protocol(
    endpoint=base.Endpoint(
        name="log(loss variation without BN / with BN)",
        measure="per seed: mean over probe times of log(max_η L(w − ηg) − min_η L(w − ηg)) without BN, minus the "
                "same with BN (same batch, BN with batch statistics)",
        unit="log ratio", test="t", threshold=0.0,
        threshold_source="0 = equal smoothness; Santurkar Fig. 4a predicts a narrower band with BN (effect > 0)",
        settings=("vgg", "dln"), setting_costs={"dln": "cheap"}),
    cost="costly",
    secondary=("ℓ1 / ℓ2 / ℓ∞ normalisation vs no BN on the VGG (same measure)",
               "loss variation relative to the loss at w (BN vs no BN), per net"),
    runs="bnlab's narrow VGG on sklearn digits (SGD lr 0.1, batch 64, 300 steps, 5 seeds) and Santurkar's 25-layer "
         "deep linear net (summed squared loss, full-batch GD lr 1e-6, 2000 steps, 8 seeds); 8 step sizes per "
         "probe time, geometrically spaced",
    paper="Santurkar et al.: VGG on CIFAR-10 (SGD lr 0.1, batch 128, 15k steps) and the same deep linear net for "
          "10k steps. The default scale keeps the DLN's data, loss scale and lr and runs fewer steps; the VGG is a "
          "narrow one on 8x8 digits (the paper scale runs VGG-11 on CIFAR-10).",
    why="Averaging raw loss variations over probe times let one heavy-tailed probe time decide; the mean of logs "
        "(geometric mean) does not. The DLN now runs Santurkar's protocol (summed loss, lr 1e-6) instead of lr 0.05 "
        "on a mean loss, where the probes reached step sizes at which the no-BN loss was 10⁶.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.69, base.FACTOR_TWO)

RULE = ("Per net (VGG, deep linear net) and seed: effect = mean over probe times of log(loss variation) without BN "
        "minus with BN. Per net: the 95% t-interval of the mean effect over seeds wholly above 0 -> supported, wholly "
        "below 0 -> refuted, otherwise inconclusive. The claim: supported only when both nets are; refuted when one "
        "is and none supported; one supported and one refuted -> mixed; otherwise inconclusive. ℓp nets and the "
        "relative variation are reported, never voted.")


def shared_trials(claim: str, scale: str, seeds: int | None, first_seed: int = 0) -> list[Any]:
    """The along-gradient runs of C05 and C06 (identical parameters, so the audit runs them once)."""
    return [run_trial(claim, family, scale, norm, seed) for family, norms in NORMS.items() for norm in norms
            for seed in family_seeds(family, scale, seeds, first_seed)]


def plan_config(scale: str, seeds: int | None, first_seed: int) -> dict[str, Any]:
    return {"runs": {f: run_settings(f, scale) for f in NORMS}, "norms": {f: list(n) for f, n in NORMS.items()},
            "eta_ranges": {f: list(ETA_RANGES[f]) for f in NORMS},
            "seeds": {f: list(family_seeds(f, scale, seeds, first_seed)) for f in NORMS}}


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    config = plan_config(scale, seeds, first_seed)
    return base.Plan(CLAIM_ID, scale, tuple(config["seeds"]["dln"]), config,
                tuple(shared_trials(CLAIM_ID, scale, seeds, first_seed)))


# ----------------------------------------------------------------------------- measure


def runs_of(plan: base.Plan, results: Mapping[str, dict], family: str) -> dict[str, list[dict[str, Any]]]:
    return {n: [results[f"{family}/{n}/seed={s}"] for s in plan.config["seeds"][family]] for n in NORMS[family]}


def log_means(plan: base.Plan, results: Mapping[str, dict], key: str) -> dict[str, dict[str, list[float]]]:
    """Per net and norm, per seed: the mean over probe times of log(`key`) (an along-gradient series)."""
    return {family: {n: [stats.log_mean(r["along_gradient"][key]) for r in runs]
                     for n, runs in runs_of(plan, results, family).items()}
            for family in NORMS}


def effects(logs: Mapping[str, Mapping[str, list[float]]], family: str, norm: str) -> list[float]:
    """Per seed: log-mean without BN minus log-mean with `norm` (positive: `norm` is the smoother)."""
    return stats.paired_differences(logs[family]["none"], logs[family][norm])


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    lv = log_means(plan, results, "loss_variation")
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
                "note": "a run that diverges before a finite probe gives no loss variation: its seed is left out"}
        secondary[f"log(relative loss variation no BN / BN) [{family}]"] = {
            "values": effects(relative, family, "bn"), "unit": "log ratio",
            "note": "loss variation divided by the lowest loss along −g, so a lower loss level alone cannot shrink it"}
    return {"primary": {family: effects(lv, family, "bn") for family in NORMS}, "secondary": secondary,
            "log_mean_loss_variation": lv}


# ----------------------------------------------------------------------------- decide


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


# ----------------------------------------------------------------------------- figures and words


def band_figure(fig_id: str, title: str, caption: str, plan: base.Plan, results: Mapping[str, dict], low: str,
                high: str, scalar: str, band_label: str, scalar_label: str) -> base.Figure:
    """Santurkar Fig. 4 style: per net, the min–max band over step sizes (first seed) and the band width over
    training (mean over seeds with the min–max band)."""
    panels = []
    for family in NORMS:
        runs = runs_of(plan, results, family)
        band_series = []
        for n in ("bn", "none"):
            ag = runs[n][0]["along_gradient"]
            mid = [None if a is None or b is None else (a + b) / 2 for a, b in zip(ag[low], ag[high])]
            band_series.append({"label": LABELS[n], "x": ag["step"], "y": mid, "lo": ag[low], "hi": ag[high]})
        panels.append({"title": f"{FAMILY_NAMES[family]}: {band_label} (seed {plan.config['seeds'][family][0]})",
                       "xlabel": "step", "ylabel": band_label, "yscale": "log", "series": band_series})
        panels.append({"title": f"{FAMILY_NAMES[family]}: {scalar_label}", "xlabel": "step", "ylabel": scalar_label,
                       "yscale": "log",
                       "series": [seed_band([r["along_gradient"]["step"] for r in runs[n]],
                                            [r["along_gradient"][scalar] for r in runs[n]], LABELS[n])
                                  for n in NORMS[family]]})
    return base.Figure(fig_id, "lines", title, caption, {"panels": panels})


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    return [band_figure("santurkar_fig4a", "Santurkar Fig. 4a: loss along the gradient",
                        "Left of each pair: min–max over the step sizes of L(w − ηg) on the step's batch (first "
                        "seed); right: its width (loss variation), mean over seeds with min–max band.",
                        plan, results, "loss_min", "loss_max", "loss_variation", "loss along −g", "loss variation")]


def method_text(plan: base.Plan) -> str:
    vgg, dln = plan.config["runs"]["vgg"], plan.config["runs"]["dln"]
    v, d = vgg["config"], dln["config"]
    return (f"VGG ({v['model_kwargs']['config']}) on {v['dataset']}, SGD lr {v['lr']}, batch {v['batch_size']}, "
            f"{v['steps']} steps, BN / none / ℓ1 / ℓ2 / ℓ∞, {len(plan.config['seeds']['vgg'])} seeds; "
            f"{d.get('model_kwargs', {}).get('depth', 25)}-layer deep linear net on {d['dataset']} "
            f"({d['dataset_kwargs']['train_size']} examples), summed squared loss, full-batch GD lr {d['lr']:g}, "
            f"{d['steps']} steps, BN / none, {len(plan.config['seeds']['dln'])} seeds. Every {vgg['probe_every']} "
            f"(VGG) / {dln['probe_every']} (DLN) steps: {vgg['k']} step sizes spaced geometrically over "
            "η ∈ [½, 4]×lr (VGG) and [1/100, 30]×lr (DLN), BN with batch statistics.")


def scale_caveats(plan: base.Plan) -> list[str]:
    if plan.scale == "paper":
        return []
    return [f"Scale '{plan.scale}': a narrow VGG on 8x8 digits for {plan.config['runs']['vgg']['config']['steps']} "
            "steps, not VGG on CIFAR-10 for 15k; the deep linear net runs Santurkar's protocol for "
            f"{plan.config['runs']['dln']['config']['steps']} of his 10k steps. Santurkar's gaps (up to two orders of "
            "magnitude early in training) need not appear at this size."]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    parts = [f"{FAMILY_NAMES[f]} {base.brief(r)}" for f, r in zip(NORMS, decision.primary)]
    summary = (f"Mean log(loss variation without BN / with BN): {'; '.join(parts)}. Positive means the loss varies "
               f"less along the gradient with BN. Verdict: {decision.verdict}.")
    caveats = ["Loss variation also scales with the loss level (a net that has trained further has smaller losses "
               "to vary); the variation relative to the loss at w is reported as a secondary check.",
               "A probe time whose band is not finite (a diverged step size) is left out of that run's mean of logs, "
               "which biases the effect towards zero, never away from it.", *scale_caveats(plan)]
    return base.Description(summary, method_text(plan), caveats)
