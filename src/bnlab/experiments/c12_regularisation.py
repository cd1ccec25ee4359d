"""C12 — "BN regularises, like a weak Dropout, through the noise of mini-batch statistics" (Ioffe & Szegedy 2015,
Sec. 3.4; Luo et al. 2019; Hoffer et al. 2017; Wu & Johnson 2021).

What is measured (`bnlab.trials.regularisation`). Ioffe's MLP shape (3 × 100, ReLU, norm before the
nonlinearity) trained by SGD with momentum on a 500-example subset of mnist5k, so that every net overfits. Variants:
no BN; BN; Dropout; BN + Dropout; BN on ghost batches of g < B examples (more noise); and the noise-free control,
BN normalised by a reference batch (the whole training subset at the current weights, differentiated through:
`bnlab.layers.reference`), which removes the batch noise and keeps the gradient through the statistics. Every BN
variant is evaluated with precise population statistics (Alg. 2). gap = train accuracy − test accuracy at the end.

Primary endpoint, two settings (paired by seed; both vote, `stats.combine`):
* ``regularisation``: gap(no BN) − gap(BN) — BN overfits less than the same net without it;
* ``batch noise``: gap(reference-batch BN) − gap(BN) — removing the batch noise (and nothing else) brings the
  overfitting back, as the claim's mechanism requires.
Per setting the 95% t-interval wholly above 0 -> supported, wholly below -> refuted, else inconclusive.
Secondary: Dropout's effect gap(no BN) − gap(Dropout) (the "like a weak Dropout" scale), the test-loss gap
(test − train loss) for the same two contrasts, the slope of the gap over log2 of the normalisation batch size
(ghost batches: negative slope = more noise, less overfitting, reported with its sign flipped), train accuracies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.errors import BnlabError
from bnlab.experiments import base, stats
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C12"
TRIALS = "bnlab.trials.regularisation"
REFERENCE = "BN, reference batch (no noise)"


@dataclass(frozen=True)
class C12Config:
    dataset: str = "mnist5k"
    model: str = "mlp"
    activation: str = "relu"
    train_size: int = 500
    steps: int = 600  # 60 epochs: every variant fits the 500 examples well before
    batch_size: int = 50
    lr: float = 0.05
    momentum: float = 0.9
    dropout: float = 0.3
    ghost_sizes: tuple[int, ...] = (5, 10, 25)  # < batch_size; batch_size itself is plain BN


CONFIGS: dict[str, C12Config] = {
    "smoke": C12Config(train_size=100, steps=10, batch_size=20, ghost_sizes=(5,)),
    "default": C12Config(),
    "paper": C12Config(train_size=1000, steps=20000, batch_size=100, ghost_sizes=(4, 8, 16, 32, 64)),
}

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="train–test gap difference",
        measure="per seed: final (train accuracy − test accuracy) of the comparison net minus BN's (regularisation: "
                "no BN; batch noise: BN normalised by a reference batch), precise BN statistics at evaluation",
        unit="accuracy", test="t", threshold=0.0,
        threshold_source="0 = BN overfits as much as the comparison net; the claim predicts a smaller gap with BN, "
                         "and a larger one once the batch noise is removed",
        settings=("regularisation", "batch noise")),
    cost="cheap",
    secondary=("gap(no BN) − gap(Dropout): the size of Dropout's effect, for scale",
               "test-loss gap (test − train loss), no BN − BN and reference − BN",
               "−slope of the gap over log2(normalisation batch size), ghost batches: > 0 = more noise, less "
               "overfitting", "train accuracy per variant"),
    runs="mlp 3 × 100 ReLU on 500 mnist5k examples, SGD lr 0.05, momentum 0.9, batch 50, 600 steps (60 epochs), "
         "Dropout 0.3, ghost batches of 5/10/25, 8 seeds",
    paper="Ioffe Sec. 3.4 reports removing Dropout from BN-Inception without loss (ImageNet), no controlled "
          "experiment; Luo et al. and Wu & Johnson measure the effect of the normalisation batch size on CIFAR and "
          "ImageNet. Here a small MNIST subset stands in, so the nets overfit within minutes on a CPU.",
    why="The old control trained BN with frozen population statistics, which removed the gradient through the "
        "statistics as well as the noise; and ghost-batch nets were evaluated with running statistics from "
        "5-example batches, which biased their test accuracy. The reference-batch control removes only the noise; "
        "every net is evaluated with precise statistics. The ghost-batch slope became secondary: one endpoint, "
        "the contrasts the claim names.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.01, base.ONE_POINT)

RULE = ("Per seed, gap = train accuracy − test accuracy at the end (precise BN statistics). Setting "
        "'regularisation': gap(no BN) − gap(BN); setting 'batch noise': gap(BN with reference-batch statistics, no "
        "noise) − gap(BN). Per setting the 95% t-interval wholly above 0 -> supported, wholly below -> refuted, "
        "else inconclusive; the claim: stats.combine of the two (both supported -> supported; one supported and one "
        "refuted -> mixed). Dropout's effect, test-loss gaps and the ghost-batch slope are reported, never voted.")


def _check(cfg: C12Config) -> C12Config:
    if any(g >= cfg.batch_size or g < 2 for g in cfg.ghost_sizes):
        raise BnlabError(f"C12 ghost sizes must be in [2, batch_size), got {cfg.ghost_sizes}")
    return cfg


def variants(cfg: C12Config) -> dict[str, dict[str, Any]]:
    """label -> (norm, norm_kwargs, dropout, reference_batch) of every variant."""
    out = {
        "no BN": {"norm": "none", "norm_kwargs": {}, "dropout": 0.0, "reference_batch": False},
        "BN": {"norm": "bn", "norm_kwargs": {}, "dropout": 0.0, "reference_batch": False},
        "Dropout": {"norm": "none", "norm_kwargs": {}, "dropout": cfg.dropout, "reference_batch": False},
        "BN + Dropout": {"norm": "bn", "norm_kwargs": {}, "dropout": cfg.dropout, "reference_batch": False},
        REFERENCE: {"norm": "bn", "norm_kwargs": {}, "dropout": 0.0, "reference_batch": True},
    }
    for g in cfg.ghost_sizes:
        out[f"BN, ghost {g}"] = {"norm": "bn", "norm_kwargs": {"ghost_batch_size": g}, "dropout": 0.0,
                                 "reference_batch": False}
    return out


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = _check(base.config_for(CONFIGS, scale))
    seed_list = base.seeds_for(scale, seeds, first_seed, PROTOCOL.cost)
    cost = {"none": 1.0, "bn": 2.0}
    trials = [Trial(CLAIM_ID, f"{label}/seed={s}", f"{TRIALS}:regularisation_run",
                    {"dataset": cfg.dataset, "model": cfg.model, "activation": cfg.activation,
                     "train_size": cfg.train_size, **v, "steps": cfg.steps, "batch_size": cfg.batch_size,
                     "lr": cfg.lr, "momentum": cfg.momentum, "seed": s},
                    cost=cfg.steps / 1000 * cost[v["norm"]] * (1 + v["reference_batch"] * cfg.train_size
                                                                / cfg.batch_size))
              for label, v in variants(cfg).items() for s in seed_list]
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def ghost_slope(sizes: list[int], gaps: list[float]) -> float:
    """Least-squares slope of the gap over log2(normalisation batch size); NaN with fewer than 2 finite points."""
    pts = [(math.log2(g), y) for g, y in zip(sizes, gaps) if y is not None and math.isfinite(y)]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    cfg = plan.config
    labels = list(variants(C12Config(**{**cfg, "ghost_sizes": tuple(cfg["ghost_sizes"])})))
    runs = {label: [results[f"{label}/seed={s}"] for s in plan.seeds] for label in labels}

    def per_seed(label: str, key: str = "gap") -> list[float]:
        return [r[key] for r in runs[label]]

    def contrast(a: str, b: str, key: str = "gap") -> list[float]:
        return stats.paired_differences(per_seed(a, key), per_seed(b, key))

    sizes = [*cfg["ghost_sizes"], cfg["batch_size"]]
    ghost_labels = [f"BN, ghost {g}" for g in cfg["ghost_sizes"]] + ["BN"]
    slopes = [-ghost_slope(sizes, [runs[lab][i]["gap"] for lab in ghost_labels]) for i in range(len(plan.seeds))]
    secondary = {
        "gap(no BN) − gap(Dropout)": {"values": contrast("no BN", "Dropout"), "unit": "accuracy"},
        "test-loss gap, no BN − BN": {"values": contrast("no BN", "BN", "loss_gap"), "unit": "nats"},
        "test-loss gap, reference batch − BN": {"values": contrast(REFERENCE, "BN", "loss_gap"), "unit": "nats"},
        "−slope of the gap over log2(normalisation batch size)": {"values": slopes, "unit": "accuracy/doubling"},
        "train accuracy, BN − no BN": {"values": contrast("BN", "no BN", "train_acc"), "unit": "accuracy"},
    }
    per_variant = {label: {key: stats.mean_ci(per_seed(label, key)).to_dict()
                           for key in ("gap", "train_acc", "test_acc", "test_loss", "loss_gap")}
                   | {"diverged": sum(bool(r["diverged"]) for r in runs[label])} for label in labels}
    return {"primary": {"regularisation": contrast("no BN", "BN"), "batch noise": contrast(REFERENCE, "BN")},
            "secondary": secondary, "per_variant": per_variant,
            "n_test": runs["BN"][0].get("n_test", 0) if runs["BN"] else 0}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    cfg = plan.config
    pv = metrics["per_variant"]
    labels = list(pv)

    def group(key: str, label: str) -> dict:
        return {"label": label, "values": [pv[lab][key]["effect"] for lab in labels],
                "lo": [pv[lab][key]["ci_low"] for lab in labels], "hi": [pv[lab][key]["ci_high"] for lab in labels]}

    sizes = [*cfg["ghost_sizes"], cfg["batch_size"]]
    ghost_labels = [f"BN, ghost {g}" for g in cfg["ghost_sizes"]] + ["BN"]
    ghost = {"label": "BN (ghost batches)", "x": sizes, "y": [pv[lab]["gap"]["effect"] for lab in ghost_labels],
             "lo": [pv[lab]["gap"]["ci_low"] for lab in ghost_labels],
             "hi": [pv[lab]["gap"]["ci_high"] for lab in ghost_labels]}
    refs = [{"label": lab, "x": sizes, "y": [pv[lab]["gap"]["effect"]] * len(sizes)} for lab in ("no BN", REFERENCE)]
    return [
        base.Figure("gap_by_variant", "bars", "Overfitting per variant",
               f"Final train accuracy (whole subset) minus test accuracy, and test − train loss; precise BN "
               f"statistics; mean and 95% CI over {len(plan.seeds)} seeds.",
               {"panels": [{"title": "train − test accuracy", "ylabel": "gap", "categories": labels,
                            "groups": [group("gap", "accuracy gap")]},
                           {"title": "test − train loss", "ylabel": "nats", "categories": labels,
                            "groups": [group("loss_gap", "loss gap")]},
                           {"title": "test accuracy", "ylabel": "accuracy", "categories": labels,
                            "groups": [group("test_acc", "test accuracy")]}]}),
        base.Figure("gap_vs_ghost", "lines", "Gap vs normalisation batch size",
               f"BN normalising ghost batches of g examples inside batches of {cfg['batch_size']} (g = "
               f"{cfg['batch_size']}: plain BN); no BN and the noise-free reference-batch BN as flat references.",
               {"panels": [{"title": "train − test accuracy", "xlabel": "normalisation batch size", "ylabel": "gap",
                            "xscale": "log", "series": [ghost, *refs]}]}),
    ]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    cfg = plan.config
    pv = metrics["per_variant"]
    gaps = ", ".join(f"{lab} {pv[lab]['gap']['effect']:.3f}" for lab in pv if pv[lab]["gap"]["effect"] is not None)
    parts = [f"{r.setting}: {base.brief(r, 3)}" for r in decision.primary]
    summary = (f"Train–test accuracy gap: {gaps}. Paired effects: {'; '.join(parts)}. Verdict: {decision.verdict}.")
    method = (f"{cfg['model']} ({cfg['activation']}) on {cfg['train_size']} {cfg['dataset']} training examples, SGD "
              f"lr {cfg['lr']}, momentum {cfg['momentum']}, batch {cfg['batch_size']}, {cfg['steps']} steps, "
              f"Dropout p = {cfg['dropout']}, ghost batches {list(cfg['ghost_sizes'])}, reference batch = the whole "
              f"training subset, {len(plan.seeds)} seeds; precise (Alg. 2) BN statistics at evaluation.")
    train_accs = [pv[lab]["train_acc"]["effect"] for lab in pv if pv[lab]["train_acc"]["effect"] is not None]
    caveats = [
        f"Small scale: {cfg['train_size']} training examples; the gap measures overfitting of this subset only.",
        "A smaller gap can come from fitting the training set less well as well as from generalising better: the "
        "train accuracies and test losses are reported beside the gap.",
        "The reference batch holds the training subset itself, so the mini-batch's examples are part of the "
        "statistics they are normalised with (as with population statistics); its training forward costs "
        f"{1 + cfg['train_size'] / cfg['batch_size']:.0f}× a BN step."]
    if train_accs and min(train_accs) < 0.97:
        caveats.append(f"Not every variant fits the training subset (lowest mean train accuracy "
                       f"{min(train_accs):.3f}): part of the gap differences is under-fitting.")
    n_test = metrics.get("n_test") or 0
    if n_test:
        caveats.append(f"One test accuracy over {n_test} examples has a binomial standard error of up to "
                       f"{0.5 / math.sqrt(n_test):.3f}; the paired seeds share the test set.")
    return base.Description(summary, method, caveats)
