"""C01 — BN's computation (Ioffe & Szegedy 2015, Alg. 1 and 2): batch mean and *biased* variance, normalise with ε,
then γ and β; population statistics at inference.

What is measured (a verification, not a statistical vote). Per seed (`bnlab.trials.verification`):
* `mechanics`: every C01 row of `bnlab.checks` -- bnlab's `BatchNorm` against torch's BatchNorm1d/2d/3d (outputs,
  input and parameter gradients, running statistics over 3 steps with momentum 0.1 and None, eval outputs; float64
  and float32), against a literal NumPy transcription of Alg. 1, its analytic backward against central finite
  differences, its double backward against torch's, state_dicts both ways, and `precise_statistics` against Alg. 2
  computed by hand;
* `population`: Ioffe's 3 × 100 sigmoid MLP with BN trained briefly; Alg. 2 population statistics
  (`precise_statistics`, frozen weights) against a NumPy Alg. 2 on the same BN inputs.

Primary endpoint: the worst error ÷ tolerance over every check and seed (tolerances in `bnlab.checks.TOLERANCES`:
float64 round-off 1e-10, float32 1e-5; Alg. 2 on the trained net 1e-6 relative, float32 buffers).
Rule (`base.decide_verifications`): supported when every ratio is < 1, refuted when any check exceeds its
tolerance. Secondary: how far the EMA running statistics lag Alg. 2, and the test accuracy each gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.checks import TOLERANCES
from bnlab.experiments import base, stats
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C01"
TRIALS = "bnlab.trials.verification"
ALG2_TOL = 1e-6  # relative: float32 running buffers against a float64 NumPy Alg. 2 (float32 round-off, ~1e-7)


@dataclass(frozen=True)
class C01Config:
    dataset: str = "synthetic"
    model: str = "mlp"
    steps: int = 200
    batch_size: int = 60
    lr: float = 0.5
    precise_batches: int = 20


CONFIGS: dict[str, C01Config] = {
    "smoke": C01Config(steps=20, precise_batches=5),
    "default": C01Config(),
    "paper": C01Config(dataset="mnist5k", steps=50000, precise_batches=100),
}

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="worst error ÷ tolerance", measure="max over every verification row and seed of its error divided by "
        "its tolerance (bnlab.checks.TOLERANCES)", unit="ratio (< 1 passes)", test="verification", threshold=1.0,
        threshold_source="tolerances set by the precision of the arithmetic before any run: 1e-10 in float64, "
                         "1e-5 in float32, 1e-6 for float32 running buffers against a float64 Alg. 2"),
    cost="cheap",
    secondary=("EMA running statistics vs Alg. 2 population statistics (relative gap)",
               "test accuracy with Alg. 2 minus with the EMA statistics"),
    verifications=tuple(name for name, (claim, _, _) in TOLERANCES.items() if claim == "C01")
    + ("population.alg2_trained_net",),
    runs="the bnlab.checks C01 rows on seeded inputs; Ioffe's sigmoid MLP with BN trained 200 SGD steps on "
         "synthetic data, then Alg. 2 over 20 batches",
    paper="Ioffe & Szegedy Alg. 1 and 2 are definitions; nothing to reproduce at a larger scale (the paper scale "
          "trains the MLP on MNIST for 50k steps before Alg. 2).",
    why="An identity is verified, not voted on: it is supported or refuted by its tolerance, reported apart from "
        "the statistical claims.")

RULE = ("Verification: supported when every check of every seed is within its tolerance (error ÷ tolerance < 1), "
        "refuted when any check exceeds its tolerance, inconclusive when a check produced no number.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = base.config_for(CONFIGS, scale)
    seed_list = base.seeds_for(scale, seeds, first_seed, PROTOCOL.cost)
    trials = [Trial(CLAIM_ID, f"verify/seed={s}", f"{TRIALS}:mechanics", {"seed": s}, cost=0.05) for s in seed_list]
    trials += [Trial(CLAIM_ID, f"population/seed={s}", f"{TRIALS}:population", {**asdict(cfg), "seed": s},
                     cost=cfg.steps / 2000) for s in seed_list]
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    checks: dict[str, list[float]] = {}
    errors: dict[str, list[float]] = {}
    for s in plan.seeds:
        for name, err in results[f"verify/seed={s}"]["errors"].items():
            tol = TOLERANCES[name][1]
            errors.setdefault(name, []).append(err)
            checks.setdefault(name, []).append(err / tol if tol > 0 else (0.0 if err == 0 else math.inf))
    pops = [results[f"population/seed={s}"] for s in plan.seeds]
    checks["population.alg2_trained_net"] = [p["alg2_rel_error"] / ALG2_TOL for p in pops]
    errors["population.alg2_trained_net"] = [p["alg2_rel_error"] for p in pops]
    secondary = {
        "EMA vs Alg. 2 running variance, max relative gap": {"values": [p["ema_gap_var"] for p in pops],
                                                             "unit": "relative"},
        "test accuracy with Alg. 2 − with EMA statistics": {
            "values": stats.paired_differences([p["test_acc_precise"] for p in pops],
                                               [p["test_acc_ema"] for p in pops]), "unit": "accuracy"},
    }
    return {"checks": checks, "max_errors": {k: max(v) for k, v in errors.items()}, "secondary": secondary}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_verifications(PROTOCOL.endpoint, metrics)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    worst = metrics["max_errors"]
    names = sorted(worst)
    tol = {n: TOLERANCES[n][1] if n in TOLERANCES else ALG2_TOL for n in names}
    floor = 1e-18
    return [base.Figure(
        "errors", "bars", "Max error of each verification vs its tolerance",
        f"log10 of the worst error over {len(plan.seeds)} seeds (errors of exactly 0 drawn at {floor:g}) and of its "
        "tolerance; every bar of 'max error' below its 'tolerance' bar is a pass.",
        {"panels": [{"title": "C01 verifications", "ylabel": "log10 error", "categories": names,
                     "groups": [{"label": "max error", "values": [math.log10(max(worst[n], floor)) for n in names]},
                                {"label": "tolerance", "values": [math.log10(max(tol[n], floor)) for n in names]}]}]})]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    failed = [v.name for v in decision.verifications if not v.passed]
    cfg = plan.config
    summary = (f"{len(decision.verifications)} verifications over {len(plan.seeds)} seeds: "
               + ("all within tolerance" if not failed else f"{len(failed)} failed ({', '.join(failed)})")
               + f"; worst error ÷ tolerance {decision.primary[0].effect:.2g}. Alg. 2 population statistics on a "
               f"trained net match a NumPy Alg. 2 to {metrics['max_errors']['population.alg2_trained_net']:.1e} "
               "(relative).")
    method = (f"bnlab BatchNorm vs torch BatchNorm1d/2d/3d, NumPy Alg. 1, finite differences and torch's double "
              f"backward, {len(plan.seeds)} seeds; Alg. 2 precise statistics ({cfg['precise_batches']} batches) on "
              f"{cfg['model']} with BN trained {cfg['steps']} SGD steps (lr {cfg['lr']}, batch {cfg['batch_size']}) "
              f"on {cfg['dataset']}.")
    return base.Description(summary, method, [
        "Tolerances are set for float64 (1e-10) and float32 (1e-5) round-off; they test the formulas, not "
        "bit-equality with torch's fused kernels.",
        "Test accuracy with EMA vs precise statistics is reported, not judged: after a short training run the EMA "
        "lags the weights, which is the reason Alg. 2 exists."])
