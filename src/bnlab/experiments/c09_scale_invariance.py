"""C09 — scale invariance: BN(αWx) = BN(Wx), ∂L/∂(αW) = (1/α)∂L/∂W, "which acts like an adaptive learning rate"
(Ioffe & Szegedy 2015, Sec. 3.3; Li & Arora 2019; Arora, Li & Lyu 2019).

What is measured (`bnlab.trials.scale_invariance`).
* The behaviour (primary): the angular-update equilibrium of Wan et al. 2021 (also Kosson et al. 2024). For a
  scale-invariant weight W under SGD with momentum α and weight decay λ at learning rate η, the gradient is
  orthogonal to W and shrinks as 1/‖W‖, so the step turns W by an angle ∝ η/‖W‖² -- the adaptive learning rate --
  while the decay shrinks ‖W‖. The two balance: ‖W‖ settles where the per-step angular update is
  √(2ηλ/(1+α)), whatever the layer, the loss or the initial norm (η = 0.1, λ = 5·10⁻⁴, α = 0.9 -> 0.00725
  rad/step). Measured per layer of Ioffe's MLP with BN: the mean angle W turns by per step over the last third of
  training, against the prediction. Without the adaptive rate (fixed effective lr) there is no reason for this
  value: the same net without BN is reported beside it.
* The identities (verifications): BN(αWx) = BN(Wx), α∂L/∂(αW) = ∂L/∂W, ⟨∇W, W⟩ = 0 for α ∈ {0.1, …, 100}
  (ε = 1e-14); the SGD norm recursion ‖W_T‖² − ‖W_0‖² = Σ_t η²‖∇W_t‖² (gradients orthogonal to W); and the
  twin runs: two SGD runs from the same init and batches, (W₀, lr) and (α·W₀, lr·α²) on the pre-norm weights
  (α = 3), compute the same function at every step with BN (an exact identity of SGD trajectories up to the ε
  effect), checked to `TWIN_TOL` in relative output distance on 256 held-out inputs.
* Secondary: the twin distance without / with BN (plain SGD and momentum 0.9); the no-BN net's angular update
  against the same prediction; the weight-norm growth without weight decay (η/‖W‖² falls by exp(−2g)); how much
  weight decay lowers that growth.

Primary endpoint: per layer (settings "layer 1..3"), per seed, log(measured mean angular update / √(2ηλ/(1+α)))
of the BN net; a run that diverged, or a layer whose mean angle is not a positive finite number, is the worst
outcome, +inf: infinitely far above the prediction (a run that blows up turns its weights by far more than the
equilibrium angle), never a missing seed (`bnlab.experiments.outcomes.single_worst`). Equivalence within ±log 1.25
by two one-sided exact signed-rank tests (rank TOST; Hodges–Lehmann effect): both one-sided p < 0.05 -> supported,
a location beyond the margin shown at p < 0.025 -> refuted; the layers combined by `stats.combine`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.checks import TOLERANCES
from bnlab.experiments import base, outcomes, stats
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C09"
TRIALS = "bnlab.trials.scale_invariance"
RECURSION_TOL = 0.05  # relative: ε = 1e-5 makes ∇W ⊥ W inexact, and that accumulates over the steps
TWIN_TOL = 1e-3  # relative output distance of the BN twins: the ε = 1e-5 effect, accumulated over the steps
MARGIN = math.log(1.25)  # equivalence margin of log(measured / predicted angular update)
LAYERS = ("layer 1", "layer 2", "layer 3")  # the pre-norm weights of Ioffe's MLP, in forward order
# the side a diverged BN run lies on in the primary endpoint: above the prediction (it turns its weights by far more)
WORST_SIDE = 1.0


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
    # the angular-update equilibrium (Wan et al. 2021): SGD with momentum and weight decay, ImageNet-like values
    angular_steps: int = 4000  # the norm settles on a time scale (1 − α)/(2ηλ) = 1000 steps
    angular_lr: float = 0.1
    angular_momentum: float = 0.9
    angular_weight_decay: float = 5e-4
    angular_tail: float = 1 / 3  # the mean angular update over the last third of the steps


CONFIGS: dict[str, C09Config] = {
    "smoke": C09Config(steps=40, record_every=10, angular_steps=60),
    "default": C09Config(),
    "paper": C09Config(dataset="mnist5k", steps=20000, lr=0.1, dynamics_lr=0.1, weight_decay=5e-4, record_every=1000,
                       angular_steps=20000),
}

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="log(measured / predicted angular update per step) of the pre-BN weights",
        measure="per layer, per seed: log of the mean angle the layer's weight turns by per step over the last "
                "third of training (SGD, momentum α = 0.9, weight decay λ = 5·10⁻⁴, lr η = 0.1) over the "
                "equilibrium √(2ηλ/(1+α)) = 0.00725 rad/step (Wan et al. 2021)",
        unit="log ratio", test="rank_tost", threshold=MARGIN,
        threshold_source="±log 1.25: the equilibrium assumes a stationary gradient scale and uses the root of a "
                         "mean square where the angle's mean is measured (Jensen), a few per cent each; a "
                         "25% band still tells the predicted rate from one off by a factor",
        settings=LAYERS),
    cost="cheap",
    secondary=("log(output distance of the (αW₀, α²lr) twin runs: without BN / with BN), plain SGD and momentum 0.9",
               "log(measured / predicted angular update) of the same net without BN (no scale invariance)",
               "log(‖W_T‖/‖W_0‖) without weight decay (η/‖W‖² falls by its square)",
               "log growth without minus with weight decay"),
    verifications=("invariance.forward", "invariance.grad", "invariance.orthogonality", "SGD norm recursion",
                   f"twin runs coincide with BN (relative output distance < {TWIN_TOL:g})"),
    runs="Ioffe's MLP (3 × 100 sigmoid) with and without BN on synthetic data, float64: the equilibrium runs, SGD "
         "lr 0.1, momentum 0.9, weight decay 5·10⁻⁴, 4000 steps; the twin runs at lr 0.5, 400 steps, α = 3; the "
         "norm dynamics at lr 1 with weight decay 0 and 1e-3; 8 seeds",
    paper="Ioffe & Szegedy Sec. 3.3 states the identities; Arora, Li & Lyu and Li & Arora derive the adaptive "
          "learning rate; Wan et al. 2021 derive and measure the angular-update equilibrium on ImageNet ResNets "
          "(lr 0.1, momentum 0.9, weight decay 10⁻⁴ to 5·10⁻⁴), Kosson et al. 2024 per layer. The paper scale "
          "runs MNIST for 20k steps.",
    why="The twin-run distance is an exact identity of SGD trajectories for scale-invariant weights: it cannot "
        "fail, so it is a verification, not a vote. The claim is behavioural -- η/‖W‖² adapts as ‖W‖ moves -- "
        "and its quantitative consequence under weight decay is the angular-update equilibrium "
        "√(2ηλ/(1+α)), the same for every scale-invariant layer: it fails if the effective learning rate does "
        "not adapt (the angle would then follow the gradient's own scale), and it is measured per layer, each "
        "layer a setting. The margin was fixed by the reasoning beside the threshold; the length of the runs by "
        "the norm's time scale (1 − α)/(2ηλ) = 1000 steps and one pilot run on seed 1000, outside the audit's "
        "seeds, whose angle had settled by step 2000.")

# the smallest effect the endpoint cares about: an equivalence vote's power is computed at a true difference of 0
# (the predicted equilibrium holds exactly); the number below is the margin's size, stated for the page
INTEREST = base.Interest(0.22, "equivalence within ±log 1.25 (0.22): power at a true difference of 0")

RULE = ("Per layer, per seed: effect = log(mean angular update of the BN net's pre-norm weight over the last third "
        "of training / √(2ηλ/(1+α))); a run that diverged counts as +inf (the worst outcome: infinitely far "
        "above the prediction), never a missing seed. Per layer, equivalence within ±log 1.25 by two one-sided "
        "exact Wilcoxon signed-rank tests: both one-sided p < 0.05 -> supported, a location beyond the margin "
        "shown at one-sided p < 0.025 -> refuted, otherwise inconclusive; the layers combined by "
        "stats.combine. The identities, the norm recursion and the twin runs are verifications, reported apart; "
        "the twin distances, the no-BN net's angular update, weight-norm growth and weight decay are reported, "
        "never voted.")


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
    trials += [Trial(CLAIM_ID, f"angular/{norm}/seed={s}", f"{TRIALS}:angular_update",
                     {"dataset": cfg.dataset, "model": cfg.model, "norm": norm, "steps": cfg.angular_steps,
                      "batch_size": cfg.batch_size, "lr": cfg.angular_lr, "momentum": cfg.angular_momentum,
                      "weight_decay": cfg.angular_weight_decay, "tail": cfg.angular_tail, "seed": s},
                     cost=cfg.angular_steps / 400)
               for norm in ("bn", "none") for s in seed_list]
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def _positive_mean(values) -> float | None:
    """The geometric mean of the positive finite values (None if there are none): what a log axis can draw."""
    v = stats.log_mean(values)
    return math.exp(v) if math.isfinite(v) else None


def twin_distance(results: Mapping[str, dict], norm: str, momentum: float, seeds: tuple[int, ...]) -> list[float]:
    """Per seed: the mean over record times of log(relative output distance) of the twin runs."""
    return [stats.log_mean(results[f"twin/{norm}/momentum={momentum:g}/seed={s}"]["relative_distance"])
            for s in seeds]


def angular_log_ratios(results: Mapping[str, dict], norm: str, seeds: tuple[int, ...],
                       worst: bool = False) -> list[list[float]]:
    """Per layer, per seed: log(mean angular update over the tail / √(2ηλ/(1+α))). Where a run diverged or its
    tail mean is not a positive finite number: NaN (the secondary's treatment: left out), or with `worst` +inf, the
    worst outcome of the primary endpoint (`outcomes.single_worst`: infinitely far above the prediction)."""
    runs = [results[f"angular/{norm}/seed={s}"] for s in seeds]
    out = []
    for i in range(len(LAYERS)):
        fails = [outcomes.failed(r["diverged_at"] is not None, r["tail_mean"][i], positive=True) for r in runs]
        out.append([outcomes.single_worst(None, True, WORST_SIDE) if f and worst
                    else math.nan if f else stats.log_ratio(r["tail_mean"][i], r["predicted"])
                    for r, f in zip(runs, fails)])
    return out


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
    checks[f"twin runs coincide with BN (relative output distance < {TWIN_TOL:g})"] = [
        (max(d) if d and None not in d else math.inf) / TWIN_TOL
        for m in (0.0, 0.9) for d in (results[f"twin/bn/momentum={m:g}/seed={s}"]["relative_distance"] for s in seeds)]
    growth = [r["log_growth"] for r in plain]
    angular = {"bn": angular_log_ratios(results, "bn", seeds, worst=True),
               "none": angular_log_ratios(results, "none", seeds)}
    secondary = {
        "log twin distance without / with BN, plain SGD": {
            "values": stats.paired_differences(logd["none", 0.0], logd["bn", 0.0]), "unit": "log ratio",
            "note": "the identity the verification checks, seen as a contrast"},
        "log twin distance without / with BN, momentum 0.9": {
            "values": stats.paired_differences(logd["none", 0.9], logd["bn", 0.9]), "unit": "log ratio"},
        "log10 relative output distance of the BN twins, plain SGD": {
            "values": [v / math.log(10) for v in logd["bn", 0.0]], "unit": "log10",
            "note": "ε = 1e-5 makes the cancellation approximate: √(α²σ² + ε) ≠ α√(σ² + ε)"},
        **{f"log(measured / predicted angular update) without BN [{layer}]": {
            "values": angular["none"][i], "unit": "log ratio",
            "note": "no scale invariance: no equilibrium law; a seed whose run diverged is left out here"}
           for i, layer in enumerate(LAYERS)},
        "log(‖W_T‖/‖W_0‖) of the pre-BN weights, no weight decay": {
            "values": growth, "unit": "log ratio", "note": "η/‖W‖² falls by exp(−2·this)"},
        "log growth without minus with weight decay": {
            "values": stats.paired_differences(growth, [r["log_growth"] for r in decayed]), "unit": "log ratio"},
    }
    return {"primary": dict(zip(LAYERS, angular["bn"])), "secondary": secondary, "checks": checks,
            "predicted_angle": results[f"angular/bn/seed={seeds[0]}"]["predicted"]}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    """The equilibrium endpoint votes per layer; the identities, the norm recursion and the twin runs are reported
    as verifications."""
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
    ang_runs = {n: [results[f"angular/{n}/seed={s}"] for s in plan.seeds] for n in ("bn", "none")}
    k = min(len(r["curve_steps"]) for rs in ang_runs.values() for r in rs)
    ang = [{"label": f"{label}, {layer}", "x": ang_runs[n][0]["curve_steps"][:k],
            "y": [_positive_mean(r["curve"][i][j] for r in ang_runs[n]) for j in range(k)]}
           for n, label in (("bn", "BN"), ("none", "no BN")) for i, layer in enumerate(LAYERS)]
    predicted = ang_runs["bn"][0]["predicted"]
    ang.append({"label": f"√(2ηλ/(1+α)) = {predicted:.5f}", "x": [ang[0]["x"][0], ang[0]["x"][-1]],
                "y": [predicted, predicted]})
    return [base.Figure("angular_update", "lines", "Does the angular update settle at √(2ηλ/(1+α))?",
                        f"Angle (rad) each pre-norm weight turns by per step, window means, geometric mean over "
                        f"{len(plan.seeds)} seeds; SGD lr {plan.config['angular_lr']:g}, momentum "
                        f"{plan.config['angular_momentum']:g}, weight decay {plan.config['angular_weight_decay']:g}. "
                        "The primary endpoint is the mean over the last third of the steps.",
                        {"panels": [{"title": "angular update per step", "xlabel": "step", "ylabel": "rad/step",
                                     "yscale": "log", "series": ang}]}),
            base.Figure("twin_runs", "lines", "Does (α·W₀, α²·lr) follow the same function as (W₀, lr)?",
                   f"Relative distance of the two runs' outputs on held-out inputs (geometric mean over "
                   f"{len(plan.seeds)} seeds), α = {plan.config['alpha']:g}; and the effective learning rate "
                   "η/‖W‖² of the pre-BN weights under plain SGD.",
                   {"panels": [{"title": "twin-run distance", "xlabel": "step", "ylabel": "‖f_A − f_B‖ / ‖f_A‖",
                                "yscale": "log", "series": series},
                               {"title": "effective learning rate", "xlabel": "step", "ylabel": "η/‖W‖²",
                                "yscale": "log", "series": eff}]})]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    failed = [v.name for v in decision.verifications if not v.passed]
    cfg = plan.config
    layers = "; ".join(f"{r.setting}: {base.brief(r)}" for r in decision.primary)
    summary = (f"Angular update of the BN net's pre-norm weights against the equilibrium √(2ηλ/(1+α)) = "
               f"{metrics['predicted_angle']:.5f} rad/step, log(measured / predicted) per layer: {layers} (margin "
               f"±{MARGIN:.3f}). Verdict: {decision.verdict}. Identities, norm recursion and twin runs: "
               + ("all within tolerance." if not failed else f"failed: {', '.join(failed)}."))
    method = (f"{cfg['model']} with and without BN on {cfg['dataset']}, float64, batch {cfg['batch_size']}, "
              f"{len(plan.seeds)} seeds. Equilibrium: SGD lr {cfg['angular_lr']:g}, momentum "
              f"{cfg['angular_momentum']:g}, weight decay {cfg['angular_weight_decay']:g} on every parameter, "
              f"{cfg['angular_steps']} steps, mean over the last {cfg['angular_tail']:.0%}. Twin runs: SGD lr "
              f"{cfg['lr']} (momentum 0 and 0.9), {cfg['steps']} steps, α = {cfg['alpha']:g}, distances on "
              f"{cfg['eval_examples']} held-out inputs every {cfg['record_every']} steps. Norm dynamics at lr "
              f"{cfg['dynamics_lr']}, weight decay 0 and {cfg['weight_decay']:g}.")
    return base.Description(summary, method, [
        "Only the weights feeding a normalisation are scale invariant; biases and the output layer keep lr. With "
        "weight decay the twin-run equivalence breaks (the decay term scales with α, the gradient with 1/α).",
        f"The equilibrium is reached on a time scale of about (1 − α)/(2ηλ) = "
        f"{(1 - cfg['angular_momentum']) / (2 * cfg['angular_lr'] * cfg['angular_weight_decay']):.0f} steps; at a "
        "scale with fewer steps (smoke) the angle has not settled and the vote says nothing about the claim.",
        "With the default ε = 1e-5 the twin-run cancellation is approximate; the BN twins' distance (secondary) "
        "shows its size.",
        "A BN run that diverged counts as +inf in the primary endpoint (infinitely far above the prediction: the "
        "worst outcome), never as a missing seed; the no-BN net's angular update (secondary) leaves it out."])
