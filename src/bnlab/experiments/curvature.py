"""Curvature in the audit: Hessian sharpness over training (C06) and at the end of training with spectral densities
(C14), BN vs no BN, in both BN modes.

Protocol: the VGG runs of C05/C06 (`bnlab.experiments.probed_training.run_settings("vgg", scale)`: Santurkar's
VGG on CIFAR-10 at paper scale, bnlab's narrow VGG on sklearn digits on a CPU), trained once per (norm, seed) with
the sharpness probe (`bnlab.probes.hessian.sharpness.SharpnessProbe`) every `probe_every` steps and once more
after the last step. C06 and C14 plan byte-identical trials, so the audit runs them once. At each point, on a
fixed prefix of the training set (`hessian_samples` examples):

* λ_max: the Hessian's largest eigenvalue (Lanczos, relative residual `tol`), in BN mode ``train`` (batch
  statistics: the papers' choice) and ``eval`` (running statistics: PyHessian's). A no-BN net is the same function
  in both modes and is measured once;
* tr H ± SE (Hutch++);
* the normalised sharpness max_l λ_max(H_{W_l W_l})·‖W_l‖² over the conv weights (mode ``train``): for the BN net
  these weights are scale-invariant (L(αW) = L(W)), so H_WW ∝ 1/‖W‖² and the raw λ_max falls as SGD grows ‖W‖
  without any change in the function; the product is invariant to that. For the no-BN ReLU net the same product is
  invariant to the rescaling symmetry (αW_l, W_{l+1}/α) — so the two are compared in the same units.
* at the end: the spectral density by stochastic Lanczos quadrature, per mode.

No rule here: C06 reports the over-training effects and C14 the end-of-training ones as secondary results (per
seed, paired, log(no BN / BN)); neither votes with them. The trial function is `bnlab.trials.sharpness_trajectory`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bnlab.errors import BnlabError
from bnlab.experiments import stats
from bnlab.experiments.base import SCALES, Figure
from bnlab.experiments.probed_training import run_settings
from bnlab.probes.hessian.density import smoothed_density
from bnlab.state import BN_MODES
from bnlab.sweeps.trial import Trial

TRIALS = "bnlab.trials.sharpness_trajectory"
NORMS: dict[str, str] = {"BN": "bn", "no BN": "none"}
MODES = BN_MODES  # the BN modes every curvature / landscape number is measured in


@dataclass(frozen=True)
class CurvatureConfig:
    hessian_samples: int = 256  # fixed prefix of the training set every Hessian is taken on
    probe_every: int = 50
    tol: float = 1e-2  # Lanczos relative residual (the eigenvalue error is far smaller: ≈ residual² / gap)
    max_steps: int = 40
    trace_samples: int = 6  # Hutch++ remainder samples
    sketch: int = 4
    density_runs: int = 2
    density_steps: int = 30
    grid_points: int = 128
    sgd_batches: int = 8  # mini-batches of the SGD batch size behind each batch-sharpness estimate


CONFIGS: dict[str, CurvatureConfig] = {
    "smoke": CurvatureConfig(hessian_samples=32, probe_every=8, max_steps=8, trace_samples=2, sketch=2,
                             density_runs=1, density_steps=8, grid_points=64, sgd_batches=2),
    "default": CurvatureConfig(hessian_samples=128),
    "paper": CurvatureConfig(hessian_samples=1024, probe_every=500, tol=1e-3, max_steps=100, trace_samples=30,
                             sketch=20, density_runs=10, density_steps=90, grid_points=512,
                             sgd_batches=16),
}


def config_for(scale: str) -> CurvatureConfig:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


def trial_name(norm: str, seed: int) -> str:
    return f"curvature/{norm}/seed={seed}"


def curvature_trials(claim: str, scale: str, seeds: Sequence[int]) -> list[Trial]:
    """The shared curvature trials: one (norm, seed) VGG run each; identical for every claim that plans them."""
    settings = run_settings("vgg", scale)
    cc = asdict(config_for(scale))
    return [Trial(claim=claim, name=trial_name(norm, s), fn=f"{TRIALS}:sharpness_trajectory",
                  params={"config": {**settings["config"], "norm": norm, "seed": int(s)}, **cc},
                  cost=5.0 if norm != "none" else 3.0)
            for norm in NORMS.values() for s in seeds]


# ----------------------------------------------------------------------------------------------- summaries


def _log_ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return math.log(a / b)


def _runs(results: Mapping[str, dict], seeds: Sequence[int]) -> dict[str, list[dict]]:
    """Per norm: the finished curvature results, in seed order."""
    return {norm: [results[trial_name(norm, s)] for s in seeds if trial_name(norm, s) in results]
            for norm in NORMS.values()}


def _series(run: dict, mode: str, key: str) -> list[float | None]:
    """A run's curve of `key` ("top" | "trace" | "normalised") in BN mode `mode` (a no-BN net: its one mode)."""
    if key == "normalised":
        return run["normalised"]
    m = mode if mode in run["series"] else run["modes"][0]
    return run["series"][m].get(key, [])  # batch sharpness: absent from results measured before it existed


def _effects(runs: dict[str, list[dict]], mode: str, key: str, at_end: bool) -> list[float]:
    """Per seed: log(no BN / BN) of `key`, at the end or averaged over the shared probe times."""
    out = []
    for bn, none in zip(runs["bn"], runs["none"]):
        if bn["seed"] != none["seed"]:
            continue
        a, b = _series(none, mode, key), _series(bn, mode, key)
        pairs = list(zip(a, b))
        if at_end:
            if bn["diverged_at_step"] is not None or none["diverged_at_step"] is not None:
                continue
            pairs = pairs[-1:]
        logs = [r for r in (_log_ratio(x, y) for x, y in pairs) if r is not None]
        if logs:
            out.append(sum(logs) / len(logs))
    return out


def sharpness_effects(results: Mapping[str, dict], seeds: Sequence[int], at_end: bool) -> dict[str, list[float]]:
    """Per seed, log(no BN / BN) of λ_max in each BN mode and of the normalised sharpness (train mode), at the end
    of training (`at_end`) or averaged over the shared probe times: the curvature results C06 and C14 report."""
    runs = _runs(results, seeds)
    out = {f"log(λ_max no BN / BN), BN mode {m}": _effects(runs, m, "top", at_end) for m in MODES}
    out["log(λ_max·‖W‖² no BN / BN), BN mode train"] = _effects(runs, "train", "normalised", at_end)
    out.update({f"log(trace no BN / BN), BN mode {m}": _effects(runs, m, "trace", at_end) for m in MODES})
    return out


def stability_threshold(scale: str) -> float | None:
    """2(1 + β)/η of the curvature runs' optimizer at `scale`: SGD with heavy-ball momentum β at lr η is unstable
    along a Hessian direction of curvature λ above it (2/η without momentum: Cohen et al. 2021, "Gradient Descent
    on Neural Networks Typically Occurs at the Edge of Stability"). None for Adam (preconditioned: no such line)."""
    config = run_settings("vgg", scale)["config"]
    if config.get("optimizer", "sgd") != "sgd":
        return None
    return 2.0 * (1.0 + float(config.get("momentum", 0.0))) / float(config["lr"])


def edge_of_stability(results: Mapping[str, dict], seeds: Sequence[int], scale: str) -> dict[str, dict[str, Any]]:
    """Secondary results "where do BN and no-BN nets sit relative to 2/η?": per net and BN mode, per seed, log(mean
    over the last third of the probe times / 2(1 + β)/η) of the full-batch λ_max and of the batch sharpness
    E_B[g_Bᵀ H_B g_B / ‖g_B‖²] (Andreyev & Beneventano 2024: under SGD it is the batch sharpness that settles at
    the threshold, λ_max stays below). 0 = at the edge of stability, < 0 below it. Each entry names the batch size
    its BN statistics used."""
    threshold = stability_threshold(scale)
    if threshold is None:
        return {}
    runs = _runs(results, seeds)
    out: dict[str, dict[str, Any]] = {}
    for key, what in (("top", "λ_max"), ("batch_sharpness", "batch sharpness")):
        for label, norm in NORMS.items():
            for mode in MODES if norm != "none" else MODES[:1]:
                values = [_late_log_ratio(_series(run, mode, key), threshold) for run in runs[norm]]
                if key == "batch_sharpness" and all(math.isnan(v) for v in values):
                    continue  # results from before batch sharpness was measured
                where = f", BN mode {mode}" if norm != "none" else ""
                out[f"log({what} / (2/η)), {label}{where}, last third of training"] = {
                    "values": values, "unit": "log ratio",
                    "note": f"edge of stability: 2/η = {threshold:g} for the runs' SGD; < 0 = the net trains below "
                            f"it; {_bn_batch_note(runs[norm], mode, key)}"}
    return out


def _late_log_ratio(curve: list[float | None], threshold: float) -> float:
    """log(mean of the last third of a curve's finite values / threshold); nan without a positive mean."""
    finite = [v for v in curve if v is not None]
    late = finite[len(finite) - max(1, len(finite) // 3):]
    mean = sum(late) / len(late) if late else math.nan
    return math.log(mean / threshold) if mean > 0 else math.nan


def _bn_batch_note(runs: list[dict], mode: str, key: str) -> str:
    """Which examples BN's statistics came from, for the note beside a curvature number."""
    size = next((r.get("bn_batch_size", {}).get(mode, {}).get(key) for r in runs), None)
    sgd = next((r.get("sgd_batch_size") for r in runs), None)
    what = (f"over SGD mini-batches of {sgd}" if key == "batch_sharpness" else "on the fixed Hessian batch")
    if size is None:
        return f"{what}, no batch statistics (running statistics or no BN)"
    return f"{what}, BN statistics over {size} examples"


def sharpness_figures(results: Mapping[str, dict], seeds: Sequence[int], at_end: bool,
                      threshold: float | None = None) -> list[Figure]:
    runs = _runs(results, seeds)
    return _end_figures(runs) if at_end else _over_training_figure(runs, threshold)


def _band(runs: list[dict], mode: str, key: str, label: str) -> dict[str, Any] | None:
    """Mean over seeds with a min–max band, on the first run's probe steps."""
    if not runs:
        return None
    steps = runs[0]["steps"]
    ys, lo, hi = [], [], []
    for i in range(len(steps)):
        vals = [v for r in runs if i < len(_series(r, mode, key)) for v in [_series(r, mode, key)[i]]
                if v is not None]
        ys.append(sum(vals) / len(vals) if vals else None)
        lo.append(min(vals) if vals else None)
        hi.append(max(vals) if vals else None)
    return {"label": label, "x": steps, "y": ys, "lo": lo, "hi": hi}


def curvature_caveats(scale: str) -> list[str]:
    """What a reader of the curvature results should know (scale invariance, BN modes, the fixed batch)."""
    out = [
        "BN's scale invariance makes raw sharpness depend on the weight norm: with L(αW) = L(W) the Hessian block "
        "of W scales as 1/‖W‖², and SGD grows ‖W‖ (the gradient is orthogonal to W), so a BN net's raw λ_max "
        "falls over training even where the function does not change. λ_max(H_WW)·‖W‖² is reported beside it "
        "as the invariant form (for the no-BN ReLU net the same product is invariant to its layer-rescaling "
        "symmetry).",
        "The BN mode matters: with batch statistics (train) BN is part of the function being differentiated; "
        "with running statistics (eval, PyHessian's only mode) it is a fixed affine map. A no-BN net is one "
        "function in both modes and is measured once.",
        "Every Hessian is taken on one fixed prefix of the training set, not the whole set; λ_max to a Lanczos "
        "relative residual tolerance, the trace by Hutch++ with few samples (its SE is reported).",
    ]
    if scale != "paper":
        out.append("At this scale the nets are bnlab's narrow VGG on sklearn digits for a few hundred steps, not "
                   "Santurkar's VGG on CIFAR-10 for 15k steps; the magnitudes are not the paper's.")
    return out


def _over_training_figure(runs: dict[str, list[dict]], threshold: float | None = None) -> list[Figure]:
    panels = []
    for title, mode, key, ylabel in (("λ_max, BN mode train", "train", "top", "λ_max"),
                                     ("λ_max, BN mode eval", "eval", "top", "λ_max"),
                                     ("normalised: max_l λ_max(H_ll)·‖W_l‖²", "train", "normalised",
                                      "λ_max·‖W‖²"),
                                     ("batch sharpness E_B[gᵀHg/‖g‖²], BN mode train", "train", "batch_sharpness",
                                      "batch sharpness")):
        series = [s for s in (_band(runs["bn"], mode, key, "BN"), _band(runs["none"], mode, key, "no BN")) if s]
        if key == "batch_sharpness" and not any(v is not None for s in series for v in s["y"]):
            continue  # results from before batch sharpness was measured
        if threshold is not None and key in ("top", "batch_sharpness") and series:
            steps = series[0]["x"]
            series.append({"label": f"2/η = {threshold:g}", "x": [steps[0], steps[-1]], "y": [threshold] * 2})
        panels.append({"title": title, "xlabel": "step", "ylabel": ylabel, "yscale": "log", "series": series})
    return [Figure(id="hessian_top_eigenvalue", kind="lines", title="Hessian top eigenvalue over training",
                   caption="Largest Hessian eigenvalue of the training loss on a fixed batch, mean over seeds with "
                           "min–max band, BN vs no BN, with batch (train) and running (eval) statistics; right: "
                           "the weight-norm-invariant form λ_max(H_WW)·‖W‖² (max over conv layers); last: the "
                           "batch sharpness over SGD mini-batches (Andreyev & Beneventano 2024). The flat "
                           "line is the SGD stability threshold 2/η (Cohen et al. 2021).",
                   data={"panels": panels})]


def _end_figures(runs: dict[str, list[dict]]) -> list[Figure]:
    def end_values(rs: list[dict], mode: str, key: str, scale: str) -> tuple[float | None, float | None, float | None]:
        """Mean and 95% CI over seeds; on a log axis the geometric mean and the CI of the logs, exponentiated (a
        t-interval of positive values can reach below 0, which a log axis cannot draw)."""
        vals = [v for r in rs for v in [_series(r, mode, key)[-1] if _series(r, mode, key) else None]
                if v is not None]
        if scale == "log":
            logs = [math.log(v) for v in vals if math.isfinite(v) and v > 0]
            est = stats.mean_ci(logs)
            return tuple(None if v is None or not logs else math.exp(v)  # type: ignore[return-value]
                         for v in (est.effect, est.ci_low, est.ci_high))
        est = stats.mean_ci(vals)
        return (est.effect if vals else None), est.ci_low, est.ci_high

    bar_panels = []
    for title, key, modes, scale in (("λ_max at the end", "top", MODES, "log"),
                                     ("trace at the end", "trace", MODES, "linear"),
                                     ("λ_max(H_WW)·‖W‖² at the end", "normalised", ("train",), "log")):
        groups = []
        for label, norm in NORMS.items():
            vals = [end_values(runs[norm], m, key, scale) for m in modes]
            groups.append({"label": label, "values": [v[0] for v in vals], "lo": [v[1] for v in vals],
                           "hi": [v[2] for v in vals]})
        bar_panels.append({"title": title, "ylabel": key, "yscale": scale,
                           "categories": [f"BN mode {m}" for m in modes], "groups": groups})
    density_panels = []
    for mode in MODES:
        # both nets' quadratures smoothed on one grid with one σ (1% of the joint range), so they compare
        quads = {}
        for label, norm in NORMS.items():
            rs = [r for r in runs[norm] if r["density"]]
            if rs:
                quads[label] = rs[0]["density"].get(mode) or next(iter(rs[0]["density"].values()))
        series = []
        if quads:
            lo = min(min(min(n) for n in q["nodes"]) for q in quads.values())
            hi = max(max(max(n) for n in q["nodes"]) for q in quads.values())
            sigma = 0.01 * (hi - lo) if hi > lo else 1.0
            grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, 256, dtype=torch.float64)
            for label, q in quads.items():
                dens, _ = smoothed_density(q["nodes"], q["weights"], grid, sigma)
                series.append({"label": label, "x": grid.tolist(), "y": [max(float(v), 1e-6) for v in dens]})
        density_panels.append({"title": f"spectral density, BN mode {mode}", "xlabel": "eigenvalue",
                               "ylabel": "density", "yscale": "log", "series": series})
    return [
        Figure(id="sharpness_end", kind="bars", title="Sharpness at the end of training, BN vs no BN",
               caption="Hessian top eigenvalue, trace (Hutch++) and the weight-norm-invariant λ_max·‖W‖² of the "
                       "trained nets on a fixed training batch, per BN mode: mean over seeds with 95% CI (on a log "
                       "axis the geometric mean and the CI of the logs).",
               data={"panels": bar_panels}),
        Figure(id="spectral_density", kind="lines", title="Hessian spectral density (stochastic Lanczos quadrature)",
               caption="Eigenvalue density of the trained nets' Hessians (first seed), BN vs no BN on one grid "
                       "with one Gaussian width (1% of the joint range), per BN mode; log density, floored at 1e-6.",
               data={"panels": density_panels}),
    ]
