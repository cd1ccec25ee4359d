"""C13: does BN converge faster to a good minimum?

Protocol: the learning-rate sweeps of C07 (the same trials, deduplicated by the audit), with and without BN. For
each run, the steps to reach the setting's target test accuracy are read off its evaluation curve (evaluated every
`eval_every` steps); a run that never reaches it (or diverges first) is censored at steps + eval_every. Each net is
then compared at its own best learning rate: the grid lr with the fewest mean steps to the target over seeds.
Default scale: Ioffe's MNIST net on mnist5k; paper scale: 50k steps at batch 60 (Ioffe Fig. 1) plus VGG-11 on
CIFAR-10 (Santurkar et al.). Reference: Ioffe & Szegedy report 14x fewer steps for BN-Inception on ImageNet.

Rule (written before the run): per setting and seed, r = ln(steps to target without BN / steps with BN), each at
its net's best lr. **supported** if the 95% CI of mean r lies above 0, **refuted** if it lies below 0,
**inconclusive** otherwise; settings combined with `combine_verdicts`. Key number: the speed-up exp(mean r).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bnlab.config import from_mapping, to_mapping
from bnlab.errors import BnlabError
from bnlab.experiments.base import (
    SCALES,
    ClaimResult,
    Figure,
    KeyNumber,
    Plan,
    combine_verdicts,
    mean_ci,
    seeds_for,
    verdict_from_ci,
)
from bnlab.experiments.c07_learning_rate import CONFIGS as C07_CONFIGS
from bnlab.experiments.c07_learning_rate import NORMS, LrSetting, lr_trials, trial_name

CLAIM_ID = "C13"
TITLE = "BN converges faster to a good minimum"


@dataclass(frozen=True)
class C13Config:
    settings: tuple[LrSetting, ...]
    target_accs: tuple[float, ...]  # one target test accuracy per setting


CONFIGS: dict[str, C13Config] = {
    "smoke": C13Config(settings=C07_CONFIGS["smoke"].settings, target_accs=(0.5,)),
    "default": C13Config(settings=C07_CONFIGS["default"].settings, target_accs=(0.88,)),
    "paper": C13Config(settings=C07_CONFIGS["paper"].settings, target_accs=(0.95, 0.8)),
}


def config_for(scale: str) -> C13Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    if len(cfg.target_accs) != len(cfg.settings):
        raise BnlabError("C13: one target accuracy per setting")
    seed_list = seeds_for(seeds)
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), lr_trials(CLAIM_ID, cfg.settings, seed_list))


def steps_to_target(rec: Mapping[str, Any], target: float, censor: int) -> tuple[int, bool]:
    """(first evaluated step with test accuracy >= target, reached?); (censor, False) when never reached before
    the run ended or diverged. Step 0 counts as 1 so that log-ratios stay finite."""
    end = rec["diverged_at_step"]
    for step, acc in zip(rec["eval_step"], rec["test_acc_curve"]):
        if end is not None and step > end:
            break
        if math.isfinite(acc) and acc >= target:
            return max(int(step), 1), True  # reached before training (step 0) counts as 1 step: ratios stay finite
    return censor, False


def summarize_setting(s: LrSetting, target: float, seeds: Sequence[int], results: Mapping[str, dict]) -> dict:
    censor = s.steps + s.eval_every
    steps: dict[tuple[str, float], list[int]] = {}
    reached: dict[tuple[str, float], int] = {}
    for norm, _ in NORMS:
        for lr in s.lrs:
            pairs = [steps_to_target(results[trial_name(s, norm, lr, seed)], target, censor) for seed in seeds]
            steps[norm, lr] = [p[0] for p in pairs]
            reached[norm, lr] = sum(p[1] for p in pairs)
    best = {norm: min(s.lrs, key=lambda lr, norm=norm: (sum(steps[norm, lr]) / len(seeds), -reached[norm, lr]))
            for norm, _ in NORMS}
    log_ratio = [math.log(a / b) for a, b in zip(steps["none", best["none"]], steps["bn", best["bn"]])]
    r, lo, hi = mean_ci(log_ratio)
    verdict = verdict_from_ci(lo, hi, 0.0)

    steps_series, curve_series = [], []
    for norm, label in NORMS:
        steps_series.append({"label": label, "x": list(s.lrs), "y": [sum(steps[norm, lr]) / len(seeds)
                                                                     for lr in s.lrs]})
        recs = [results[trial_name(s, norm, best[norm], seed)] for seed in seeds]
        n = min(len(rc["test_acc_curve"]) for rc in recs)
        xs, ys = [], []
        for i in range(n):
            m = sum(rc["test_acc_curve"][i] for rc in recs) / len(recs)
            if not math.isfinite(m):
                break
            xs.append(recs[0]["eval_step"][i])
            ys.append(m)
        curve_series.append({"label": f"{label} (lr {best[norm]:g})", "x": xs, "y": ys})
    curve_series.append({"label": f"target {target:g}", "x": [0, s.steps], "y": [target, target]})
    return {
        "verdict": verdict, "log_ratio": r, "ci": [lo, hi], "log_ratios": log_ratio,
        "speedup": math.exp(r), "speedup_ci": [None if lo is None else math.exp(lo),
                                               None if hi is None else math.exp(hi)],
        "best_lr_bn": best["bn"], "best_lr_none": best["none"],
        "steps_bn": steps["bn", best["bn"]], "steps_none": steps["none", best["none"]],
        "reached_bn": reached["bn", best["bn"]], "reached_none": reached["none", best["none"]],
        "target_acc": target, "censored_at": censor,
        "steps_series": steps_series, "curve_series": curve_series,
    }


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    cfg = plan.config
    settings = tuple(from_mapping(LrSetting, s) for s in cfg["settings"])
    targets = [float(t) for t in cfg["target_accs"]]
    seeds = plan.seeds
    per = {s.label: summarize_setting(s, t, seeds, results) for s, t in zip(settings, targets)}
    verdict = combine_verdicts([p["verdict"] for p in per.values()])
    first = per[settings[0].label]
    sentences, caveats = [], []
    for s in settings:
        p = per[s.label]
        sentences.append(
            f"{s.label}: to reach {p['target_acc']:g} test accuracy, BN needs {sum(p['steps_bn']) / len(seeds):.0f} "
            f"steps at lr {p['best_lr_bn']:g} and no BN {sum(p['steps_none']) / len(seeds):.0f} at lr "
            f"{p['best_lr_none']:g}: {p['speedup']:.2f}x fewer with BN (verdict {p['verdict']}).")
        for norm, label in NORMS:
            missed = len(seeds) - p[f"reached_{norm}"]
            if missed:
                caveats.append(f"{s.label}: {missed} of {len(seeds)} {label} runs at their best lr never reached the "
                               f"target; they count as {p['censored_at']} steps, so the speed-up is a "
                               f"{'lower' if norm == 'none' else 'upper'} bound.")
    caveats += [
        "Steps to target are read at evaluation points (every eval_every steps), and each net's best lr is chosen "
        "on the same seeds it is scored on (the same optimistic selection for both nets).",
        "Ioffe & Szegedy's 14x is for BN-Inception on ImageNet with a tuned schedule; a 3-layer sigmoid MLP on "
        "5000 MNIST digits is a much easier problem, so a smaller factor is expected.",
    ]
    if plan.scale != "paper":
        caveats.append("The default scale trains for a few hundred steps; the VGG / CIFAR-10 setting runs at paper "
                       "scale only.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=("Per setting and seed: r = ln(steps to target test accuracy without BN / with BN), each net at its "
              "best grid lr (fewest mean steps); unreached = steps + eval_every. 95% CI of mean r > 0 → "
              "supported; < 0 → refuted; otherwise inconclusive. Settings combined by combine_verdicts."),
        summary=" ".join(sentences),
        method="; ".join(f"{s.label}: {s.model} on {s.dataset}, target {t:g}, lr ∈ {list(s.lrs)}, SGD momentum "
                         f"{s.momentum}, batch {s.batch_size}, {s.steps} steps, eval every {s.eval_every}, "
                         f"{len(seeds)} seeds" for s, t in zip(settings, targets)),
        key_number=KeyNumber(f"speed-up to {first['target_acc']:g} test accuracy, no-BN steps / BN steps "
                             f"({settings[0].label})", first["speedup"], first["speedup_ci"][0],
                             first["speedup_ci"][1], "×"),
        metrics={label: {k: v for k, v in p.items() if k not in ("steps_series", "curve_series")}
                 for label, p in per.items()},
        figures=[
            Figure("accuracy_at_best_lr", "lines", "Test accuracy over training at each net's best learning rate",
                   f"Mean over {len(seeds)} seeds; the horizontal line is the target.",
                   {"panels": [{"title": s.label, "xlabel": "step", "ylabel": "test accuracy",
                                "series": per[s.label]["curve_series"]} for s in settings]}),
            Figure("steps_vs_lr", "lines", "Steps to the target accuracy vs learning rate",
                   "Mean over seeds; runs that never reach the target count as steps + eval_every.",
                   {"panels": [{"title": s.label, "xlabel": "learning rate", "ylabel": "steps to target",
                                "xscale": "log", "yscale": "log", "series": per[s.label]["steps_series"]}
                               for s in settings]}),
        ],
        caveats=caveats)
