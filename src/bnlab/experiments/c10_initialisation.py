"""C10: does BN make training insensitive to the initialisation scale?

Protocol (sizes in `CONFIGS`): Ioffe's MNIST net (`mlp`: 3 × 100 sigmoid units, BN before the nonlinearity) on
mnist5k, with every weight of the Glorot-uniform initialisation multiplied by s ∈ {10⁻³, 10⁻², 10⁻¹, 1, 10, 10²}
(`init_scale`), with and without BN, trained by SGD with one learning rate for all runs. Recorded per run: final
test and training accuracy, whether it diverged, the initial and final training loss. A run "trains" when it did
not diverge and its final test accuracy is at least `trained_acc`.

Rule (written before the run): for each seed, the sensitivity of a net is the range (max − min) over init scales
of its final test accuracy, a diverged run counting as chance (1/classes). With d = range(no BN) − range(BN) per
seed (paired by seed): **refuted** if the 95% CI of d lies below 0 (BN is *more* sensitive); if it lies above 0,
**supported** when every BN run at every scale trains, else **mixed** (BN lowers the sensitivity but does not
remove it: it still fails at some scales); **inconclusive** otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bnlab.config import from_mapping, to_mapping
from bnlab.data import load_dataset
from bnlab.errors import BnlabError
from bnlab.experiments.base import SCALES, ClaimResult, Figure, KeyNumber, Plan, mean_ci, seeds_for, verdict_from_ci
from bnlab.sweeps.trial import Trial
from bnlab.train import TrainConfig, train

CLAIM_ID = "C10"
TITLE = "BN makes training insensitive to initialisation"
_MODULE = "bnlab.experiments.c10_initialisation"
_NORMS: tuple[tuple[str, str], ...] = (("bn", "BN"), ("none", "no BN"))


@dataclass(frozen=True)
class C10Config:
    dataset: str = "mnist5k"
    model: str = "mlp"
    init_scales: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    steps: int = 500
    batch_size: int = 60
    lr: float = 0.5
    momentum: float = 0.0
    trained_acc: float = 0.5  # final test accuracy a run must reach to count as trained


CONFIGS: dict[str, C10Config] = {
    "smoke": C10Config(init_scales=(1e-3, 1.0, 100.0), steps=15, batch_size=32),
    "default": C10Config(),
    "paper": C10Config(init_scales=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0), steps=10000,
                       lr=0.5),
}


def init_scale_run(*, dataset: str, model: str, norm: str, init_scale: float, steps: int, batch_size: int,
                   lr: float, momentum: float, seed: int) -> dict:
    """Trial: train `model` with weights × `init_scale`; final accuracies, divergence and losses."""
    data = load_dataset(dataset)
    config = TrainConfig(model=model, norm=norm, dataset=dataset, init_scale=init_scale, steps=steps,
                         batch_size=batch_size, lr=lr, momentum=momentum, eval_every=0, seed=seed, progress=False,
                         device="auto")
    result = train(config, dataset=data)
    losses = result.history["train_loss"]
    return {
        "diverged": result.diverged_at_step is not None,
        "diverged_at_step": result.diverged_at_step,
        "test_acc": float(result.final.get("test_acc", math.nan)),
        "train_acc": float(result.final.get("train_acc", math.nan)),
        "initial_loss": float(losses[0]) if losses else math.nan,
        "final_loss": float(result.final.get("train_eval_loss", math.nan)),
        "chance": 1.0 / data.num_classes,
    }


def config_for(scale: str) -> C10Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


def _name(norm: str, init_scale: float, seed: int) -> str:
    return f"{norm}/init={init_scale:g}/seed={seed}"


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    seed_list = seeds_for(seeds)
    trials = tuple(
        Trial(CLAIM_ID, _name(norm, s, seed), f"{_MODULE}:init_scale_run",
              {"dataset": cfg.dataset, "model": cfg.model, "norm": norm, "init_scale": s, "steps": cfg.steps,
               "batch_size": cfg.batch_size, "lr": cfg.lr, "momentum": cfg.momentum, "seed": seed},
              cost=cfg.steps * (2.0 if norm == "bn" else 1.0) / 1000)
        for norm, _ in _NORMS for s in cfg.init_scales for seed in seed_list)
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), trials)


def effective_accuracy(rec: Mapping) -> float:
    """Final test accuracy, or chance when the run diverged or ended with a non-finite accuracy."""
    acc = rec["test_acc"]
    return rec["chance"] if rec["diverged"] or not math.isfinite(acc) else acc


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    cfg = from_mapping(C10Config, plan.config)
    seeds = plan.seeds
    ranges: dict[str, list[float]] = {}
    per_scale: dict[str, dict] = {}
    series = []
    trained_counts: dict[str, int] = {}
    for norm, label in _NORMS:
        ranges[norm] = []
        for seed in seeds:
            accs = [effective_accuracy(results[_name(norm, s, seed)]) for s in cfg.init_scales]
            ranges[norm].append(max(accs) - min(accs))
        ys, los, his = [], [], []
        trained_counts[norm] = 0
        for s in cfg.init_scales:
            recs = [results[_name(norm, s, seed)] for seed in seeds]
            m, lo, hi = mean_ci([effective_accuracy(r) for r in recs])
            trained = sum(1 for r in recs if not r["diverged"] and effective_accuracy(r) >= cfg.trained_acc)
            trained_counts[norm] += trained
            per_scale[f"{norm}/init={s:g}"] = {"test_acc": m, "ci": [lo, hi], "trained": trained,
                                               "diverged": sum(1 for r in recs if r["diverged"]), "runs": len(recs)}
            ys.append(m)
            los.append(math.nan if lo is None else lo)
            his.append(math.nan if hi is None else hi)
        series.append({"label": label, "x": list(cfg.init_scales), "y": ys, "lo": los, "hi": his})

    diffs = [a - b for a, b in zip(ranges["none"], ranges["bn"])]
    d, lo, hi = mean_ci(diffs)
    direction = verdict_from_ci(lo, hi, 0.0)
    bn_all_train = trained_counts["bn"] == len(cfg.init_scales) * len(seeds)
    if direction == "supported":
        verdict = "supported" if bn_all_train else "mixed"
    else:
        verdict = direction
    failing = [f"{s:g}" for s in cfg.init_scales if per_scale[f"bn/init={s:g}"]["trained"] < len(seeds)]
    none_failing = [f"{s:g}" for s in cfg.init_scales if per_scale[f"none/init={s:g}"]["trained"] < len(seeds)]
    summary = (f"Over init scales {cfg.init_scales[0]:g}…{cfg.init_scales[-1]:g}, the range of final test accuracy "
               f"is {mean_ci(ranges['bn'])[0]:.3f} with BN and {mean_ci(ranges['none'])[0]:.3f} without "
               f"(difference {d:.3f}). BN runs fail to train at scales [{', '.join(failing)}]; no-BN runs at "
               f"[{', '.join(none_failing)}].")
    caveats = [
        f"One learning rate ({cfg.lr}) for every scale and both nets; {cfg.steps} steps on {cfg.dataset}. A net "
        "that fails at some scale might train with a learning rate tuned for that scale.",
        "With BN the hidden layers are scale invariant, but the output layer is not: a huge init scale gives huge "
        "logits whatever BN does, and at tiny scales ε = 1e-5 stops the normalisation from undoing the scale "
        "(σ² ≲ ε) and BN's 1/scale gradient makes the first updates very large relative to the weights.",
    ]
    if cfg.steps < 2000:
        caveats.append("The default scale trains for a few hundred steps only; slow-but-eventual training at an "
                       "extreme scale counts as a failure here.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=("Per seed, range over init scales of final test accuracy (diverged = chance); d = range(no BN) − "
              "range(BN). 95% CI of d < 0 → refuted; > 0 → supported if every BN run trains (test acc ≥ "
              f"{cfg.trained_acc}), else mixed; otherwise inconclusive."),
        summary=summary,
        method=(f"{cfg.model} on {cfg.dataset}, weights × {list(cfg.init_scales)}, BN vs no BN, SGD lr {cfg.lr}, "
                f"momentum {cfg.momentum}, batch {cfg.batch_size}, {cfg.steps} steps, {len(seeds)} seeds."),
        key_number=KeyNumber("range of test accuracy over init scales, no BN − BN", d, lo, hi, "accuracy"),
        metrics={"range_bn": ranges["bn"], "range_none": ranges["none"], "range_diff": diffs,
                 "per_scale": per_scale, "bn_trains_everywhere": bn_all_train,
                 "bn_failing_scales": failing, "no_bn_failing_scales": none_failing},
        figures=[Figure("accuracy_vs_init", "lines", "Final test accuracy vs initialisation scale",
                        f"Mean and 95% CI over {len(seeds)} seeds; diverged runs count as chance.",
                        {"panels": [{"title": cfg.model, "xlabel": "init scale (× Glorot)", "ylabel": "test accuracy",
                                     "xscale": "log", "series": series}]})],
        caveats=caveats)
