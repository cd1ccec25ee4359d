"""C09 — scale invariance: BN(αWx) = BN(Wx), ∂L/∂(αW) = (1/α)∂L/∂W, "which acts like an adaptive learning rate"
(Ioffe & Szegedy 2015, Sec. 3.3; Li & Arora 2019; Arora, Li & Lyu 2019).

What is measured (`bnlab.trials.scale_invariance`).
* The behaviour (primary): two SGD runs from the same init and batches, (W₀, lr) and (α·W₀, lr·α²) on the weights
  feeding the normalisation (every other parameter at lr), α = 3; the relative distance of their outputs on 256
  held-out inputs (BN with batch statistics) at every record time. If scale invariance acts as an adaptive learning
  rate, the BN pair computes the same function all along (up to the ε effect) while the no-BN pair does not.
* The identities (verifications): BN(αWx) = BN(Wx), α∂L/∂(αW) = ∂L/∂W, ⟨∇W, W⟩ = 0 for α ∈ {0.1, …, 100}
  (ε = 1e-14), and the SGD norm recursion ‖W_T‖² − ‖W_0‖² = Σ_t η²‖∇W_t‖² (gradients orthogonal to W).
* Secondary: the same pair of runs with momentum 0.9; the weight-norm growth without weight decay (so η/‖W‖²
  falls by exp(−2g)); how much weight decay lowers that growth.

Primary endpoint: per seed, mean over record times of log(distance without BN) − log(distance with BN) (log ratio of
geometric means); the 95% t-interval over seeds wholly above 0 -> supported, wholly below -> refuted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.checks import TOLERANCES
from bnlab.experiments import base, stats
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C09"
TRIALS = "bnlab.trials.scale_invariance"
RECURSION_TOL = 0.05  # relative; fixed in v1 of this check: ε = 1e-5 makes ∇W ⊥ W inexact, and that accumulates


@dataclass(frozen=True)
class C09Config:
    dataset: str = "synthetic"
    model: str = "mlp"
    steps: int = 400
    batch_size: int = 60
    lr: float = 0.5
    alpha: float = 3.0
    record_every: int = 50
    eval_examples: int = 256
    dynamics_lr: float = 1.0
    weight_decay: float = 1e-3


CONFIGS: dict[str, C09Config] = {
    "smoke": C09Config(steps=40, record_every=10),
    "default": C09Config(),
    "paper": C09Config(dataset="mnist5k", steps=20000, lr=0.1, dynamics_lr=0.1, weight_decay=5e-4, record_every=1000),
}

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="log(output distance of the (αW₀, α²lr) twin: without BN / with BN)",
        measure="per seed: mean over record times of log ‖f(W₀, lr) − f(αW₀, α²lr)‖/‖f(W₀, lr)‖ on held-out inputs, "
                "without BN minus with BN (α = 3, plain SGD, same init and batches)",
        unit="log ratio", test="t", threshold=0.0,
        threshold_source="0 = rescaling the weights (with lr·α²) changes the trajectory as much with BN as without; "
                         "scale invariance predicts BN's twins coincide (effect > 0)"),
    cost="cheap",
    secondary=("the same twin runs with momentum 0.9", "log(‖W_T‖/‖W_0‖) without weight decay (η/‖W‖² falls by its "
               "square)", "log growth without minus with weight decay"),
    verifications=("invariance.forward", "invariance.grad", "invariance.orthogonality", "SGD norm recursion"),
    runs="Ioffe's MLP (3 × 100 sigmoid) with and without BN on synthetic data, float64, plain SGD lr 0.5, 400 steps, "
         "α = 3, 8 seeds; the norm dynamics at lr 1 with weight decay 0 and 1e-3",
    paper="Ioffe & Szegedy Sec. 3.3 states the identities; Arora, Li & Lyu and Li & Arora derive the adaptive "
          "learning rate. No experiment in the papers to match; the paper scale runs MNIST for 20k steps.",
    why="The identities alone never tested the behavioural part of the claim. The twin-run test is its direct "
        "consequence: an exact identity of SGD trajectories for scale-invariant weights (and with momentum), broken "
        "without BN. Identities and the norm recursion are verifications, reported apart.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.69, base.FACTOR_TWO)

RULE = ("Per seed: effect = mean over record times of log(relative output distance of the twin runs) without BN "
        "minus with BN. The 95% t-interval of the mean effect over seeds wholly above 0 -> supported, wholly below "
        "0 -> refuted, otherwise inconclusive. The identities and the norm recursion are verifications, reported "
        "apart; momentum, weight-norm growth and weight decay are reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = base.config_for(CONFIGS, scale)
    seed_list = base.seeds_for(scale, seeds, first_seed, PROTOCOL.cost)
    twin = {k: getattr(cfg, k) for k in ("dataset", "model", "steps", "batch_size", "lr", "alpha", "record_every",
                                         "eval_examples")}
    trials = [Trial(CLAIM_ID, f"verify/seed={s}", f"{TRIALS}:verify", {"seed": s}, cost=0.02) for s in seed_list]
    trials += [Trial(CLAIM_ID, f"twin/{norm}/momentum={m:g}/seed={s}", f"{TRIALS}:trajectory",
                     {**twin, "norm": norm, "momentum": m, "seed": s}, cost=cfg.steps / 400)
               for norm in ("bn", "none") for m in (0.0, 0.9) for s in seed_list]
    trials += [Trial(CLAIM_ID, f"dynamics/wd={wd:g}/seed={s}", f"{TRIALS}:dynamics",
                     {"dataset": cfg.dataset, "model": cfg.model, "steps": cfg.steps, "batch_size": cfg.batch_size,
                      "lr": cfg.dynamics_lr, "weight_decay": wd, "record_every": cfg.record_every // 5 or 1,
                      "seed": s}, cost=cfg.steps / 1000)
               for wd in (0.0, cfg.weight_decay) for s in seed_list]
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def twin_distance(results: Mapping[str, dict], norm: str, momentum: float, seeds: tuple[int, ...]) -> list[float]:
    """Per seed: the mean over record times of log(relative output distance) of the twin runs."""
    return [stats.log_mean(results[f"twin/{norm}/momentum={momentum:g}/seed={s}"]["relative_distance"])
            for s in seeds]


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    seeds = plan.seeds
    logd = {(n, m): twin_distance(results, n, m, seeds) for n in ("bn", "none") for m in (0.0, 0.9)}
    checks: dict[str, list[float]] = {}
    for s in seeds:
        for name, err in results[f"verify/seed={s}"]["errors"].items():
            checks.setdefault(name, []).append(err / TOLERANCES[name][1])
    plain = [results[f"dynamics/wd=0/seed={s}"] for s in seeds]
    decayed = [results[f"dynamics/wd={plan.config['weight_decay']:g}/seed={s}"] for s in seeds]
    checks["SGD norm recursion"] = [abs(m - p) / p / RECURSION_TOL if p > 0 else math.inf
                                    for r in plain for m, p in zip(r["measured_growth"], r["predicted_growth"])]
    growth = [r["log_growth"] for r in plain]
    secondary = {
        "log distance ratio without / with BN, momentum 0.9": {
            "values": stats.paired_differences(logd["none", 0.9], logd["bn", 0.9]), "unit": "log ratio"},
        "log10 relative output distance of the BN twins, plain SGD": {
            "values": [v / math.log(10) for v in logd["bn", 0.0]], "unit": "log10",
            "note": "ε = 1e-5 makes the cancellation approximate: √(α²σ² + ε) ≠ α√(σ² + ε)"},
        "log(‖W_T‖/‖W_0‖) of the pre-BN weights, no weight decay": {
            "values": growth, "unit": "log ratio", "note": "η/‖W‖² falls by exp(−2·this)"},
        "log growth without minus with weight decay": {
            "values": stats.paired_differences(growth, [r["log_growth"] for r in decayed]), "unit": "log ratio"},
    }
    return {"primary": {"all": stats.paired_differences(logd["none", 0.0], logd["bn", 0.0])},
            "secondary": secondary, "checks": checks}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    """The behavioural endpoint votes; the identities and the norm recursion are reported as verifications."""
    checks = [base.verification(name, ratios) for name, ratios in (metrics.get("checks") or {}).items()]
    return base.decide_endpoint(PROTOCOL.endpoint, metrics, checks)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    series = []
    for norm, label in (("bn", "BN"), ("none", "no BN")):
        for m in (0.0, 0.9):
            runs = [results[f"twin/{norm}/momentum={m:g}/seed={s}"] for s in plan.seeds]
            n = min(len(r["steps"]) for r in runs)
            ys = [stats.log_mean(r["relative_distance"][i] for r in runs) for i in range(n)]
            series.append({"label": f"{label}, momentum {m:g}", "x": runs[0]["steps"][:n],
                           "y": [math.exp(v) if math.isfinite(v) else None for v in ys]})
    plain = [results[f"dynamics/wd=0/seed={s}"] for s in plan.seeds]
    n = min(len(r["steps"]) for r in plain)
    eff = [{"label": "BN, SGD, no weight decay", "x": plain[0]["steps"][:n],
            "y": [sum(r["lr"] / w**2 for r in plain for w in r["norms"][i]) / sum(len(r["norms"][i]) for r in plain)
                  for i in range(n)]}]
    return [base.Figure("twin_runs", "lines", "Does (α·W₀, α²·lr) follow the same function as (W₀, lr)?",
                   f"Relative distance of the two runs' outputs on held-out inputs (geometric mean over "
                   f"{len(plan.seeds)} seeds), α = {plan.config['alpha']:g}; and the effective learning rate "
                   "η/‖W‖² of the pre-BN weights under plain SGD.",
                   {"panels": [{"title": "twin-run distance", "xlabel": "step", "ylabel": "‖f_A − f_B‖ / ‖f_A‖",
                                "yscale": "log", "series": series},
                               {"title": "effective learning rate", "xlabel": "step", "ylabel": "η/‖W‖²",
                                "yscale": "log", "series": eff}]})]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    failed = [v.name for v in decision.verifications if not v.passed]
    summary = (f"Rescaling the pre-norm weights by α = {plan.config['alpha']:g} with lr·α²: log(distance without BN "
               f"/ with BN) = {base.brief(decision.primary[0])}. Identities and the norm recursion: "
               + ("all within tolerance." if not failed else f"failed: {', '.join(failed)}."))
    cfg = plan.config
    method = (f"{cfg['model']} with and without BN on {cfg['dataset']}, float64, SGD lr {cfg['lr']} (momentum 0 and "
              f"0.9), batch {cfg['batch_size']}, {cfg['steps']} steps, α = {cfg['alpha']:g}, distances on "
              f"{cfg['eval_examples']} held-out inputs every {cfg['record_every']} steps, {len(plan.seeds)} seeds; "
              f"norm dynamics at lr {cfg['dynamics_lr']}, weight decay 0 and {cfg['weight_decay']:g}.")
    return base.Description(summary, method, [
        "Only the weights feeding a normalisation are scale invariant; biases and the output layer keep lr. With "
        "weight decay the equivalence breaks (the decay term scales with α, the gradient with 1/α).",
        "With the default ε = 1e-5 the cancellation is approximate; the BN twins' distance (secondary) shows its "
        "size."])
