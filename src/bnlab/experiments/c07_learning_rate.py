"""C07: does BN allow much larger learning rates without divergence?

Protocol (sizes in `CONFIGS`): a learning-rate sweep over several decades, with and without BN, same init, data
order and steps (SGD). Default scale: Ioffe's MNIST net (`mlp`: 3 x 100 sigmoid, BN before the nonlinearity) on
mnist5k. Paper scale adds Santurkar et al.'s VGG on CIFAR-10 (Fig. 1: lr 0.1 vs 0.5). Recorded per run: whether and
when it diverged (`bnlab.train`: non-finite loss or > 1000 x the initial loss), the final test accuracy, the eval
curve and a window-averaged training-loss curve.

A run is *stable* when it did not diverge and its final test accuracy is at least the setting's `trained_acc`
(a run whose loss stays finite but never learns counts as unstable: it is unusable at that lr). The largest
stable lr of a net (per seed) is the largest grid lr that is stable; a net stable at no grid lr gets one grid step
below the smallest lr.

Rule (written before the run): per setting and seed, d = log10(largest stable lr with BN) - log10(largest stable
lr without BN), paired by seed. **supported** if the 95% CI of mean d lies above 0; **refuted** if it lies at or
below 0 (BN never allows a larger lr); **inconclusive** otherwise. Settings are combined with `combine_verdicts`.
Also reported, not part of the verdict: test accuracy per lr, and whether BN and no BN coincide at the smallest lr
where both are stable (Bjorck et al. 2018: BN's benefit comes from the larger lr it permits), measured as the
paired difference of final test accuracy with its CI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bnlab.config import from_mapping, to_mapping
from bnlab.errors import BnlabError
from bnlab.experiments.base import SCALES, ClaimResult, Figure, KeyNumber, Plan, combine_verdicts, mean_ci, seeds_for
from bnlab.sweeps.trial import Trial
from bnlab.train import TrainConfig, train

CLAIM_ID = "C07"
TITLE = "BN allows much larger learning rates without divergence"
TRIAL_FN = "bnlab.experiments.c07_learning_rate:lr_run"
NORMS: tuple[tuple[str, str], ...] = (("bn", "BN"), ("none", "no BN"))


@dataclass(frozen=True)
class LrSetting:
    """One model x data set x lr grid; shared with C13 (the same trials are deduplicated by the audit)."""

    label: str
    dataset: str = "mnist5k"
    model: str = "mlp"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    lrs: tuple[float, ...] = (0.01, 0.1, 1.0)
    steps: int = 800
    batch_size: int = 60
    momentum: float = 0.0
    weight_decay: float = 0.0
    eval_every: int = 25
    trained_acc: float = 0.8  # stable runs reach at least this final test accuracy
    device: str = "cpu"


@dataclass(frozen=True)
class C07Config:
    settings: tuple[LrSetting, ...]


MLP_DEFAULT = LrSetting(label="Ioffe MLP / mnist5k", lrs=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                        steps=800, batch_size=60, eval_every=25, trained_acc=0.8)

CONFIGS: dict[str, C07Config] = {
    "smoke": C07Config(settings=(
        LrSetting(label="small MLP / digits", dataset="digits", model_kwargs={"hidden": [32, 32]},
                  lrs=(0.1, 1.0, 10.0, 100.0), steps=60, batch_size=32, eval_every=20, trained_acc=0.5),)),
    "default": C07Config(settings=(MLP_DEFAULT,)),
    "paper": C07Config(settings=(
        LrSetting(label="Ioffe MLP / mnist5k", lrs=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0),
                  steps=50_000, batch_size=60, eval_every=500, trained_acc=0.9, device="auto"),
        LrSetting(label="VGG-11 / CIFAR-10", dataset="cifar10", model="vgg", model_kwargs={"config": "vgg11"},
                  lrs=(0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0), steps=15_000, batch_size=128, momentum=0.9,
                  weight_decay=5e-4, eval_every=500, trained_acc=0.5, device="auto"),
    )),
}


def config_for(scale: str) -> C07Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


# ----------------------------------------------------------------------------- the trial


def _window_means(values: Sequence[float], points: int) -> tuple[list[int], list[float]]:
    """Split a per-step series into <= `points` equal windows: (window start steps, window means)."""
    n = len(values)
    if n == 0:
        return [], []
    width = max(1, math.ceil(n / points))
    starts = list(range(0, n, width))
    return starts, [sum(values[s:s + width]) / len(values[s:s + width]) for s in starts]


def _every(values: Sequence[Any], points: int) -> list[Any]:
    stride = max(1, math.ceil(len(values) / points))
    return list(values[::stride]) if (len(values) - 1) % stride == 0 else list(values[::stride]) + [values[-1]]


def lr_run(*, dataset: str, model: str, model_kwargs: Mapping[str, Any], dataset_kwargs: Mapping[str, Any],
           norm: str, lr: float, steps: int, batch_size: int, momentum: float, weight_decay: float, eval_every: int,
           device: str, seed: int) -> dict[str, Any]:
    """Trial: one SGD run; divergence, final accuracy, the eval curve (<= 200 points) and a window-averaged
    training-loss curve (<= 100 points)."""
    config = TrainConfig(model=model, norm=norm, dataset=dataset, model_kwargs=dict(model_kwargs),
                         dataset_kwargs=dict(dataset_kwargs), lr=lr, steps=steps, batch_size=batch_size,
                         momentum=momentum, weight_decay=weight_decay, eval_every=eval_every, seed=seed,
                         device=device, progress=False)
    result = train(config)
    h = result.history
    loss_step, loss = _window_means(h["train_loss"], 100)
    return {
        "diverged_at_step": result.diverged_at_step,
        "steps_done": result.final["steps_done"],
        "test_acc": float(result.final.get("test_acc", math.nan)),
        "train_acc": float(result.final.get("train_acc", math.nan)),
        "test_loss": float(result.final.get("test_loss", math.nan)),
        "initial_loss": h["train_loss"][0] if h["train_loss"] else math.nan,
        "eval_step": _every(h["eval_step"], 200),
        "test_acc_curve": _every(h["test_acc"], 200),
        "loss_step": loss_step,
        "train_loss": loss,
    }


def trial_params(s: LrSetting, norm: str, lr: float, seed: int) -> dict[str, Any]:
    return {"dataset": s.dataset, "model": s.model, "model_kwargs": dict(s.model_kwargs),
            "dataset_kwargs": dict(s.dataset_kwargs), "norm": norm, "lr": lr, "steps": s.steps,
            "batch_size": s.batch_size, "momentum": s.momentum, "weight_decay": s.weight_decay,
            "eval_every": s.eval_every, "device": s.device, "seed": seed}


def trial_name(s: LrSetting, norm: str, lr: float, seed: int) -> str:
    return f"{s.label}/{norm}/lr={lr:g}/seed={seed}"


def lr_trials(claim: str, settings: Sequence[LrSetting], seeds: Sequence[int]) -> tuple[Trial, ...]:
    return tuple(
        Trial(claim, trial_name(s, norm, lr, seed), TRIAL_FN, trial_params(s, norm, lr, seed),
              cost=s.steps * (1.5 if norm == "bn" else 1.0) / 1000)
        for s in settings for norm, _ in NORMS for lr in s.lrs for seed in seeds)


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    seed_list = seeds_for(seeds)
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), lr_trials(CLAIM_ID, cfg.settings, seed_list))


def settings_of(config: Mapping[str, Any]) -> tuple[LrSetting, ...]:
    return tuple(from_mapping(LrSetting, s) for s in config["settings"])


# ----------------------------------------------------------------------------- the verdict


def effective_accuracy(rec: Mapping[str, Any], chance: float = 0.1) -> float:
    """Final test accuracy; chance when the run diverged or its accuracy is not finite."""
    acc = rec["test_acc"]
    return chance if rec["diverged_at_step"] is not None or not math.isfinite(acc) else acc


def is_stable(rec: Mapping[str, Any], trained_acc: float) -> bool:
    return rec["diverged_at_step"] is None and math.isfinite(rec["test_acc"]) and rec["test_acc"] >= trained_acc


def largest_stable_log_lr(recs_by_lr: Mapping[float, Mapping[str, Any]], trained_acc: float) -> float:
    """log10 of the largest stable lr; one grid step below the smallest lr when none is stable."""
    lrs = sorted(recs_by_lr)
    stable = [lr for lr in lrs if is_stable(recs_by_lr[lr], trained_acc)]
    if stable:
        return math.log10(max(stable))
    step = math.log10(lrs[1] / lrs[0]) if len(lrs) > 1 else 1.0
    return math.log10(lrs[0]) - step


def _curve_mean(recs: Sequence[Mapping[str, Any]], xkey: str, ykey: str) -> tuple[list[float], list[float]]:
    """Mean over seeds at each x, up to the shortest curve and the first non-finite mean."""
    n = min(len(r[ykey]) for r in recs)
    xs, ys = [], []
    for i in range(n):
        vals = [r[ykey][i] for r in recs]
        m = sum(vals) / len(vals)
        if not math.isfinite(m):
            break
        xs.append(recs[0][xkey][i])
        ys.append(m)
    return xs, ys


def summarize_setting(s: LrSetting, seeds: Sequence[int], results: Mapping[str, dict]) -> dict[str, Any]:
    rec = {(norm, lr, seed): results[trial_name(s, norm, lr, seed)] for norm, _ in NORMS for lr in s.lrs
           for seed in seeds}
    largest = {norm: [largest_stable_log_lr({lr: rec[norm, lr, seed] for lr in s.lrs}, s.trained_acc)
                      for seed in seeds] for norm, _ in NORMS}
    diffs = [a - b for a, b in zip(largest["bn"], largest["none"])]
    d, lo, hi = mean_ci(diffs)
    if lo is not None and lo > 0:
        verdict = "supported"
    elif hi is not None and hi <= 0:
        verdict = "refuted"
    else:
        verdict = "inconclusive"

    acc_series, per_lr = [], {}
    for norm, label in NORMS:
        ys, los, his = [], [], []
        for lr in s.lrs:
            recs = [rec[norm, lr, seed] for seed in seeds]
            m, a, b = mean_ci([effective_accuracy(r) for r in recs])
            per_lr[f"{norm}/lr={lr:g}"] = {
                "test_acc": m, "ci": [a, b], "stable": sum(is_stable(r, s.trained_acc) for r in recs),
                "diverged": sum(r["diverged_at_step"] is not None for r in recs), "runs": len(recs)}
            ys.append(m)
            los.append(math.nan if a is None else a)
            his.append(math.nan if b is None else b)
        acc_series.append({"label": label, "x": list(s.lrs), "y": ys, "lo": los, "hi": his})

    # Bjorck et al.: at the smallest lr where both nets are stable for every seed, do they coincide?
    both = [lr for lr in s.lrs if all(is_stable(rec[n, lr, seed], s.trained_acc) for n, _ in NORMS
                                      for seed in seeds)]
    small = None
    if both:
        lr0 = min(both)
        gap, glo, ghi = mean_ci([rec["bn", lr0, seed]["test_acc"] - rec["none", lr0, seed]["test_acc"]
                                 for seed in seeds])
        small = {"lr": lr0, "acc_gap_bn_minus_none": gap, "ci": [glo, ghi],
                 "coincide": glo is not None and -0.02 <= glo and ghi <= 0.02}

    panels = []
    shown = sorted({s.lrs[0], min(both) if both else s.lrs[0], 10 ** max(largest["bn"]) if max(largest["bn"]) >=
                    math.log10(s.lrs[0]) else s.lrs[-1]})
    for lr in shown:
        lr = min(s.lrs, key=lambda g, lr=lr: abs(math.log10(g) - math.log10(lr)))
        series = []
        for norm, label in NORMS:
            xs, ys = _curve_mean([rec[norm, lr, seed] for seed in seeds], "loss_step", "train_loss")
            series.append({"label": label, "x": xs, "y": ys})
        panels.append({"title": f"{s.label}, lr {lr:g}", "xlabel": "step", "ylabel": "training loss (window mean)",
                       "yscale": "log", "series": series})
    return {"verdict": verdict, "d": d, "ci": [lo, hi], "diffs": diffs,
            "largest_stable_lr_bn": [10 ** v for v in largest["bn"]],
            "largest_stable_lr_none": [10 ** v for v in largest["none"]],
            "per_lr": per_lr, "small_lr": small, "acc_series": acc_series, "loss_panels": panels}


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    settings = settings_of(plan.config)
    seeds = plan.seeds
    per = {s.label: summarize_setting(s, seeds, results) for s in settings}
    verdict = combine_verdicts([p["verdict"] for p in per.values()])
    first = per[settings[0].label]
    sentences = []
    for s in settings:
        p = per[s.label]
        bn_lr = mean_ci(p["largest_stable_lr_bn"])[0]
        none_lr = mean_ci(p["largest_stable_lr_none"])[0]
        sentence = (f"{s.label}: largest stable lr {bn_lr:.3g} with BN vs {none_lr:.3g} without (mean over seeds; "
                    f"{p['d']:+.2f} decades, verdict {p['verdict']}).")
        if p["small_lr"] is not None:
            sm = p["small_lr"]
            sentence += (f" At lr {sm['lr']:g}, the smallest where both train, BN − no BN test accuracy is "
                         f"{sm['acc_gap_bn_minus_none']:+.3f} ({'coincide' if sm['coincide'] else 'differ'}).")
        sentences.append(sentence)
    caveats = [
        "The lr grid is coarse (about half a decade), so 'largest stable lr' is known to one grid step; a net stable "
        "at the grid's largest lr is censored there.",
        "A run that stays finite but does not reach the setting's trained accuracy counts as unstable; with more "
        "steps some slow runs (small lr, or no BN) would count as stable.",
        "Curves 'coincide at small lr' (Bjorck et al.) is judged at ±0.02 test accuracy with its 95% CI.",
    ]
    if plan.scale != "paper":
        caveats.append("Santurkar et al.'s VGG / CIFAR-10 sweep (Fig. 1) runs only at paper scale.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=("Per setting and seed: d = log10(largest stable lr with BN) − log10(largest stable lr without), "
              "stable = not diverged and final test accuracy ≥ trained_acc. 95% CI of mean d > 0 → supported; "
              "≤ 0 → refuted; otherwise inconclusive. Settings combined by combine_verdicts."),
        summary=" ".join(sentences),
        method="; ".join(f"{s.label}: {s.model} on {s.dataset}, lr ∈ {list(s.lrs)}, SGD momentum {s.momentum}, "
                         f"batch {s.batch_size}, {s.steps} steps, trained_acc {s.trained_acc}, {len(seeds)} seeds"
                         for s in settings),
        key_number=KeyNumber(f"log10 largest stable lr, BN − no BN ({settings[0].label})", first["d"],
                             first["ci"][0], first["ci"][1], "decades"),
        metrics={label: {k: v for k, v in p.items() if k not in ("acc_series", "loss_panels")}
                 for label, p in per.items()},
        figures=[
            Figure("accuracy_vs_lr", "lines", "Final test accuracy vs learning rate",
                   f"Mean and 95% CI over {len(seeds)} seeds; diverged runs count as chance (0.1).",
                   {"panels": [{"title": s.label, "xlabel": "learning rate", "ylabel": "test accuracy",
                                "xscale": "log", "series": per[s.label]["acc_series"]} for s in settings]}),
            Figure("loss_curves", "lines", "Training loss at small and large learning rates",
                   "Window-averaged training loss, mean over seeds; a curve stops where the run diverged.",
                   {"panels": [panel for s in settings for panel in per[s.label]["loss_panels"]]}),
        ],
        caveats=caveats)
