"""C02 — γ and β restore representational power (Ioffe & Szegedy 2015, Sec. 3; Santurkar et al. 2018, Obs. 4.3):
without them activations are forced into N(0, 1), where a sigmoid is nearly linear; with them BN can recover the
identity, so no representational power is lost.

What is measured (`bnlab.trials.affine`). Ioffe's MNIST net (3 × 100 sigmoid, BN before each sigmoid) trained
with BN with and without learnable γ, β (same init and batches per seed), and a no-BN net as a reference: the
final test accuracy, and over training the fraction of sigmoid inputs with |x| < 1 on held-out inputs (BN with
their batch statistics). Identity recovery -- with γ = √(σ²_B + ε), β = μ_B, BN returns its input -- is verified in
float64 and float32 on inputs of very different per-feature scales.

Primary endpoint: per seed, test accuracy with γ, β minus without (paired); a run that diverged scores chance, the
worst outcome for its net, never a missing seed (`bnlab.experiments.outcomes.scored_accuracy`).
The claim predicts that removing γ, β costs representational power, so accuracy with them is higher: the 95% t-interval
wholly above 0 -> supported, wholly below -> refuted, else inconclusive. Secondary: the near-linear fraction without
minus with γ, β at the end (N(0,1) inputs give 0.683). Verification: identity recovery to 1e-12 (float64) and 1e-5
(float32) relative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.experiments import base, outcomes, stats
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C02"
TRIALS = "bnlab.trials.affine"
VARIANTS: tuple[tuple[str, str, bool], ...] = (("BN with γ, β", "bn", True), ("BN without γ, β", "bn", False),
                                               ("no BN", "none", True))  # (label, norm, affine)
TOLERANCES = {"float64": 1e-12, "float32": 1e-5}  # relative round-off of one normalise-and-undo pass


@dataclass(frozen=True)
class C02Config:
    dataset: str = "mnist5k"
    model: str = "mlp"
    steps: int = 1500
    batch_size: int = 60
    lr: float = 0.5
    momentum: float = 0.0
    probe_every: int = 50
    probe_examples: int = 500  # held-out test examples the band fraction is measured on
    band: float = 1.0
    identity_batch: int = 64


CONFIGS: dict[str, C02Config] = {
    "smoke": C02Config(steps=20, batch_size=32, probe_every=10, probe_examples=100, identity_batch=16),
    "default": C02Config(),
    "paper": C02Config(steps=50000, probe_every=500, probe_examples=1000),  # Ioffe Fig. 1: 50k steps, batch 60
}

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="test accuracy: BN with γ, β − BN without", measure="per seed: final test accuracy of Ioffe's sigmoid "
        "MLP with learnable γ, β minus the same net with BN's affine parameters removed (same init and batches)",
        unit="accuracy", test="t", threshold=0.0,
        threshold_source="0 = no representational power lost without γ, β; Ioffe Sec. 3 predicts a loss (effect > 0)"),
    cost="cheap",
    secondary=("fraction of sigmoid inputs with |x| < 1 at the end, without − with γ, β",
               "test accuracy of the no-BN net (reference)"),
    verifications=("identity recovery, float64 (≤ 1e-12 relative)", "identity recovery, float32 (≤ 1e-5)"),
    runs="Ioffe's 3 × 100 sigmoid MLP on mnist5k (4000 training images), SGD lr 0.5, batch 60, 1500 steps, 8 seeds",
    paper="Ioffe & Szegedy argue it (Sec. 3) and train this net on MNIST for 50k steps (Fig. 1) without an "
          "affine-free ablation; the default scale trains 1500 steps on a 4000-image MNIST subset.",
    why="Accuracy is where lost representational power would show; the near-linear fraction is the mechanism the "
        "explanation names and is reported beside it. Identity recovery is an identity: verified, not voted.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.01, base.ONE_POINT)

RULE = ("Per seed: effect = final test accuracy with γ, β minus without (a run that diverged scores chance, 0.1, "
        "never a missing seed). The 95% t-interval of the mean effect over "
        "seeds wholly above 0 -> supported, wholly below 0 -> refuted, otherwise inconclusive. Identity recovery is "
        "a verification, reported apart; the near-linear fraction is reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = base.config_for(CONFIGS, scale)
    seed_list = base.seeds_for(scale, seeds, first_seed, PROTOCOL.cost)
    trials = [Trial(CLAIM_ID, f"identity/seed={s}", f"{TRIALS}:identity_recovery",
                    {"batch": cfg.identity_batch, "seed": s}, cost=0.01) for s in seed_list]
    run = {k: v for k, v in asdict(cfg).items() if k != "identity_batch"}
    trials += [Trial(CLAIM_ID, f"train/{label}/seed={s}", f"{TRIALS}:affine_run",
                     {**run, "norm": norm, "affine": affine, "seed": s}, cost=cfg.steps / 1000)
               for label, norm, affine in VARIANTS for s in seed_list]
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    runs = {label: [results[f"train/{label}/seed={s}"] for s in plan.seeds] for label, _, _ in VARIANTS}
    with_ab, without_ab = runs["BN with γ, β"], runs["BN without γ, β"]
    acc = {label: [outcomes.scored_accuracy(r["test_acc"], r.get("diverged")) for r in rs]
           for label, rs in runs.items()}  # a diverged run scores chance
    checks: dict[str, list[float]] = {"float64": [], "float32": []}
    for s in plan.seeds:
        for key, err in results[f"identity/seed={s}"]["relative_error"].items():
            dtype = key.split("/")[0]
            checks[dtype].append(err / TOLERANCES[dtype])
    return {
        "primary": {"all": stats.paired_differences(acc["BN with γ, β"], acc["BN without γ, β"])},
        "secondary": {
            f"near-linear fraction |x| < {plan.config['band']:g}, without − with γ, β": {
                "values": stats.paired_differences([r["band_fraction"][-1] for r in without_ab],
                                                   [r["band_fraction"][-1] for r in with_ab]), "unit": "fraction",
                "note": "N(0,1) sigmoid inputs give 0.683"},
            "test accuracy of the no-BN net": {"values": acc["no BN"], "unit": "accuracy"}},
        "checks": {f"identity recovery, {k}": v for k, v in checks.items()},
        "test_acc": acc,
    }


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    checks = [base.verification(name, ratios) for name, ratios in (metrics.get("checks") or {}).items()]
    return base.decide_endpoint(PROTOCOL.endpoint, metrics, checks)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    cfg = plan.config
    series, groups = [], []
    for label, _, _ in VARIANTS:
        recs = [results[f"train/{label}/seed={s}"] for s in plan.seeds]
        steps = recs[0]["steps"]
        series.append({"label": label, "x": steps,
                       "y": [sum(r["band_fraction"][i] for r in recs) / len(recs) for i in range(len(steps))]})
        est = stats.mean_ci(metrics["test_acc"][label])
        groups.append({"label": label, "values": [est.effect],
                       "lo": [math.nan if est.ci_low is None else est.ci_low],
                       "hi": [math.nan if est.ci_high is None else est.ci_high]})
    return [
        base.Figure("band_fraction", "lines", "Sigmoid inputs in the near-linear band over training",
               f"Fraction of sigmoid inputs with |x| < {cfg['band']:g} (mean over the 3 hidden layers and "
               f"{len(plan.seeds)} seeds) on {cfg['probe_examples']} held-out examples. N(0,1) inputs give 0.683.",
               {"panels": [{"title": "near-linear fraction", "xlabel": "step", "ylabel": "fraction |x| < 1",
                            "series": series}]}),
        base.Figure("accuracy", "bars", "Final test accuracy",
               f"Mean and 95% CI over {len(plan.seeds)} seeds after {cfg['steps']} steps.",
               {"panels": [{"title": "test accuracy", "ylabel": "accuracy", "categories": [cfg["model"]],
                            "groups": groups}]}),
    ]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    cfg = plan.config
    band = decision.secondary[0]
    summary = (f"Test accuracy with − without γ, β: {base.brief(decision.primary[0], 4)}. Sigmoid inputs in the "
               f"near-linear band, without − with γ, β: {base.brief(band, 3)}. Identity recovery: "
               + ("verified." if all(v.passed for v in decision.verifications) else "FAILED."))
    method = (f"{cfg['model']} (3×100 sigmoid, BN before the sigmoid) on {cfg['dataset']}, SGD lr {cfg['lr']}, batch "
              f"{cfg['batch_size']}, {cfg['steps']} steps, {len(plan.seeds)} seeds; band fraction on "
              f"{cfg['probe_examples']} test examples every {cfg['probe_every']} steps.")
    caveats = ["The band fraction is measured with the statistics of a fixed held-out batch (BN in training mode), "
               "so it shows where the learned γ, β put the sigmoid inputs, not the running-statistics inference path."]
    if cfg["steps"] < 10000:
        caveats.append(f"{cfg['steps']} SGD steps instead of Ioffe's 50k: γ and β may not have moved far from 1 and "
                       "0 yet, so the difference between the two BN nets is likely smaller than at convergence.")
    return base.Description(summary, method, caveats)
