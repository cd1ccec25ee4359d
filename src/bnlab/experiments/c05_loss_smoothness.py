"""C05 — "BN makes the loss smoother (Lipschitz)" (Santurkar et al. 2018, Sec. 3.1, Fig. 4a).

At probe times during training, on the step's own batch, the loss is evaluated at w − ηg for K step sizes
(VGG: η ∈ [½, 4] × lr; deep linear net: η ∈ [1/100, 30] × lr; `bnlab.probes.along_gradient`, BN with batch
statistics). The *loss variation* is the width of that band, max_η L − min_η L. Per run it is averaged over probe
times; per seed the effect is log(loss variation without BN / with BN) (positive: BN smoother). Santurkar's ℓ1, ℓ2,
ℓ∞ normalisations are measured beside BN on the VGG. These runs are shared with C03, C04 and C06.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.experiments.base import ClaimResult, Figure, KeyNumber, Plan, combine_verdicts, seeds_for, verdict_from_ci
from bnlab.experiments.probed_training import (
    ETA_RANGES,
    finite_ci,
    finite_mean,
    log_ratio,
    run_settings,
    run_trial,
    seed_band,
)
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C05"
TITLE = "BN makes the loss smoother (Lipschitz)"
NORMS: dict[str, tuple[str, ...]] = {"vgg": ("bn", "none", "l1", "l2", "linf"), "dln": ("bn", "none")}
FAMILY_NAMES: dict[str, str] = {"vgg": "VGG", "dln": "deep linear net"}
LABELS: dict[str, str] = {"bn": "BN", "none": "no BN", "l1": "ℓ1 norm", "l2": "ℓ2 norm", "linf": "ℓ∞ norm"}

RULE = (
    "Per seed and net, the loss variation (max − min over the step sizes of L(w − ηg)) is averaged over probe times; "
    "effect = log(no-BN / BN). VGG and DLN each: 95% CI wholly > 0 -> supported, wholly < 0 -> refuted, else "
    "inconclusive. Verdict: combine_verdicts(VGG, DLN). The ℓp nets are reported, not voted."
)


def shared_trials(claim: str, scale: str, seeds: tuple[int, ...]) -> list[Trial]:
    """The along-gradient runs of C05 and C06 (identical parameters, so the audit runs them once)."""
    return [run_trial(claim, family, scale, norm, seed)
            for family, norms in NORMS.items() for norm in norms for seed in seeds]


def plan(scale: str, seeds: int) -> Plan:
    seed_list = seeds_for(seeds)
    config = {"runs": {f: run_settings(f, scale) for f in NORMS}, "norms": {f: list(n) for f, n in NORMS.items()},
              "eta_ranges": {f: list(ETA_RANGES[f]) for f in NORMS}}
    return Plan(claim=CLAIM_ID, scale=scale, seeds=seed_list, config=config,
                trials=tuple(shared_trials(CLAIM_ID, scale, seed_list)))


def runs_of(plan: Plan, results: Mapping[str, dict], family: str) -> dict[str, list[dict[str, Any]]]:
    return {n: [results[f"{family}/{n}/seed={s}"] for s in plan.seeds] for n in NORMS[family]}


def compare(plan: Plan, results: Mapping[str, dict], key: str) -> dict[str, Any]:
    """Per net, per seed, the along-gradient `key` averaged over probe times, and the no-BN/BN log ratio with its CI
    and verdict (the rule of C05/C06); the ℓp nets against no BN as well."""
    out: dict[str, Any] = {}
    for family in NORMS:
        runs = runs_of(plan, results, family)
        per_run = {n: [finite_mean(r["along_gradient"][key]) for r in runs[n]] for n in runs}
        effects = {}
        for n in runs:
            if n == "none":
                continue
            ci = finite_ci([log_ratio(a, b) for a, b in zip(per_run["none"], per_run[n])])
            effects[n] = {"mean": ci[0], "ci_low": ci[1], "ci_high": ci[2], "verdict": verdict_from_ci(ci[1], ci[2])}
        out[family] = {"per_run": per_run, "log_none_over": effects, "verdict": effects["bn"]["verdict"]}
    return out


def relative_loss_variation(plan: Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    """Robustness check: loss variation divided by the loss at w, so a lower loss level alone cannot shrink it."""
    out = {}
    for family in NORMS:
        runs = runs_of(plan, results, family)
        rel = {}
        for n in ("bn", "none"):
            vals = []
            for r in runs[n]:
                ag = r["along_gradient"]
                lo = [v for v in ag["loss_min"]]
                ratios = [lv / m for lv, m in zip(ag["loss_variation"], lo) if lv is not None and m]
                vals.append(finite_mean(ratios))
            rel[n] = vals
        ci = finite_ci([log_ratio(a, b) for a, b in zip(rel["none"], rel["bn"])])
        out[family] = {"per_run": rel, "log_none_over_bn": {"mean": ci[0], "ci_low": ci[1], "ci_high": ci[2]}}
    return out


def band_figure(fig_id: str, title: str, caption: str, plan: Plan, results: Mapping[str, dict], low: str, high: str,
                scalar: str, band_label: str, scalar_label: str) -> Figure:
    """Santurkar Fig. 4 style: per net, the min–max band over step sizes (first seed) and the band width over
    training (mean over seeds)."""
    panels = []
    for family in NORMS:
        runs = runs_of(plan, results, family)
        band_series = []
        for n in ("bn", "none"):
            ag = runs[n][0]["along_gradient"]
            mid = [None if a is None or b is None else (a + b) / 2 for a, b in zip(ag[low], ag[high])]
            band_series.append({"label": LABELS[n], "x": ag["step"], "y": mid, "lo": ag[low], "hi": ag[high]})
        panels.append({"title": f"{FAMILY_NAMES[family]}: {band_label} (seed {plan.seeds[0]})", "xlabel": "step",
                       "ylabel": band_label, "yscale": "log", "series": band_series})
        panels.append({"title": f"{FAMILY_NAMES[family]}: {scalar_label}", "xlabel": "step", "ylabel": scalar_label,
                       "yscale": "log",
                       "series": [seed_band([r["along_gradient"]["step"] for r in runs[n]],
                                            [r["along_gradient"][scalar] for r in runs[n]], LABELS[n])
                                  for n in NORMS[family]]})
    return Figure(fig_id, "lines", title, caption, {"panels": panels})


def scale_caveats(plan: Plan) -> list[str]:
    if plan.scale == "paper":
        return []
    vgg, dln = plan.config["runs"]["vgg"]["config"], plan.config["runs"]["dln"]["config"]
    return [f"Scale '{plan.scale}': VGG ({vgg['model_kwargs']['config']}) on {vgg['dataset']} for {vgg['steps']} steps "
            f"and the DLN for {dln['steps']} full-batch steps at lr {dln['lr']}, not VGG on CIFAR-10 for 15k steps and "
            "the DLN for 10k steps; Santurkar's gaps (up to two orders of magnitude early in training) need not "
            "appear at this size, and few probe times make the averages coarse."]


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    lv = compare(plan, results, "loss_variation")
    verdict = combine_verdicts([lv[f]["verdict"] for f in NORMS])
    rel = relative_loss_variation(plan, results)
    vgg_bn = lv["vgg"]["log_none_over"]["bn"]
    dln_bn = lv["dln"]["log_none_over"]["bn"]
    lp = ", ".join(f"{LABELS[n]} {lv['vgg']['log_none_over'][n]['mean']:+.2f}" for n in ("l1", "l2", "linf"))
    summary = (f"log(loss variation no BN / BN): VGG {vgg_bn['mean']:+.2f} ({lv['vgg']['verdict']}), DLN "
               f"{dln_bn['mean']:+.2f} ({lv['dln']['verdict']}); ℓp nets vs no BN on the VGG: {lp}.")
    caveats = [
        "Loss variation also scales with the loss level (a net that has trained further has smaller losses to vary); "
        "the metrics add the variation relative to the loss at w as a check.",
        *scale_caveats(plan),
    ]
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict, rule=RULE, summary=summary, method=method_text(plan),
        key_number=KeyNumber("VGG: log(loss variation no BN / BN)", vgg_bn["mean"], vgg_bn["ci_low"],
                             vgg_bn["ci_high"]),
        metrics={"loss_variation": lv, "relative_loss_variation": rel,
                 "verdicts": {f: lv[f]["verdict"] for f in NORMS}},
        figures=[band_figure("santurkar_fig4a", "Santurkar Fig. 4a: loss along the gradient",
                             "Left of each pair: min–max over the step sizes of L(w − ηg) on the step's batch (first "
                             "seed); right: its width (loss variation), mean over seeds with min–max band.",
                             plan, results, "loss_min", "loss_max", "loss_variation", "loss along −g",
                             "loss variation")],
        caveats=caveats,
    )


def method_text(plan: Plan) -> str:
    vgg, dln = plan.config["runs"]["vgg"], plan.config["runs"]["dln"]
    return (f"VGG ({vgg['config']['model_kwargs']['config']}) on {vgg['config']['dataset']}, SGD lr "
            f"{vgg['config']['lr']}, batch {vgg['config']['batch_size']}, {vgg['config']['steps']} steps, "
            "BN / none / ℓ1 / ℓ2 / ℓ∞; 25-layer deep linear net on dln_regression, full-batch GD lr "
            f"{dln['config']['lr']}, "
            f"{dln['config']['steps']} steps, BN / none. Every {vgg['probe_every']} (VGG) / {dln['probe_every']} (DLN) "
            f"steps: {vgg['k']} step sizes spaced geometrically over η ∈ [½, 4]×lr (VGG) and [1/100, 30]×lr (DLN), "
            f"BN with batch statistics, {len(plan.seeds)} seeds.")
