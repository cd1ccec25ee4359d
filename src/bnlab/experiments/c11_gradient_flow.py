"""C11: does BN prevent vanishing / exploding gradients (layer Jacobians near 1) in deep nets?

Reference: Yang et al. (2019, "A mean field theory of batch normalization", Thm 3.10): in a deep *plain* BN network
at initialisation the gradients explode going backwards, ‖∂L/∂W_l‖² growing by λ ≈ π/(π−1) ≈ 1.467 per ReLU layer
(batch size B → ∞, infinite width) and by (B−2)/(B−3) per layer for linear activations; such nets of ≳ 50 layers
are not trainable. Residual connections tame this.

Protocol (all scales; sizes in `CONFIGS`): `deep_mlp` (stem Linear → depth × [Linear → norm → act] (plain) or
h + act(norm(W h)) (residual) → head, Glorot init) on mnist5k, activations relu / tanh / linear, BN vs no BN,
plain vs residual. At initialisation, on one training batch of size B with BN in training mode (batch statistics,
Yang's setting), `bnlab.probes.gradflow` measures ‖∂L/∂W_l‖² of every weight layer and the layer Jacobians' mean
squared singular value ‖J_l‖²_F/n (batch Jacobians, see that module). Per seed, g = the fitted per-layer backward
growth factor of ‖∂L/∂W_l‖² (`fit_growth_factor`: least squares on log, stem and head excluded). Trainability:
plain ReLU nets with and without BN and residual BN nets at several depths trained by SGD with momentum; the
gradient-flow probe is taken again after training.

Rule (written before the run): per setting (activation × plain/residual) with BN, the 95% CI over seeds of g
(a t-interval on log g) decides: **supported** if it lies inside [1/τ, τ] with τ = 1.1 (gradients change by less
than 10% per layer), **refuted** if it lies wholly outside that band, **inconclusive** otherwise. The overall verdict
is `combine_verdicts` over the six BN settings (all agree → that verdict; supported and refuted both present →
mixed). The key number is the plain-ReLU BN growth factor, to compare with Yang's 1.467.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bnlab.config import from_mapping, to_mapping
from bnlab.errors import BnlabError
from bnlab.experiments.base import SCALES, ClaimResult, Figure, KeyNumber, Plan, combine_verdicts, mean_ci, seeds_for
from bnlab.probes.gradflow import YANG_RELU
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C11"
TITLE = "BN prevents vanishing/exploding gradients"
_MODULE = "bnlab.workflows.gradflow"


def yang_linear(batch_size: int) -> float:
    """Yang et al.'s per-layer gradient explosion rate for a deep linear BN net with batch size B: (B−2)/(B−3)."""
    if batch_size <= 3:
        raise BnlabError(f"Yang's linear rate needs batch size > 3, got {batch_size}")
    return (batch_size - 2) / (batch_size - 3)


@dataclass(frozen=True)
class C11Config:
    """Sizes of the C11 experiment (plain data: `to_mapping` goes into Plan.config)."""

    dataset: str = "mnist5k"
    depth: int = 50  # hidden blocks of the gradient-profile nets
    width: int = 256
    batch_size: int = 128  # B of the gradient measurement (Yang's rates depend on it)
    activations: tuple[str, ...] = ("relu", "tanh", "linear")
    jacobian_probes: int = 2  # Hutchinson probes per layer Jacobian
    tolerance: float = 1.1  # τ of the rule
    train_depths: tuple[int, ...] = (5, 20, 50)
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
_TRAIN_VARIANTS: tuple[tuple[str, str, bool], ...] = (
    ("BN plain", "bn", False), ("no BN plain", "none", False), ("BN residual", "bn", True))


def config_for(scale: str) -> C11Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    seed_list = seeds_for(seeds)
    trials = []
    for act in cfg.activations:
        for residual in (False, True):
            for norm in ("bn", "none"):
                for s in seed_list:
                    arch = "residual" if residual else "plain"
                    trials.append(Trial(CLAIM_ID, f"grad/{act}/{arch}/{norm}/seed={s}", f"{_MODULE}:gradient_profile",
                                        {"dataset": cfg.dataset, "depth": cfg.depth, "width": cfg.width,
                                         "activation": act, "residual": residual, "norm": norm,
                                         "batch_size": cfg.batch_size, "jacobian_probes": cfg.jacobian_probes,
                                         "seed": s}, cost=cfg.depth * cfg.width / 1000))
    for depth in cfg.train_depths:
        for label, norm, residual in _TRAIN_VARIANTS:
            for s in seed_list:
                trials.append(Trial(CLAIM_ID, f"train/{label}/depth={depth}/seed={s}", f"{_MODULE}:trainability",
                                    {"dataset": cfg.dataset, "depth": depth, "width": cfg.train_width, "norm": norm,
                                     "residual": residual, "steps": cfg.train_steps, "lr": cfg.train_lr,
                                     "momentum": cfg.train_momentum, "batch_size": cfg.train_batch_size,
                                     "jacobian_probes": cfg.jacobian_probes, "seed": s},
                                    cost=depth * cfg.train_steps * cfg.train_width / 1000))
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), tuple(trials))


def band_verdict(lo: float | None, hi: float | None, tolerance: float) -> str:
    """supported: [lo, hi] inside [1/τ, τ]; refuted: wholly outside it; inconclusive otherwise (or no CI)."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if lo >= 1 / tolerance and hi <= tolerance:
        return "supported"
    if lo > tolerance or hi < 1 / tolerance:
        return "refuted"
    return "inconclusive"


def _geo_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    """Geometric mean and 95% CI of positive values (t-interval on the logs); NaN when any value is not > 0."""
    if not values or any(not (math.isfinite(v) and v > 0) for v in values):
        return math.nan, None, None
    m, lo, hi = mean_ci([math.log(v) for v in values])
    return math.exp(m), (None if lo is None else math.exp(lo)), (None if hi is None else math.exp(hi))


def _mean_curve(curves: list[list[float]]) -> list[float]:
    """Mean over seeds of log10 values, per layer (non-positive / non-finite entries skipped)."""
    out = []
    for vals in zip(*curves):
        logs = [math.log10(v) for v in vals if math.isfinite(v) and v > 0]
        out.append(sum(logs) / len(logs) if logs else math.nan)
    return out


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    cfg = from_mapping(C11Config, plan.config)
    seeds = plan.seeds
    settings: dict[str, dict] = {}
    verdicts = []
    profile_panels = []
    for act in cfg.activations:
        series = []
        for residual in (False, True):
            arch = "residual" if residual else "plain"
            key = f"{act}/{arch}"
            entry: dict = {"activation": act, "residual": residual}
            for norm in ("bn", "none"):
                recs = [results[f"grad/{act}/{arch}/{norm}/seed={s}"] for s in seeds]
                g, lo, hi = _geo_ci([r["growth_factor"] for r in recs])
                tag = "bn" if norm == "bn" else "no_bn"
                entry[f"{tag}_growth"] = g
                entry[f"{tag}_growth_ci"] = [lo, hi]
                entry[f"{tag}_growth_per_seed"] = [r["growth_factor"] for r in recs]
                entry[f"{tag}_total_ratio_log10"] = _total_ratio(recs)
                curve = _mean_curve([r["weight_grad_sq"] for r in recs])
                series.append({"label": f"{'BN' if norm == 'bn' else 'no BN'} {arch}",
                               "x": list(range(len(curve))), "y": curve})
                msv = _mean_lin([r["layer_jac_msv"] for r in recs])
                entry[f"{tag}_layer_jac_msv"] = msv
                bulk = msv[1:-1]  # hidden blocks: stem and head maps differ from the bulk
                entry[f"{tag}_layer_jac_msv_bulk"] = sum(bulk) / len(bulk) if bulk else math.nan
            if not residual:
                entry["yang_prediction"] = (YANG_RELU if act == "relu" else
                                            yang_linear(cfg.batch_size) if act == "linear" else None)
            entry["verdict"] = band_verdict(*entry["bn_growth_ci"], cfg.tolerance)
            verdicts.append(entry["verdict"])
            settings[key] = entry
        profile_panels.append({"title": act, "xlabel": "weight layer l (0 = stem)",
                               "ylabel": "log10 ‖∂L/∂W_l‖²", "series": series})
    verdict = combine_verdicts(verdicts)

    relu = settings.get("relu/plain")
    key_number = None
    if relu is not None:
        lo, hi = relu["bn_growth_ci"]
        key_number = KeyNumber("per-layer growth of ‖∂L/∂W_l‖², plain ReLU BN net (Yang: 1.467)",
                               relu["bn_growth"], lo, hi, "×/layer")

    cats = list(settings)
    bars = {"title": "fitted per-layer growth factor g (95% CI over seeds)", "ylabel": "g (1 = no explosion)",
            "categories": cats, "groups": []}
    for tag, label in (("bn", "BN"), ("no_bn", "no BN")):
        bars["groups"].append({"label": label, "values": [settings[c][f"{tag}_growth"] for c in cats],
                               "lo": [_or_nan(settings[c][f"{tag}_growth_ci"][0]) for c in cats],
                               "hi": [_or_nan(settings[c][f"{tag}_growth_ci"][1]) for c in cats]})
    figures = [
        Figure("grad_profile", "lines", "Gradient norm per layer at initialisation",
               f"log10 ‖∂L/∂W_l‖² vs layer for deep_mlp (depth {cfg.depth}, width {cfg.width}, batch "
               f"{cfg.batch_size}, BN in training mode), mean over {len(seeds)} seeds. A straight line falling "
               "with l is geometric explosion towards the input.", {"panels": profile_panels}),
        Figure("growth_factors", "bars", "Per-layer gradient growth factor",
               f"Fitted g per setting; Yang et al. predict {YANG_RELU:.3f} for plain ReLU BN nets and "
               f"(B−2)/(B−3) = {yang_linear(cfg.batch_size):.4f} for linear ones (B = {cfg.batch_size}). The rule's "
               f"band is [1/{cfg.tolerance}, {cfg.tolerance}].", {"panels": [bars]}),
        Figure("layer_jacobian", "lines", "Layer Jacobians at initialisation",
               "Mean squared singular value ‖J_l‖²_F/n of each layer's batch Jacobian (Hutchinson estimate, BN in "
               "training mode), mean over seeds.",
               {"panels": [{"title": f"{s}", "xlabel": "weight layer l", "ylabel": "log10 mean σ²(J_l)",
                            "series": [{"label": lab, "x": list(range(len(settings[s][k]))),
                                        "y": [_log10(v) for v in settings[s][k]]}
                                       for lab, k in (("BN", "bn_layer_jac_msv"), ("no BN", "no_bn_layer_jac_msv"))]}
                           for s in ("relu/plain", "relu/residual") if s in settings]}),
    ]
    train_metrics, train_figs = _trainability(cfg, seeds, results)
    figures += train_figs

    caveats = [
        f"Finite width ({cfg.width}) and batch ({cfg.batch_size}) instead of Yang's infinite-width, large-B limit; "
        "BN uses ε = 1e-5 and γ = 1, β = 0 at initialisation. The ReLU rate π/(π−1) is the B → ∞ limit, so at "
        "finite B a small deviation from 1.467 is expected.",
        "The growth factor is a least-squares fit of log ‖∂L/∂W_l‖² on l; for residual nets the growth is not "
        "geometric (it slows with depth), so g is an average rate there.",
        f"Trainability uses one learning rate ({cfg.train_lr}, momentum {cfg.train_momentum}) and "
        f"{cfg.train_steps} steps of width-{cfg.train_width} nets, not a learning-rate sweep as in Yang et al.; "
        "an untrainable net here may train at another learning rate.",
        f"The tolerance τ = {cfg.tolerance} is a choice: a rate of 1.06 per layer, inside the band, still "
        f"multiplies gradients by 1.06^{cfg.depth} ≈ {1.06 ** cfg.depth:.0f} over the whole depth.",
    ]
    relu_g = relu["bn_growth"] if relu else math.nan
    for key, entry in settings.items():
        predicted, (lo, hi) = entry.get("yang_prediction"), entry["bn_growth_ci"]
        if predicted is None or lo is None or hi is None or lo <= predicted <= hi:
            continue
        caveats.append(f"{key}: the measured BN rate {entry['bn_growth']:.4f} [{lo:.4f}, {hi:.4f}] excludes Yang et "
                       f"al.'s {predicted:.4f}. Their rates are limits (infinite width; for ReLU also B → ∞); here "
                       f"width {cfg.width}, batch {cfg.batch_size}, finite depth {cfg.depth} (the first blocks after "
                       "the stem are not yet in the mean-field regime) and ε = 1e-5 shift them, and a seed-level CI "
                       "is narrow enough to resolve such shifts.")
    relu_msv = relu["bn_layer_jac_msv_bulk"] if relu else math.nan
    deepest = max(cfg.train_depths)
    trainable = ", ".join(f"{label} {train_metrics[f'{label}/depth={deepest}']['train_acc']:.2f}"
                          for label, _, _ in _TRAIN_VARIANTS)
    summary = (f"At initialisation in the plain ReLU BN net ‖∂L/∂W_l‖² grows by {relu_g:.3f}× per layer towards "
               f"the input (Yang et al.: {YANG_RELU:.3f}) and the hidden layers' batch Jacobians have mean squared "
               f"singular value {relu_msv:.3f}, not 1. Verdicts per "
               f"setting: " + ", ".join(f"{k}: {v['verdict']}" for k, v in settings.items()) + ". Training "
               f"accuracy after {cfg.train_steps} steps at depth {deepest}: {trainable}.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=("Per setting (activation × plain/residual) with BN: 95% CI over seeds of the fitted per-layer growth "
              f"factor g of ‖∂L/∂W_l‖² inside [1/{cfg.tolerance}, {cfg.tolerance}] → supported, wholly outside → "
              "refuted, else inconclusive; overall = combine_verdicts over the settings."),
        summary=summary,
        method=(f"deep_mlp depth {cfg.depth}, width {cfg.width} on {cfg.dataset}, batch {cfg.batch_size}, "
                f"{len(seeds)} seeds; gradients at initialisation with BN in training mode; trainability of "
                f"depths {list(cfg.train_depths)} (width {cfg.train_width}, {cfg.train_steps} SGD steps)."),
        key_number=key_number,
        metrics={"settings": settings, "yang_relu": YANG_RELU, "yang_linear": yang_linear(cfg.batch_size),
                 "tolerance": cfg.tolerance, "trainability": train_metrics},
        figures=figures, caveats=caveats)


def _total_ratio(recs: list[dict]) -> float:
    """log10 of ‖∂L/∂W‖² at the first hidden layer over the last hidden layer, mean over seeds."""
    vals = []
    for r in recs:
        sq = r["weight_grad_sq"]
        if len(sq) >= 3 and sq[1] > 0 and sq[-2] > 0 and math.isfinite(sq[1]) and math.isfinite(sq[-2]):
            vals.append(math.log10(sq[1] / sq[-2]))
    return sum(vals) / len(vals) if vals else math.nan


def _mean_lin(curves: list[list[float]]) -> list[float]:
    return [sum(v) / len(v) for v in zip(*curves)] if curves and curves[0] else []


def _log10(v: float) -> float:
    return math.log10(v) if math.isfinite(v) and v > 0 else math.nan


def _or_nan(v: float | None) -> float:
    return math.nan if v is None else v


def _trainability(cfg: C11Config, seeds: tuple[int, ...], results: Mapping[str, dict]) -> tuple[dict, list[Figure]]:
    metrics: dict = {}
    acc_series = []
    for label, _, _ in _TRAIN_VARIANTS:
        accs, los, his = [], [], []
        for depth in cfg.train_depths:
            recs = [results[f"train/{label}/depth={depth}/seed={s}"] for s in seeds]
            vals = [0.0 if r["diverged"] or not math.isfinite(r["train_acc"]) else r["train_acc"] for r in recs]
            m, lo, hi = mean_ci(vals)
            metrics[f"{label}/depth={depth}"] = {"train_acc": m, "ci": [lo, hi],
                                                 "diverged": sum(r["diverged"] for r in recs),
                                                 "test_acc": mean_ci([r["test_acc"] for r in recs
                                                                      if math.isfinite(r["test_acc"])])[0]}
            accs.append(m)
            los.append(_or_nan(lo))
            his.append(_or_nan(hi))
        acc_series.append({"label": label, "x": list(cfg.train_depths), "y": accs, "lo": los, "hi": his})
    deepest = max(cfg.train_depths)
    jac_series = []
    for label, _, _ in _TRAIN_VARIANTS:
        recs = [results[f"train/{label}/depth={deepest}/seed={s}"] for s in seeds]
        for when in ("init", "trained"):
            curves = [r[f"jac_msv_{when}"] for r in recs if r[f"jac_msv_{when}"] is not None]
            if curves:
                curve = _mean_lin(curves)
                jac_series.append({"label": f"{label}, {when}", "x": list(range(len(curve))),
                                   "y": [_log10(v) for v in curve]})
    figs = [
        Figure("trainability", "lines", "Trainability vs depth",
               f"Training accuracy after {cfg.train_steps} SGD steps (lr {cfg.train_lr}, momentum "
               f"{cfg.train_momentum}, batch {cfg.train_batch_size}) of ReLU deep_mlp nets of width "
               f"{cfg.train_width}; a diverged run counts as 0. Mean and 95% CI over seeds.",
               {"panels": [{"title": "train accuracy", "xlabel": "depth (hidden blocks)", "ylabel": "accuracy",
                            "series": acc_series}]}),
        Figure("jacobian_trained", "lines", "Layer Jacobians before and after training",
               f"Mean squared singular value of each layer's batch Jacobian at depth {deepest}, at initialisation "
               "and after training (runs whose weights stayed finite).",
               {"panels": [{"title": f"depth {deepest}", "xlabel": "weight layer l", "ylabel": "log10 mean σ²(J_l)",
                            "series": jac_series}]}),
    ]
    return metrics, figs
