"""C12 — "BN regularises, like a weak Dropout, through the noise of mini-batch statistics" (Ioffe & Szegedy 2015,
Sec. 3.4; Luo et al. 2019; Hoffer et al. 2017; Wu & Johnson 2021).

What is measured (`bnlab.trials.regularisation`). Ioffe's MLP shape (3 × 100, ReLU, norm before the
nonlinearity) trained by SGD with momentum on a 1000-example subset of mnist5k with a fifth of its training labels
corrupted (the same ones for every variant of a seed), so that every net has something to memorise and a
regulariser something to resist -- the setting was chosen so that the positive control, Dropout, regularises
(see PROTOCOL.why). Variants:
no BN; BN; Dropout; BN + Dropout; BN on ghost batches of g < B examples (more noise); and the noise-free control,
BN normalised by a reference batch (the whole training subset at the current weights, differentiated through:
`bnlab.layers.reference`), which removes the batch noise and keeps the gradient through the statistics. Every BN
variant is evaluated with precise population statistics (Alg. 2). gap = train accuracy − test accuracy at the end.

Primary endpoint, three settings (paired by seed; per setting the 95% t-interval wholly above 0 -> supported,
wholly below -> refuted, else inconclusive):
* ``regularisation``: gap(no BN) − gap(BN) — BN overfits less than the same net without it;
* ``dropout control``: gap(no BN) − gap(Dropout) — the positive control: a known regulariser regularises in this
  setting. It never votes on the claim; it gates the mechanism vote;
* ``batch noise``: gap(reference-batch BN) − gap(BN) − ½·(gap(no BN) − gap(BN)) — removing the batch noise (and
  nothing else) brings back at least half of BN's regularising effect, as the claim's mechanism requires (a
  relative margin, written linearly so that a small BN effect cannot blow up a ratio).
A run that diverged is the worst outcome for its net, never a missing seed (`bnlab.experiments.outcomes`): its gap
is 1 − chance = 0.9, the largest a net can have (every training label fitted, the test set at chance) -- not the
gap of ~0 its chance-level train and test accuracies would give, which would reward divergence as regularisation.
The claim: `stats.combine` of regularisation and batch noise, where the batch-noise vote counts only when the
dropout control is supported (otherwise inconclusive: the setting cannot show regularisation at all).
Secondary: the test-loss gap (test − train loss) for the two contrasts, gap(reference) − gap(BN) itself, the slope
of the gap over log2(1 / normalisation batch size) (ghost batches: > 0 = more noise, more overfitting; the claim
predicts < 0), train accuracies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.errors import BnlabError
from bnlab.experiments import base, outcomes, stats
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C12"
TRIALS = "bnlab.trials.regularisation"
REFERENCE = "BN, reference batch (no noise)"
GHOST_SLOPE = "slope of the gap over log2(1 / normalisation batch size): > 0 = more noise, more overfitting"
SHARE = 0.5  # the mechanism: removing the batch noise removes at least this share of BN's regularising effect
# the gap a diverged run counts as: the worst a net can have, every training label fitted and the test set at chance
WORST_GAP = 1.0 - outcomes.TEN_CLASS_CHANCE


@dataclass(frozen=True)
class C12Config:
    dataset: str = "mnist5k"
    model: str = "mlp"
    activation: str = "relu"
    train_size: int = 1000
    label_noise: float = 0.2  # a fifth of the training labels replaced by another class: something to memorise
    steps: int = 1200  # 60 epochs: the no-BN net fits every training label, corrupted ones included, well before
    batch_size: int = 50
    lr: float = 0.05
    momentum: float = 0.9
    dropout: float = 0.5
    hidden: tuple[int, ...] = (100, 100, 100)
    ghost_sizes: tuple[int, ...] = (5, 10, 25)  # < batch_size; batch_size itself is plain BN


CONFIGS: dict[str, C12Config] = {
    "smoke": C12Config(train_size=100, steps=10, batch_size=20, ghost_sizes=(5,)),
    "default": C12Config(),
    "paper": C12Config(train_size=1000, steps=20000, batch_size=100, ghost_sizes=(4, 8, 16, 32, 64)),
}

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="train–test gap difference",
        measure="per seed, gap = final train accuracy (on the training labels, corrupted ones included) − test "
                "accuracy, precise BN statistics at evaluation. regularisation: gap(no BN) − gap(BN); dropout "
                "control: gap(no BN) − gap(Dropout); batch noise: gap(BN normalised by a reference batch) − gap(BN) "
                f"− {SHARE:g}·(gap(no BN) − gap(BN))",
        unit="accuracy", test="t", threshold=0.0,
        threshold_source="0 = the comparison net overfits as much as BN (regularisation, dropout control); for batch "
                         f"noise, 0 = removing the noise brings back exactly {SHARE:g} of BN's effect, the least the "
                         "mechanism needs (a relative margin, written linearly in the gaps)",
        settings=("regularisation", "dropout control", "batch noise")),
    cost="cheap",
    secondary=("gap(reference batch) − gap(BN): the overfitting removing the batch noise brings back",
               "test-loss gap (test − train loss), no BN − BN and reference − BN",
               "slope of the gap over log2(1 / normalisation batch size), ghost batches: > 0 = more noise, more "
               "overfitting (the claim predicts < 0)", "train accuracy, BN − no BN"),
    runs="mlp 3 × 100 ReLU on 1000 mnist5k examples with a fifth of the training labels corrupted, SGD lr 0.05, "
         "momentum 0.9, batch 50, 1200 steps (60 epochs), Dropout 0.5, ghost batches of 5/10/25, 8 seeds",
    paper="Ioffe Sec. 3.4 reports removing Dropout from BN-Inception without loss (ImageNet), no controlled "
          "experiment; Luo et al. and Wu & Johnson measure the effect of the normalisation batch size on CIFAR and "
          "ImageNet. Here a small MNIST subset with corrupted labels stands in, so the nets overfit within minutes "
          "on a CPU.",
    why="A claim that BN regularises 'like Dropout' can only be read in a setting where Dropout regularises: on "
        "500 clean examples Dropout 0.3 showed no effect at the default scale (gap difference −0.0015 [−0.0125, "
        "+0.0095]), as Srivastava et al. 2014 (Sec. 7.4, Fig. 10) report for very small clean training sets, so a "
        "batch-noise contrast there could not be read either way. The setting was therefore chosen so that the "
        "positive control works, before the run that judges the claim: a fifth of the training labels corrupted, "
        "which gives every net something to memorise and Dropout something to resist (Arpit et al. 2017: Dropout "
        "is among the strongest regularisers against memorising noisy labels), 1000 examples and Dropout 0.5 "
        "(Srivastava's rate); a pilot on seeds 0-1 (no BN and Dropout only) showed the no-BN net fitting every "
        "corrupted label and Dropout fitting about a fifth of them. The positive control is itself a setting: "
        "where it fails, the mechanism vote is inconclusive. The mechanism asks that removing the batch noise "
        f"bring back at least {SHARE:g} of BN's effect, not merely some of it: a noise that carries a sliver of the "
        "effect does not carry the claim. The reference-batch control removes only the noise (the gradient through "
        "the statistics stays); every net is evaluated with precise statistics.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.01, base.ONE_POINT)

RULE = ("Per seed, gap = train accuracy − test accuracy at the end (precise BN statistics); a run that diverged "
        "counts as the worst gap, 1 − chance = 0.9, never a missing seed. Setting "
        "'regularisation': gap(no BN) − gap(BN); setting 'dropout control': gap(no BN) − gap(Dropout); setting "
        "'batch noise': gap(BN with reference-batch statistics, no noise) − gap(BN) − "
        f"{SHARE:g}·(gap(no BN) − gap(BN)). Per setting the 95% t-interval wholly above 0 -> supported, wholly below "
        "-> refuted, else inconclusive. The batch-noise vote counts only when the dropout control is supported "
        "(else it is inconclusive); the control never votes on the claim. The claim: stats.combine of "
        "regularisation and batch noise (both supported -> supported; one supported and one refuted -> mixed). "
        "Test-loss gaps and the ghost-batch slope are reported, never voted.")


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
                     "train_size": cfg.train_size, "label_noise": cfg.label_noise, "hidden": list(cfg.hidden), **v,
                     "steps": cfg.steps, "batch_size": cfg.batch_size,
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
    labels = list(variants(C12Config(**{**cfg, "ghost_sizes": tuple(cfg["ghost_sizes"]),
                                        "hidden": tuple(cfg["hidden"])})))
    runs = {label: [results[f"{label}/seed={s}"] for s in plan.seeds] for label in labels}

    def per_seed(label: str, key: str = "gap") -> list[float]:
        return [r[key] for r in runs[label]]

    def contrast(a: str, b: str, key: str = "gap") -> list[float]:
        return stats.paired_differences(per_seed(a, key), per_seed(b, key))

    def gap_contrast(a: str, b: str) -> list[float]:  # the primary's: a diverged run scores the worst gap
        return stats.paired_differences(*([outcomes.scored(r["gap"], r["diverged"], WORST_GAP) for r in runs[lab]]
                                          for lab in (a, b)))

    sizes = [*cfg["ghost_sizes"], cfg["batch_size"]]
    ghost_labels = [f"BN, ghost {g}" for g in cfg["ghost_sizes"]] + ["BN"]
    slopes = [-ghost_slope(sizes, [runs[lab][i]["gap"] for lab in ghost_labels]) for i in range(len(plan.seeds))]
    secondary = {
        "test-loss gap, no BN − BN": {"values": contrast("no BN", "BN", "loss_gap"), "unit": "nats"},
        "test-loss gap, reference batch − BN": {"values": contrast(REFERENCE, "BN", "loss_gap"), "unit": "nats"},
        GHOST_SLOPE: {
            "values": slopes, "unit": "accuracy/halving",
            "note": "the claim predicts < 0: a smaller normalisation batch (more noise) overfits less"},
        "train accuracy, BN − no BN": {"values": contrast("BN", "no BN", "train_acc"), "unit": "accuracy"},
    }
    per_variant = {label: {key: stats.mean_ci(per_seed(label, key)).to_dict()
                           for key in ("gap", "train_acc", "test_acc", "test_loss", "loss_gap", "noisy_fit")}
                   | {"diverged": sum(bool(r["diverged"]) for r in runs[label])} for label in labels}
    effect = gap_contrast("no BN", "BN")
    brought_back = gap_contrast(REFERENCE, "BN")
    secondary["gap(reference batch) − gap(BN): the overfitting removing the batch noise brings back"] = {
        "values": brought_back, "unit": "accuracy", "note": f"a diverged run counts as the worst gap, {WORST_GAP:g}"}
    return {"primary": {"regularisation": effect, "dropout control": gap_contrast("no BN", "Dropout"),
                        "batch noise": [_mechanism(b, e) for b, e in zip(brought_back, effect)]},
            "secondary": secondary, "per_variant": per_variant,
            "n_test": runs["BN"][0].get("n_test", 0) if runs["BN"] else 0}


def _mechanism(brought_back: float, effect: float) -> float:
    """Per seed: gap(reference) − gap(BN) − SHARE · (gap(no BN) − gap(BN)); > 0 ⇔ removing the batch noise brings
    back more than SHARE of BN's effect (linear in the gaps, so a small BN effect does not blow it up as a ratio
    would); nan where either is missing."""
    if not (math.isfinite(brought_back) and math.isfinite(effect)):
        return math.nan
    return brought_back - SHARE * effect


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    """The regularisation and mechanism votes, combined by `stats.combine`; the mechanism vote counts only when the
    positive control (Dropout regularises in this setting) is supported, else it is inconclusive: a setting where a
    known regulariser shows no effect cannot show whether batch noise regularises."""
    results = base.endpoint_results(PROTOCOL.endpoint, metrics["primary"], metrics)
    by = {r.setting: r for r in results}
    control, mechanism = by["dropout control"], by["batch noise"]
    control.note = "positive control: gates the batch-noise vote, never votes on the claim"
    if control.vote != "supported":
        mechanism.note = (f"not read: the positive control is {control.vote} (Dropout does not regularise here); "
                          f"the test alone says {mechanism.vote}")
        mechanism.vote = "inconclusive"
    control_vote, control.vote = control.vote, None
    verdict, reason = stats.combine_reason([by["regularisation"].vote, mechanism.vote], [])
    control.vote = control_vote
    return base.Decision(verdict, results, base.secondary_results(metrics), [], reason)


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
    method = (f"{cfg['model']} {list(cfg['hidden'])} ({cfg['activation']}) on {cfg['train_size']} {cfg['dataset']} "
              f"training examples, {cfg['label_noise']:.0%} of their labels corrupted, SGD "
              f"lr {cfg['lr']}, momentum {cfg['momentum']}, batch {cfg['batch_size']}, {cfg['steps']} steps, "
              f"Dropout p = {cfg['dropout']}, ghost batches {list(cfg['ghost_sizes'])}, reference batch = the whole "
              f"training subset, {len(plan.seeds)} seeds; precise (Alg. 2) BN statistics at evaluation.")
    train_accs = [pv[lab]["train_acc"]["effect"] for lab in pv if pv[lab]["train_acc"]["effect"] is not None]
    caveats = [
        f"Small scale: {cfg['train_size']} training examples; the gap measures overfitting of this subset only.",
        "A smaller gap can come from fitting the training set less well as well as from generalising better: the "
        "train accuracies and test losses are reported beside the gap.",
        f"A run that diverged counts as the worst gap ({WORST_GAP:g}: every training label fitted, the test set at "
        "chance) in the primary endpoint, never as a missing seed; the test-loss gaps, the ghost-batch slope and the "
        "train accuracies (secondary) leave it out.",
        "The reference batch holds the training subset itself, so the mini-batch's examples are part of the "
        "statistics they are normalised with (as with population statistics); its training forward costs "
        f"{1 + cfg['train_size'] / cfg['batch_size']:.0f}× a BN step."]
    fits = {lab: pv[lab]["noisy_fit"]["effect"] for lab in pv if pv[lab]["noisy_fit"]["effect"] is not None}
    if fits:
        caveats.append("Share of the corrupted training labels each net fits (memorises): " + ", ".join(
            f"{lab} {v:.2f}" for lab, v in fits.items() if math.isfinite(v)) + ". A regulariser shows as a low share "
            f"and a train accuracy near 1 − {cfg['label_noise']:g}; a net that fits the clean labels poorly as well "
            "under-fits, which also narrows the gap.")
    if train_accs and min(train_accs) < (1 - cfg["label_noise"]) * 0.97:
        caveats.append(f"Not every variant fits the clean training labels (lowest mean train accuracy "
                       f"{min(train_accs):.3f}): part of the gap differences is under-fitting.")
    n_test = metrics.get("n_test") or 0
    if n_test:
        caveats.append(f"One test accuracy over {n_test} examples has a binomial standard error of up to "
                       f"{0.5 / math.sqrt(n_test):.3f}; the paired seeds share the test set.")
    return base.Description(summary, method, caveats)
