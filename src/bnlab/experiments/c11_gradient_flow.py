"""C11 — "BN prevents vanishing / exploding gradients: layer Jacobian eigenvalues stay near 1 in deep nets".

Yang et al. (2019, Thm 3.10): at initialisation a deep *plain* BN net's gradients explode going backwards,
‖∂L/∂W_l‖² growing by π/(π−1) ≈ 1.467 per ReLU layer ((B−2)/(B−3) for linear ones); residual connections tame it.

Measured (`bnlab.trials.gradient_flow`): `deep_mlp` nets (plain or residual, ReLU / tanh / linear, with and without
BN) at initialisation on one batch of B examples with standardised input features, BN with batch statistics: the
activation gradients ‖∂L/∂h_l‖² at the input of every weight layer, ‖∂L/∂W_l‖², and each layer's batch-Jacobian
mean squared singular value msv_l (Hutchinson). The no-BN nets are the fair comparators a practitioner would use
without BN: He initialisation for ReLU (Glorot for tanh and linear), and residual branches scaled by 1/√L.
Trainability by SGD at several depths.

Primary endpoint (ReLU nets; four settings vote, `stats.combine`):
* ``plain/jacobian``, ``residual/jacobian`` ("stay near 1"): per seed the BN net's end-to-end squared gain
  Σ_l log10 msv_l over the hidden blocks; equivalence (rank TOST) within ±1 decade of squared gain, i.e. the blocks
  together change a signal's norm by at most √10 ≈ 3.2×.
* ``plain/gradient``, ``residual/gradient`` ("prevents", vs no BN): per seed |log10 ‖∂L/∂h_first‖²/‖∂L/∂h_last‖²|
  (activation gradients at the first and last hidden block) of the fair no-BN net minus BN's, so vanishing and
  exploding both count; exact signed-rank test against 0.
A probe that gave no finite number (a layer's msv or an activation gradient that overflowed, or vanished to 0) is
the worst outcome for its net, never a missing seed (`bnlab.experiments.outcomes`): the BN net's gain is −inf when
a block's msv vanished to 0, +inf when it overflowed; in the gradient settings only the no-BN net failed -> +inf,
only BN -> −inf, both -> a tie. Tests by the unit (decades, heavy-tailed): the Jacobian settings by rank TOST (two
one-sided exact signed-rank tests, both p < 0.05 -> supported; a gain beyond the margin shown at one-sided p <
0.025 -> refuted), the gradient settings by the exact Wilcoxon signed-rank test (two-sided p < 0.05, with the
Hodges–Lehmann effect above 0 -> supported, below -> refuted).
Secondary: Meterez et al. 2024 -- a plain BN net with linear activations and orthogonal weights keeps its gradients
bounded at any depth: its activation-gradient spread and end-to-end gain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bnlab.errors import BnlabError
from bnlab.experiments import base, outcomes, stats
from bnlab.probes.gradflow import YANG_RELU, gradient_spread, jacobian_gain, yang_linear
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C11"
TRIALS = "bnlab.trials.gradient_flow"
ARCHS: tuple[str, ...] = ("plain", "residual")
GAIN_MARGIN = 1.0  # decades of end-to-end squared gain (≤ √10 ≈ 3.2× in norm): the Jacobian settings' margin
MATCHED = "bn-orthogonal"  # Meterez et al.'s net: BN, linear activations, orthogonal weights


def comparator(act: str, arch: str, norm: str, depth: int) -> dict[str, Any]:
    """The init and branch scale of a gradient-profile net: BN nets as built (Glorot, branch 1: BN makes them
    scale-free); no-BN nets as a practitioner would build them -- He init for ReLU, Glorot (variance-preserving)
    for tanh and linear, residual branches scaled by 1/√depth."""
    if norm == "bn":
        return {"init": "glorot", "branch_scale": 1.0}
    return {"init": "he" if act == "relu" else "glorot",
            "branch_scale": 1 / math.sqrt(depth) if arch == "residual" else 1.0}


@dataclass(frozen=True)
class C11Config:
    dataset: str = "mnist5k"
    depth: int = 50  # hidden blocks of the gradient-profile nets
    width: int = 256
    batch_size: int = 128  # B of the gradient measurement (Yang's rates depend on it)
    activations: tuple[str, ...] = ("relu", "tanh", "linear")  # the first is the primary endpoint's
    jacobian_probes: int = 2  # Hutchinson probes per layer Jacobian
    train_depths: tuple[int, ...] = (10, 50)
    train_width: int = 64
    train_steps: int = 150
    train_batch_size: int = 64
    train_lr: float = 0.01
    train_momentum: float = 0.9


CONFIGS: dict[str, C11Config] = {
    "smoke": C11Config(depth=6, width=16, batch_size=32, jacobian_probes=1, train_depths=(2, 6), train_width=16,
                       train_steps=10, train_batch_size=32),
    "default": C11Config(),
    "paper": C11Config(depth=100, width=512, batch_size=256, jacobian_probes=4, train_depths=(5, 10, 20, 50, 100),
                       train_width=256, train_steps=3000, train_batch_size=128),
}

# (name, norm, residual) of the trainability variants
TRAIN_VARIANTS: tuple[tuple[str, str, bool], ...] = (
    ("BN plain", "bn", False), ("no BN plain", "none", False), ("BN residual", "bn", True),
    ("no BN residual", "none", True))

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="gradient flow near 1",
        measure="jacobian settings: per seed, Σ over hidden blocks of log10 msv(J_l) of the BN net (end-to-end "
                "squared gain, decades); gradient settings: per seed, |log10 ‖∂L/∂h_first‖²/‖∂L/∂h_last‖²| of the "
                "activation gradients at the first and last hidden block, fair no-BN net (He init; residual "
                "branches × 1/√L) minus BN (decades). ReLU nets at initialisation, standardised inputs, BN with "
                "batch statistics",
        unit="decades", test="signed_rank", threshold=0.0,
        threshold_source="jacobian: ±1 decade of squared gain = the blocks together change a signal's norm by at "
                         "most √10 ≈ 3.2× (a definition of 'near 1' that does not depend on depth); gradient: 0 = "
                         "BN no closer to uniform activation gradients than a well-initialised net without BN",
        settings=("plain/jacobian", "residual/jacobian", "plain/gradient", "residual/gradient"),
        per_setting={"plain/jacobian": ("rank_tost", GAIN_MARGIN), "residual/jacobian": ("rank_tost", GAIN_MARGIN)}),
    cost="cheap",
    secondary=("the same four measures for tanh and linear nets",
               "log of the fitted per-layer growth factor of ‖∂L/∂W_l‖² (plain BN), beside Yang's rates",
               "end-to-end Jacobian gain of the fair no-BN nets",
               "Meterez et al. 2024: activation-gradient spread and end-to-end gain of a plain BN net with linear "
               "activations and orthogonal weights",
               "train accuracy after SGD at the deepest depth, BN − no BN, plain and residual"),
    runs="deep_mlp of 50 blocks × 256 units on mnist5k with standardised inputs, batch 128, ReLU/tanh/linear, "
         "plain and residual, with BN and with the fair no-BN comparators, 8 seeds; trainability: width 64, depths "
         "10 and 50, 150 SGD steps (lr 0.01, momentum 0.9)",
    paper="Yang et al. derive the rates in the infinite-width, B → ∞ limit and train plain BN nets up to depth 100 "
          "on MNIST/CIFAR-10 over a learning-rate grid; Meterez et al. 2024 prove bounded gradients for BN with "
          "linear activations and orthogonal weights. The paper scale here runs 100 blocks × 512 units, B = 256, "
          "one learning rate.",
    why="Weight gradients ‖∂L/∂W_l‖ = ‖δ_l‖·‖h_{l−1}‖ multiply a backward and a forward factor that cancel when "
        "both vanish or both explode, so a net whose gradients vanish uniformly (a Glorot ReLU net loses 15 "
        "decades of Jacobian gain over 50 blocks) or explode uniformly (a residual net without BN gains about 9) "
        "looks flat in them. The activation gradients ‖∂L/∂h_l‖ are the backward signal alone. The comparison is "
        "with the no-BN nets a practitioner would use (He init; residual branches scaled by 1/√L), not with a "
        "Glorot ReLU net that vanishes by construction, so 'BN prevents' is tested against a fair alternative. "
        "Inputs are standardised: raw pixels would make the first block normalise inputs of a different scale, "
        "adding about a decade to every BN net's gain whatever its depth.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(
    1.0,
    "one decade (10x) of activation-gradient spread, the same 10x that defines 'near 1' in the Jacobian settings "
    "(whose equivalence is powered at a true gain of 0)")

RULE = ("ReLU nets at initialisation, standardised inputs, four settings; a probe with no finite number is the "
        "worst outcome for its net, never a missing seed. Jacobian (plain, residual): per seed G = Σ_l log10 "
        "msv(J_l) of the BN net's hidden blocks (a block's msv vanished to 0 -> −inf, overflowed -> +inf); "
        "equivalence within ±1 decade (≤ √10 ≈ 3.2× in norm) by two one-sided exact Wilcoxon signed-rank tests: "
        "both p < 0.05 -> supported, a gain beyond ±1 shown at one-sided p < 0.025 -> refuted, else inconclusive. "
        "Gradient (plain, residual): per seed |log10(‖∂L/∂h_first‖² / ‖∂L/∂h_last‖²)| of the activation gradients, "
        "fair no-BN net (He init; residual branches × 1/√L) minus BN (only no BN failed -> +inf, only BN -> −inf, "
        "both -> a tie); the exact Wilcoxon signed-rank test, two-sided p < 0.05 with the Hodges–Lehmann effect "
        "above 0 -> supported, below 0 -> refuted, else inconclusive. The claim: "
        "stats.combine of the four (all supported -> supported; one refuted and none supported -> refuted; "
        "supported and refuted -> mixed). tanh/linear nets, Yang's rate, Meterez et al.'s net and trainability are "
        "reported, never voted.")


def _check(cfg: C11Config) -> C11Config:
    if cfg.batch_size <= 3:
        raise BnlabError(f"C11 batch_size must be > 3 (Yang's linear rate), got {cfg.batch_size}")
    return cfg


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    cfg = _check(base.config_for(CONFIGS, scale))
    seed_list = base.seeds_for(scale, seeds, first_seed, PROTOCOL.cost)
    profile = {"dataset": cfg.dataset, "depth": cfg.depth, "width": cfg.width, "batch_size": cfg.batch_size,
               "jacobian_probes": cfg.jacobian_probes, "standardise": True}
    trials = [Trial(CLAIM_ID, f"grad/{act}/{arch}/{norm}/seed={s}", f"{TRIALS}:gradient_profile",
                    {**profile, "activation": act, "residual": arch == "residual", "norm": norm,
                     **comparator(act, arch, norm, cfg.depth), "seed": s}, cost=cfg.depth * cfg.width / 1000)
              for act in cfg.activations for arch in ARCHS for norm in ("bn", "none") for s in seed_list]
    trials += [Trial(CLAIM_ID, f"grad/linear/plain/{MATCHED}/seed={s}", f"{TRIALS}:gradient_profile",
                     {**profile, "activation": "linear", "residual": False, "norm": "bn", "init": "orthogonal",
                      "branch_scale": 1.0, "seed": s}, cost=cfg.depth * cfg.width / 1000) for s in seed_list]
    trials += [Trial(CLAIM_ID, f"train/{label}/depth={depth}/seed={s}", f"{TRIALS}:trainability",
                     {"dataset": cfg.dataset, "depth": depth, "width": cfg.train_width, "norm": norm,
                      "residual": residual, "steps": cfg.train_steps, "lr": cfg.train_lr,
                      "momentum": cfg.train_momentum, "batch_size": cfg.train_batch_size,
                      "jacobian_probes": cfg.jacobian_probes, "seed": s},
                     cost=depth * cfg.train_steps * cfg.train_width / 1000)
               for depth in cfg.train_depths for label, norm, residual in TRAIN_VARIANTS for s in seed_list]
    return base.Plan(CLAIM_ID, scale, seed_list, asdict(cfg), tuple(trials))


def _profiles(plan: base.Plan, results: Mapping[str, dict], act: str, arch: str, norm: str) -> list[dict]:
    return [results[f"grad/{act}/{arch}/{norm}/seed={s}"] for s in plan.seeds]


def worst_gain(msv: list[float]) -> float:
    """`jacobian_gain`, with a probe that failed as the worst outcome (`outcomes.single_worst`): −inf when a hidden
    block's msv vanished to 0 (the signal dies), +inf when one overflowed or is not a number."""
    gain = jacobian_gain(msv)
    if math.isfinite(gain):
        return gain
    bulk = list(msv)[1:-1]
    vanished = any(v is not None and math.isfinite(v) and v <= 0 for v in bulk)
    return outcomes.single_worst(None, True, -1.0 if vanished else 1.0)


def setting_values(plan: base.Plan, results: Mapping[str, dict], act: str,
                   worst: bool = True) -> dict[str, list[float]]:
    """The four endpoint values per seed for one activation, keyed like the endpoint's settings. With `worst`
    (the primary endpoint) a probe that failed is the worst outcome for its net (`worst_gain`; in the gradient
    settings `outcomes.paired_worst`); without it (the secondary results) such a seed is NaN, left out."""
    out: dict[str, list[float]] = {}
    for arch in ARCHS:
        bn, none = (_profiles(plan, results, act, arch, n) for n in ("bn", "none"))
        gain = worst_gain if worst else jacobian_gain
        out[f"{arch}/jacobian"] = [gain(r["layer_jac_msv"]) for r in bn]
        spread = {n: [gradient_spread(r["input_grad_sq"]) for r in rs] for n, rs in (("bn", bn), ("none", none))}
        out[f"{arch}/gradient"] = stats.paired_differences(spread["none"], spread["bn"])
        if worst:
            out[f"{arch}/gradient"] = outcomes.paired_worst_values(
                out[f"{arch}/gradient"], [not math.isfinite(v) for v in spread["bn"]],
                [not math.isfinite(v) for v in spread["none"]])
    return out


def _train_acc(plan: base.Plan, results: Mapping[str, dict], label: str, depth: int) -> list[float]:
    """Per seed, the final train accuracy; a diverged run scores chance (`outcomes.scored_accuracy`), as a diverged
    run does in every claim."""
    recs = [results[f"train/{label}/depth={depth}/seed={s}"] for s in plan.seeds]
    return [outcomes.scored_accuracy(r["train_acc"], r["diverged"]) for r in recs]


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    cfg = plan.config
    acts = list(cfg["activations"])
    primary = setting_values(plan, results, acts[0])
    secondary: dict[str, dict[str, Any]] = {}
    for act in acts[1:]:
        for key, values in setting_values(plan, results, act, worst=False).items():
            secondary[f"{key} [{act}]"] = {"values": values, "unit": "decades",
                                           **({"test": "tost", "threshold": GAIN_MARGIN}
                                              if key.endswith("jacobian") else {})}
    for act in acts:
        g = [r["growth_factor"] for r in _profiles(plan, results, act, "plain", "bn")]
        yang = YANG_RELU if act == "relu" else yang_linear(cfg["batch_size"]) if act == "linear" else None
        secondary[f"log growth factor of ‖∂L/∂W_l‖² per layer, plain BN [{act}]"] = {
            "values": [math.log(v) if math.isfinite(v) and v > 0 else math.nan for v in g], "unit": "log",
            **({"threshold": math.log(yang),
                "note": f"finding: tested against Yang et al.'s log rate {math.log(yang):.4f} (×{yang:.4f}/layer)"}
               if yang else {})}
    matched = [results[f"grad/linear/plain/{MATCHED}/seed={s}"] for s in plan.seeds]
    secondary["activation-gradient spread |log10 first/last|, plain BN, linear, orthogonal (Meterez et al.)"] = {
        "values": [gradient_spread(r["input_grad_sq"]) for r in matched], "unit": "decades",
        "note": "bounded at any depth by Meterez et al. 2024's theorem"}
    secondary["end-to-end Jacobian gain, plain BN, linear, orthogonal (Meterez et al.)"] = {
        "values": [jacobian_gain(r["layer_jac_msv"]) for r in matched], "unit": "decades", "test": "tost",
        "threshold": GAIN_MARGIN}
    for arch in ARCHS:
        secondary[f"end-to-end Jacobian gain without BN (fair comparator), {arch} [{acts[0]}]"] = {
            "values": [jacobian_gain(r["layer_jac_msv"]) for r in _profiles(plan, results, acts[0], arch, "none")],
            "unit": "decades", "test": "tost", "threshold": GAIN_MARGIN}
    deepest = max(cfg["train_depths"])
    for arch in ARCHS:
        secondary[f"train accuracy BN − no BN at depth {deepest}, {arch}"] = {
            "values": stats.paired_differences(_train_acc(plan, results, f"BN {arch}", deepest),
                                               _train_acc(plan, results, f"no BN {arch}", deepest)),
            "unit": "accuracy"}
    trainability = {f"{label}/depth={d}": stats.mean_ci(_train_acc(plan, results, label, d)).to_dict()
                    for d in cfg["train_depths"] for label, _, _ in TRAIN_VARIANTS}
    return {"primary": primary, "secondary": secondary, "trainability": trainability,
            "yang_relu": YANG_RELU, "yang_linear": yang_linear(cfg["batch_size"])}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    return base.decide_endpoint(PROTOCOL.endpoint, metrics)


def _curve_panels(plan: base.Plan, results: Mapping[str, dict], key: str, ylabel: str) -> list[dict]:
    """One panel per activation: mean over seeds of log10 `key` per layer, for each (norm, architecture)."""
    def mean_log10(curves: list[list[float]]) -> list[float | None]:
        logs = [[math.log10(v) for v in vals if math.isfinite(v) and v > 0] for vals in zip(*curves)]
        return [sum(v) / len(v) if v else None for v in logs]

    return [{"title": act, "xlabel": "weight layer l (0 = stem)", "ylabel": ylabel,
             "series": [{"label": f"{'BN' if norm == 'bn' else 'no BN'} {arch}", "x": list(range(len(c))), "y": c}
                        for arch in ARCHS for norm in ("bn", "none")
                        for c in [mean_log10([r[key] for r in _profiles(plan, results, act, arch, norm)])]]}
            for act in plan.config["activations"]]


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    cfg, train = plan.config, metrics["trainability"]
    cells = {name: [train[f"{name}/depth={d}"] for d in cfg["train_depths"]] for name, _, _ in TRAIN_VARIANTS}
    acc = [{"label": name, "x": list(cfg["train_depths"]), "y": [c["effect"] for c in cs],
            "lo": [c["ci_low"] for c in cs], "hi": [c["ci_high"] for c in cs]} for name, cs in cells.items()]
    return [
        base.Figure("grad_profile", "lines", "Activation gradients per layer at initialisation",
               f"log10 ‖∂L/∂h_l‖² at the input of weight layer l (depth {cfg['depth']}, width {cfg['width']}, batch "
               f"{cfg['batch_size']}, standardised inputs, BN in training mode; no-BN nets: He init for ReLU, "
               f"residual branches × 1/√L), mean over {len(plan.seeds)} seeds. A line falling with l is a gradient "
               "that grows towards the input; a flat line is the 'near 1' the claim describes.",
               {"panels": _curve_panels(plan, results, "input_grad_sq", "log10 ‖∂L/∂h_l‖²")}),
        base.Figure("weight_grad_profile", "lines", "Weight-gradient norm per layer at initialisation",
               f"log10 ‖∂L/∂W_l‖² vs layer, as above. A straight line falling with l is geometric explosion towards "
               f"the input (Yang et al.: ×{YANG_RELU:.3f} per plain ReLU BN layer); forward and backward factors "
               "cancel in this measure when both vanish or both explode.",
               {"panels": _curve_panels(plan, results, "weight_grad_sq", "log10 ‖∂L/∂W_l‖²")}),
        base.Figure("layer_jacobian", "lines", "Layer Jacobians at initialisation",
               "Mean squared singular value of each layer's batch Jacobian (Hutchinson estimate, BN in training "
               "mode), mean of log10 over seeds; 0 = the layer preserves norms.",
               {"panels": _curve_panels(plan, results, "layer_jac_msv", "log10 msv(J_l)")}),
        base.Figure("trainability", "lines", "Trainability vs depth",
               f"Train accuracy after {cfg['train_steps']} SGD steps (lr {cfg['train_lr']}, momentum "
               f"{cfg['train_momentum']}, batch {cfg['train_batch_size']}) of ReLU nets of width {cfg['train_width']}; "
               "a diverged run counts as chance (0.1). Mean and 95% CI over seeds.",
               {"panels": [{"title": "train accuracy", "xlabel": "depth (hidden blocks)", "ylabel": "accuracy",
                            "series": acc}]}),
    ]


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    cfg = plan.config
    parts = [f"{r.setting}: {base.brief(r)}" for r in decision.primary]
    yang = next((s for s in decision.secondary if s.name.endswith("plain BN [relu]")), None)
    rate = f" The fitted per-layer growth of ‖∂L/∂W_l‖² in the plain ReLU BN net is ×{math.exp(yang.effect):.3f} " \
           f"(Yang et al.: ×{YANG_RELU:.3f})." if yang and yang.effect is not None else ""
    summary = (f"ReLU nets of {cfg['depth']} blocks at initialisation (decades): {'; '.join(parts)}.{rate} "
               f"Jacobian settings: end-to-end log10 gain of the BN net, equivalence within ±{GAIN_MARGIN:g} "
               f"(≤ √10 ≈ 3.2× in norm); gradient settings: |log10 first/last| of the activation gradients, fair "
               f"no-BN net minus BN. Verdict: {decision.verdict}.")
    method = (f"deep_mlp depth {cfg['depth']}, width {cfg['width']} on {cfg['dataset']} (standardised inputs), batch "
              f"{cfg['batch_size']}, no-BN comparators with He init (ReLU) and residual branches × 1/√{cfg['depth']}, "
              f"activations {', '.join(cfg['activations'])}, plain and residual, {len(plan.seeds)} seeds; "
              f"trainability at depths {list(cfg['train_depths'])} (width {cfg['train_width']}, "
              f"{cfg['train_steps']} SGD steps).")
    return base.Description(summary, method, [
        f"Finite width ({cfg['width']}) and batch ({cfg['batch_size']}) instead of Yang's infinite-width, large-B "
        "limit; BN uses ε = 1e-5 and γ = 1, β = 0 at initialisation.",
        "‖∂L/∂W_l‖² = ‖δ_l‖²·‖h_{l−1}‖² mixes the backward signal with the activations' size, so it is reported "
        "(figure, Yang's rate) but does not vote: the activation gradients ‖∂L/∂h_l‖² are the backward signal "
        "alone.",
        "The trainability runs build the no-BN nets with Glorot init and unscaled residual branches, as the "
        "built-in model does; they are reported, never voted.",
        f"Trainability uses one learning rate ({cfg['train_lr']}) and {cfg['train_steps']} steps, not Yang's "
        "learning-rate sweep; a net untrainable here may train at another rate.",
        "A probe with no finite number counts as the worst outcome for its net in the primary endpoint (±inf, "
        "ranked beyond every finite value), never as a missing seed; the tanh and linear nets (secondary) leave "
        "such a seed out."])
