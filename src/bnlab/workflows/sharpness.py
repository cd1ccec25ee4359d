"""Train one net with the Hessian sharpness probe every few steps, then its end point and spectral densities
(the curvature runs of C06 and C14, `bnlab.experiments.curvature`).

At each probe time, on a fixed prefix of the training set: λ_max (Lanczos) and tr H ± SE (Hutch++) in each BN mode
(train: batch statistics, eval: running statistics; a no-BN net is one function and is measured once), and the
normalised sharpness max_l λ_max(H_{W_l W_l})·‖W_l‖² over the weights before the classifier. At the end: the
spectral density by stochastic Lanczos quadrature per mode. A trial function: plain data in, plain data out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bnlab.config import from_mapping
from bnlab.errors import BnlabError
from bnlab.models import layers_in_order
from bnlab.probes.hessian import density
from bnlab.probes.hessian.scale import scale_invariant_weights
from bnlab.probes.hessian.sharpness import SharpnessProbe
from bnlab.state import batchnorm_layers
from bnlab.train import TrainConfig, train
from bnlab.train.loop import build_for_config, default_loss, load_for_config

MODES: tuple[str, ...] = ("train", "eval")


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def sharpness_run(*, config: Mapping[str, Any], hessian_samples: int, probe_every: int, tol: float,
                  max_steps: int, trace_samples: int, sketch: int, density_runs: int, density_steps: int,
                  grid_points: int) -> dict[str, Any]:
    """Trial: train one net with the sharpness probe; measure the end point and its spectral densities."""
    cfg = from_mapping(TrainConfig, {**config, "progress": False, "trackers": ()})
    data = load_for_config(cfg)
    torch.manual_seed(cfg.seed)
    net = build_for_config(cfg, data)
    batch = (data.train_x[:hessian_samples], data.train_y[:hessian_samples])
    has_bn = bool(batchnorm_layers(net))
    modes = MODES if has_bn else MODES[:1]
    # the conv/linear weights before the classifier: scale-invariant with BN, rescaling-symmetric without
    weights = scale_invariant_weights(net, batch[0]) if has_bn else \
        [f"{n}.weight" for n, _ in layers_in_order(net)[:-1]]
    probe = SharpnessProbe(every=probe_every, bn_modes=modes, batch=batch, tol=tol, max_steps=max_steps,
                           trace_samples=trace_samples, sketch=sketch, invariant=("train",),
                           invariant_weights=weights, seed=cfg.seed)
    loss_fn = default_loss(cfg, data)
    result = train(cfg, probes=[probe], model=net, dataset=data, loss_fn=loss_fn)
    records = list(result.probes.get(probe.name, []))
    diverged = result.diverged_at_step
    final_step = int(result.final.get("steps_done", cfg.steps))
    net = result.model
    device = next(net.parameters()).device
    batch = (batch[0].to(device), batch[1].to(device))  # stays on the run's device (a GPU at paper scale)
    finite = all(torch.isfinite(p).all() for p in net.parameters())
    densities: dict[str, Any] = {}
    if diverged is None and finite:
        end = probe.measure(net, loss_fn, batch, step=final_step)
        records.append({**end, "step": final_step})
        for mode in modes:
            d = density(net, loss_fn, batch, runs=density_runs, steps=density_steps, grid_points=grid_points,
                        bn_mode=mode, seed=cfg.seed)
            densities[mode] = {"grid": d.grid, "density": d.density, "sigma": d.sigma, "products": d.products,
                               "nodes": d.nodes, "weights": d.weights}
    series: dict[str, dict[str, list]] = {m: {"top": [], "trace": [], "trace_se": [], "products": []}
                                           for m in modes}
    normalised: list[float | None] = []
    weight_norm_sq: list[float | None] = []
    for rec in records:
        for m in modes:
            e = rec[m]
            series[m]["top"].append(_finite(e["top_eigenvalue"]))
            series[m]["trace"].append(_finite(e.get("trace", math.nan)))
            series[m]["trace_se"].append(_finite(e.get("trace_se", math.nan)))
            series[m]["products"].append(int(e["products"]))
        inv = rec["train"].get("invariant", [])
        normalised.append(_finite(max((w["invariant"] for w in inv), default=math.nan)))
        weight_norm_sq.append(_finite(sum(w["weight_norm_sq"] for w in inv)) if inv else None)
    return {
        "norm": cfg.norm, "has_bn": has_bn, "seed": cfg.seed, "modes": list(modes), "weights": weights,
        "diverged_at_step": diverged, "final_test_acc": _finite(result.final.get("test_acc", math.nan)),
        "steps": [int(r["step"]) for r in records], "series": series, "normalised": normalised,
        "weight_norm_sq": weight_norm_sq, "density": densities, "hessian_samples": hessian_samples,
    }  # no timings: trial results are compared bit for bit across executors (the record keeps duration_s)


# ----------------------------------------------------------------------------- `bnlab sharpness`: the edge of stability
#
# Cohen et al. (2021, "Gradient descent on neural networks typically occurs at the edge of stability"): under
# full-batch GD with step size η, λ_max of the training-loss Hessian rises ("progressive sharpening") until it
# reaches 2/η, the stability limit of GD on a quadratic, and then hovers there while the loss keeps falling
# non-monotonically. `run_sharpness` trains each (norm, lr) pair and records λ_max every `every` steps in each BN
# mode, the loss, and the first step at which λ_max ≥ 2/η (BN mode train: the function GD differentiates).

OPTIMIZERS: tuple[str, ...] = ("gd", "sgd")
SHARPNESS_LOSSES: tuple[str, ...] = ("mse", "cross_entropy")


@dataclass(frozen=True)
class SharpnessConfig:
    model: str = "mlp"
    activation: str = "tanh"
    dataset: str = "digits"
    train_size: int = 500  # the full batch of GD
    norms: tuple[str, ...] = ("none", "bn")
    lrs: tuple[float, ...] = (0.02, 0.03, 0.04)
    optimizer: str = "gd"  # gd: full batch (Cohen et al.); sgd: mini-batches of batch_size
    batch_size: int = 64
    loss: str = "mse"  # ½ mean over examples of ‖f(x) − onehot(y)‖² (Cohen et al.'s MSE), or cross_entropy
    steps: int = 3000
    every: int = 100
    bn_modes: tuple[str, ...] = ("train", "eval")
    tol: float = 1e-3
    seed: int = 0
    fmt: str = "png"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise BnlabError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.loss not in SHARPNESS_LOSSES:
            raise BnlabError(f"loss must be one of {', '.join(SHARPNESS_LOSSES)}, got {self.loss!r}")
        if not self.norms or not self.lrs:
            raise BnlabError("give at least one norm and one learning rate")
        if any(not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0) for lr in self.lrs):
            raise BnlabError(f"learning rates must be finite numbers > 0, got {list(self.lrs)}")
        bad = [m for m in self.bn_modes if m not in MODES]
        if bad or not self.bn_modes:
            raise BnlabError(f"bn_modes must be a non-empty subset of {', '.join(MODES)}, got {list(self.bn_modes)}")
        for key in ("train_size", "batch_size", "steps", "every"):
            if getattr(self, key) < 1:
                raise BnlabError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.fmt not in ("png", "svg"):
            raise BnlabError(f"format must be png or svg, got {self.fmt!r}")


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½ mean over examples of ‖out − onehot(y)‖² (Cohen et al.'s square loss for classification)."""
    return 0.5 * (out - torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype)).square().sum(1).mean()


def edge_of_stability_run(cfg: SharpnessConfig, norm: str, lr: float, data: Any) -> dict[str, Any]:
    """Train one (norm, lr) pair; λ_max every `cfg.every` steps per BN mode, the loss, and when λ_max ≥ 2/η."""
    from bnlab.models import build_model
    from bnlab.probes.hessian import hessian_operator, lanczos_eigenpairs
    from bnlab.state import batchnorm_layers as bn_layers

    torch.manual_seed(cfg.seed)
    net = build_model(cfg.model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes,
                      activation=cfg.activation)
    loss_fn = half_mse if cfg.loss == "mse" else torch.nn.functional.cross_entropy
    x, y = data.train_x, data.train_y
    modes = cfg.bn_modes if bn_layers(net) else cfg.bn_modes[:1]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    rec: dict[str, Any] = {"norm": norm, "lr": lr, "limit": 2 / lr, "steps": [], "loss": [],
                           "top": {m: [] for m in modes}, "diverged_at": None}
    for step in range(cfg.steps + 1):
        if step % cfg.every == 0 or step == cfg.steps:
            with torch.no_grad():
                net.train()
                full = float(loss_fn(net(x), y))
            rec["steps"].append(step)
            rec["loss"].append(full if math.isfinite(full) else None)
            for m in modes:
                try:
                    with hessian_operator(net, loss_fn, (x, y), bn_mode=m) as op:
                        rec["top"][m].append(lanczos_eigenpairs(op, tol=cfg.tol, seed=cfg.seed + step).eigenvalues[0])
                except BnlabError:  # a non-finite Hessian: the run has diverged
                    rec["top"][m].append(None)
            if not math.isfinite(full):
                rec["diverged_at"] = step
                break
        if step == cfg.steps:
            break
        net.train()
        if cfg.optimizer == "gd":
            xb, yb = x, y
        else:
            idx = torch.randint(0, len(x), (min(cfg.batch_size, len(x)),), generator=gen)
            xb, yb = x[idx], y[idx]
        opt.zero_grad()
        loss_fn(net(xb), yb).backward()
        opt.step()
    tops = rec["top"][modes[0]]
    rec["first_at_limit"] = next((s for s, t in zip(rec["steps"], tops) if t is not None and t >= rec["limit"]), None)
    # the "hover": λ_max over the last third of the probes, relative to 2/η
    tail = [t for t in tops[len(tops) * 2 // 3:] if t is not None]
    rec["late_ratio_to_limit"] = (sum(tail) / len(tail)) / rec["limit"] if tail else None
    return rec


def run_sharpness(cfg: SharpnessConfig, out: str | Path, log: Any = print) -> dict[str, Any]:
    """Every (norm, lr) pair of `cfg`; writes ``sharpness.json`` and ``sharpness.<fmt>`` under `out`."""
    from bnlab.atomic import write_json
    from bnlab.config import to_mapping
    from bnlab.data import load_dataset
    from bnlab.report.figures import save_figure

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BnlabError(f"output path {out} exists and is not a folder")
    data = load_dataset(cfg.dataset, train_size=cfg.train_size)
    runs = []
    for norm in cfg.norms:
        for lr in cfg.lrs:
            rec = edge_of_stability_run(cfg, norm, float(lr), data)
            runs.append(rec)
            if log:
                first = rec["first_at_limit"]
                log(f"{norm:>5} lr {lr:g}: 2/η = {rec['limit']:.4g}, λ_max {rec['top'][cfg.bn_modes[0]][0]:.4g} -> "
                    f"{_last(rec['top'][cfg.bn_modes[0]])}, reaches 2/η at step {first}"
                    + (f", diverged at step {rec['diverged_at']}" if rec["diverged_at"] is not None else ""))
    panels = []
    for norm in cfg.norms:
        for mode in cfg.bn_modes:
            series = []
            for rec in (r for r in runs if r["norm"] == norm):
                if mode not in rec["top"]:
                    continue
                series.append({"label": f"lr {rec['lr']:g}", "x": rec["steps"], "y": rec["top"][mode]})
                series.append({"label": f"2/η = {rec['limit']:.3g}", "colour_of": f"lr {rec['lr']:g}",
                               "x": [rec["steps"][0], rec["steps"][-1]], "y": [rec["limit"]] * 2})
            if series:
                panels.append({"title": f"{'BN' if norm != 'none' else 'no BN'}, BN mode {mode}"
                               if norm != "none" else "no BN", "xlabel": f"{cfg.optimizer.upper()} step",
                               "ylabel": "λ_max", "series": series})
    figure = {"id": "sharpness", "kind": "lines", "title": "Sharpness over training and 2/η (Cohen et al. Fig. 1)",
              "caption": "", "data": {"panels": panels}}
    out.mkdir(parents=True, exist_ok=True)
    save_figure(figure, out / f"sharpness.{cfg.fmt}")
    result = {"config": to_mapping(cfg), "runs": runs}
    write_json(out / "sharpness.json", result)
    return result


def _last(values: list[float | None]) -> str:
    finite = [v for v in values if v is not None]
    return f"{finite[-1]:.4g}" if finite else "n/a"
