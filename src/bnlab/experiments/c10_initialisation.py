"""C10 — "BN makes training insensitive to initialisation".

What is measured (`bnlab.trials.init_scale`): Ioffe's MNIST net (3 × 100 sigmoid, BN before the nonlinearity)
on mnist5k, with the Glorot-uniform initial weights of the *hidden* layers multiplied by s ∈ {10⁻³ … 10²}, with
and without BN, trained by SGD with one learning rate for every run. The same sweep of the *output* layer's scale
is run apart (a secondary result): BN cannot normalise the logits, so mixing the two would blame BN for the
output layer.

Primary endpoint: per seed, the worst-case final test accuracy over the hidden-layer scales (a diverged run counts
as chance), with BN minus without, paired by seed. A net that fails at every scale has a low worst case, so it
cannot score as "perfectly insensitive" (the range of accuracy over scales would give it 0). The 95% t-interval wholly
above 0 -> supported, wholly below -> refuted, else inconclusive.
Secondary: the fraction of scales at which each net trains -- reaches at least halfway from chance to the best
accuracy any net reaches on that seed (a threshold tied to the best net, fixed by definition) -- and the worst case
over output-layer scales.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.experiments import base, outcomes, stats
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C10"
TRIALS = "bnlab.trials.init_scale"
NORMS: tuple[tuple[str, str], ...] = (("bn", "BN"), ("none", "no BN"))
SCALE_KEY = {"hidden": "init_scales", "output": "output_scales"}  # which layers are scaled -> the config's scales


@dataclass(frozen=True)
class C10Config:
    dataset: str = "mnist5k"
    model: str = "mlp"
    init_scales: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    output_scales: tuple[float, ...] = (1e-2, 1.0, 100.0)
    steps: int = 500
    batch_size: int = 60
    lr: float = 0.5
    momentum: float = 0.0


CONFIGS: dict[str, C10Config] = {
    "smoke": C10Config(init_scales=(1e-3, 1.0, 100.0), output_scales=(100.0,), steps=15, batch_size=32),
    "default": C10Config(),
    "paper": C10Config(init_scales=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0), steps=10000),
}

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="worst-case test accuracy over hidden-layer init scales, BN − no BN",
        measure="per seed: the minimum over init scales s ∈ {1e-3 … 1e2} of the hidden layers of the final test "
                "accuracy (diverged = chance), with BN minus without",
        unit="accuracy", test="t", threshold=0.0,
        threshold_source="0 = BN's worst case no better than no BN's; the claim predicts a better worst case",
        settings=("hidden layers",)),
    cost="cheap",
    secondary=("fraction of init scales at which each net trains (≥ halfway from chance to the best net's accuracy "
               "on that seed)", "worst-case test accuracy over output-layer scales, BN − no BN"),
    runs="Ioffe's 3 × 100 sigmoid MLP on mnist5k, hidden weights × {1e-3, 1e-2, 0.1, 1, 10, 100}, SGD lr 0.5, batch "
         "60, 500 steps, 8 seeds; output weights × {1e-2, 1, 100} apart",
    paper="No paper protocol: Ioffe & Szegedy state that BN lessens the dependence on the initial scale (Sec. 3.3). "
          "The paper scale sweeps 11 scales for 10k steps.",
    why="The range of accuracy over scales would score a net that fails at every scale as insensitive; the worst "
        "case does not. The output layer, which BN cannot normalise, is rescaled apart from the hidden layers and "
        "reported as a secondary, so that BN is not blamed for a layer it does not normalise.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(0.01, base.ONE_POINT)

RULE = ("Per seed: effect = min over hidden-layer init scales of the final test accuracy with BN, minus the same "
        "without BN (a diverged run counts as chance). The 95% t-interval of the mean effect wholly above 0 -> "
        "supported, wholly below 0 -> refuted, otherwise inconclusive. The trained fraction and the output-layer "
        "sweep are reported, never voted.")


def _name(norm: str, where: str, scale: float, seed: int) -> str:
    return f"{norm}/{where}={scale:g}/seed={seed}"


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = base.config_for(CONFIGS, scale)
    seed_list = base.seeds_for(scale, seeds, first_seed, PROTOCOL.cost)
    run = {"dataset": cfg.dataset, "model": cfg.model, "steps": cfg.steps, "batch_size": cfg.batch_size,
           "lr": cfg.lr, "momentum": cfg.momentum}
    trials = [Trial(CLAIM_ID, _name(norm, where, s, seed), f"{TRIALS}:init_scale_run",
                    {**run, "norm": norm, "init_scale": s, "where": where, "seed": seed},
                    cost=cfg.steps * (2.0 if norm == "bn" else 1.0) / 1000)
              for where, scales in (("hidden", cfg.init_scales), ("output", cfg.output_scales))
              for norm, _ in NORMS for s in scales for seed in seed_list]
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def accuracy(rec: Mapping[str, Any]) -> float:
    """Final test accuracy, or chance when the run diverged or ended with a non-finite accuracy (the worst outcome
    for the net that diverged, never a missing seed: `outcomes.scored_accuracy`)."""
    return outcomes.scored_accuracy(rec["test_acc"], rec["diverged"], rec["chance"])


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    cfg = plan.config
    acc = {(n, w): [[accuracy(results[_name(n, w, s, seed)]) for s in cfg[SCALE_KEY[w]]] for seed in plan.seeds]
           for n, _ in NORMS for w in SCALE_KEY}  # (seeds, scales)
    worst = {k: [min(row) for row in v] for k, v in acc.items()}
    chance = results[_name("bn", "hidden", cfg["init_scales"][0], plan.seeds[0])]["chance"]
    trained = {n: [] for n, _ in NORMS}
    for i in range(len(plan.seeds)):
        best = max(max(acc[n, "hidden"][i]) for n, _ in NORMS)
        bar = chance + (best - chance) / 2
        for n, _ in NORMS:
            trained[n].append(sum(a >= bar for a in acc[n, "hidden"][i]) / len(acc[n, "hidden"][i]))
    secondary = {f"fraction of init scales trained, {label}": {"values": trained[n], "unit": "fraction"}
                 for n, label in NORMS}
    secondary["worst-case test accuracy over output-layer scales, BN − no BN"] = {
        "values": stats.paired_differences(worst["bn", "output"], worst["none", "output"]), "unit": "accuracy"}
    return {"primary": {"hidden layers": stats.paired_differences(worst["bn", "hidden"], worst["none", "hidden"])},
            "secondary": secondary, "accuracy": {f"{n}/{w}": v for (n, w), v in acc.items()}}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    panels = []
    for where, key in SCALE_KEY.items():
        series = []
        for n, label in NORMS:
            ests = [stats.mean_ci(col) for col in zip(*metrics["accuracy"][f"{n}/{where}"])]
            series.append({"label": label, "x": list(plan.config[key]), "y": [e.effect for e in ests],
                           "lo": [math.nan if e.ci_low is None else e.ci_low for e in ests],
                           "hi": [math.nan if e.ci_high is None else e.ci_high for e in ests]})
        panels.append({"title": f"{where} layers scaled", "xlabel": "init scale (× Glorot)",
                       "ylabel": "test accuracy", "xscale": "log", "series": series})
    return [base.Figure("accuracy_vs_init", "lines", "Final test accuracy vs initialisation scale",
                   f"Mean and 95% CI over {len(plan.seeds)} seeds; diverged runs count as chance. Left: the hidden "
                   "layers' initial weights scaled (the endpoint); right: the output layer's only.",
                   {"panels": panels})]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    cfg = plan.config
    trained = {r.name: r for r in decision.secondary}
    summary = (f"Worst-case test accuracy over hidden-layer scales {cfg['init_scales'][0]:g}…{cfg['init_scales'][-1]:g}"
               ", "
               f"BN − no BN: {base.brief(decision.primary[0], 3)}. Scales trained: BN "
               f"{base.brief(trained['fraction of init scales trained, BN'], 2)}, no BN "
               f"{base.brief(trained['fraction of init scales trained, no BN'], 2)}. Verdict: {decision.verdict}.")
    method = (f"{cfg['model']} on {cfg['dataset']}, hidden weights × {list(cfg['init_scales'])}, output weights × "
              f"{list(cfg['output_scales'])}, BN vs no BN, SGD lr {cfg['lr']}, momentum {cfg['momentum']}, batch "
              f"{cfg['batch_size']}, {cfg['steps']} steps, {len(plan.seeds)} seeds.")
    caveats = [f"One learning rate ({cfg['lr']}) for every scale and both nets; a net that fails at some scale might "
               "train with a learning rate tuned for that scale.",
               "At tiny hidden scales ε = 1e-5 keeps BN from undoing the scale (σ² ≲ ε), and BN's 1/scale gradient "
               "makes the first updates large relative to the weights."]
    return base.Description(summary, method, caveats)
