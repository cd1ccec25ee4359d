"""The along-gradient measures C05 and C06 share (Santurkar et al. 2018, Sec. 3.1, Fig. 4): the runs they plan (the
VGG with BN, none and the ℓp norms, and the deep linear net; `bnlab.experiments.probed_training`), the per-seed
log-mean effects of an along-gradient series, the Fig. 4 band figure and the words that describe the runs.

C05 and C06 plan byte-identical trials (`shared_trials`), so the audit runs them once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bnlab.experiments import base, outcomes, stats
from bnlab.experiments.probed_training import ETA_RANGES, family_seeds, run_settings, run_trial, seed_band

NORMS: dict[str, tuple[str, ...]] = {"vgg": ("bn", "none", "l1", "l2", "linf"), "dln": ("bn", "none")}
FAMILY_NAMES: dict[str, str] = {"vgg": "VGG", "dln": "deep linear net"}
LABELS: dict[str, str] = {"bn": "BN", "none": "no BN", "l1": "ℓ1 norm", "l2": "ℓ2 norm", "linf": "ℓ∞ norm"}
# the runs and the paper, as C05's and C06's protocols state them
RUNS_TEXT = ("bnlab's narrow VGG on sklearn digits (SGD lr 0.1, batch 64, 300 steps, 5 seeds) and Santurkar's 25-layer "
             "deep linear net (summed squared loss, full-batch GD lr 1e-6, 2000 steps, 8 seeds); 8 step sizes per "
             "probe time, geometrically spaced")
PAPER_TEXT = ("Santurkar et al.: VGG on CIFAR-10 (SGD lr 0.1, batch 128, 15k steps) and the same deep linear net for "
              "10k steps. The default scale keeps the DLN's data, loss scale and lr and runs fewer steps; the VGG is a "
              "narrow one on 8x8 digits (the paper scale runs VGG-11 on CIFAR-10).")


def shared_trials(claim: str, scale: str, seeds: int | None, first_seed: int = 0) -> list[Any]:
    """The along-gradient runs of C05 and C06 (identical parameters, so the audit runs them once)."""
    return [run_trial(claim, family, scale, norm, seed) for family, norms in NORMS.items() for norm in norms
            for seed in family_seeds(family, scale, seeds, first_seed)]


def plan_config(scale: str, seeds: int | None, first_seed: int) -> dict[str, Any]:
    return {"runs": {f: run_settings(f, scale) for f in NORMS}, "norms": {f: list(n) for f, n in NORMS.items()},
            "eta_ranges": {f: list(ETA_RANGES[f]) for f in NORMS},
            "seeds": {f: list(family_seeds(f, scale, seeds, first_seed)) for f in NORMS}}


def runs_of(plan: base.Plan, results: Mapping[str, dict], family: str) -> dict[str, list[dict[str, Any]]]:
    return {n: [results[f"{family}/{n}/seed={s}"] for s in plan.config["seeds"][family]] for n in NORMS[family]}


def log_means(plan: base.Plan, results: Mapping[str, dict], key: str) -> dict[str, dict[str, list[float]]]:
    """Per net and norm, per seed: the mean over probe times of log(`key`) (an along-gradient series)."""
    return {family: {n: [stats.log_mean(r["along_gradient"][key]) for r in runs]
                     for n, runs in runs_of(plan, results, family).items()}
            for family in NORMS}


def effects(logs: Mapping[str, Mapping[str, list[float]]], family: str, norm: str) -> list[float]:
    """Per seed: log-mean without BN minus log-mean with `norm` (positive: `norm` is the smoother); NaN where
    either is missing (the secondary results' treatment: such a seed is left out of them)."""
    return stats.paired_differences(logs[family]["none"], logs[family][norm])


def failures(plan: base.Plan, results: Mapping[str, dict], key: str) -> dict[str, dict[str, list[bool]]]:
    """Per net and norm, per seed: whether the run failed for the along-gradient series `key` -- it diverged, or
    one of its probe times gave no finite number (a step size whose loss or gradient diverged), or the series has
    no positive finite value to take the log of (`bnlab.experiments.outcomes.failed`)."""
    return {family: {n: [outcomes.failed(r["diverged_at_step"] is not None, *r["along_gradient"][key],
                                         stats.log_mean(r["along_gradient"][key])) for r in runs]
                     for n, runs in runs_of(plan, results, family).items()}
            for family in NORMS}


def worst_effects(logs: Mapping[str, Mapping[str, list[float]]], fails: Mapping[str, Mapping[str, list[bool]]],
                  family: str, norm: str = "bn") -> list[float]:
    """The primary per-seed values: `effects`, with a failed run (`failures`) as the worst outcome for the net that
    failed (`outcomes.paired_worst`): only the no-BN run failed -> +inf, only the `norm` run -> -inf, both -> 0
    (a tie). Never a missing seed."""
    return outcomes.paired_worst_values(effects(logs, family, norm), fails[family][norm], fails[family]["none"])


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


def per_net_factors(results: Sequence[base.Result]) -> str:
    """'VGG +3.80 [+3.38, +4.23] (supported) (×44.9); deep linear net ...': one log-ratio result per net (NORMS
    order) with exp(effect) as a factor for prose, 'n/a' where a net has no effect."""
    def factor(r: base.Result) -> str:
        return "n/a" if r.effect is None else f"{math.exp(r.effect):.3g}"

    return "; ".join(f"{FAMILY_NAMES[f]} {base.brief(r)} (×{factor(r)})" for f, r in zip(NORMS, results))
