"""`bnlab sharpness`: λ_max over training against 2/η, BN vs no BN (the edge of stability).

Kept apart from `bnlab.trials.sharpness_trajectory` (the audit's curvature trial): this job draws figures, and an audit
trial's code fingerprint must not depend on the report's plotting code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bnlab.config import check_choice
from bnlab.errors import BnlabError
from bnlab.folders import check_owner, claim_out_folder
from bnlab.state import BN_MODES

MODES = BN_MODES  # the BN modes every curvature / landscape number is measured in

# ----------------------------------------------------------------------------- `bnlab sharpness`: the edge of stability
#
# Cohen et al. (2021, "Gradient descent on neural networks typically occurs at the edge of stability"): under
# full-batch GD with step size η, λ_max of the training-loss Hessian rises ("progressive sharpening") until it
# reaches 2/η, the stability limit of GD on a quadratic, and then hovers there while the loss keeps falling
# non-monotonically. `run_sharpness` trains each (norm, lr) pair and records λ_max every `every` steps in each BN
# mode, the loss, and the first step at which λ_max ≥ 2/η (BN mode train: the function GD differentiates).
#
# Under SGD (Andreyev & Beneventano 2024, "Edge of Stochastic Stability") the full-batch λ_max stays below 2/η and
# it is the batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] over mini-batches of the SGD batch size that settles there:
# with `optimizer="sgd"` each probe also records it per BN mode (`bnlab.probes.hessian.batch_sharpness`, over
# `sgd_batches` seeded mini-batches). Every number records the batch size its BN statistics used.
#
# On the user's own model and data (`model_file` / `data_file` = "FILE.py:FACTORY", the study's loaders
# `bnlab.workflows.study.inputs`): norm "bn" is the model as the factory returns it, "none" its twin with every
# BN layer replaced by an identity (`remove_bn`).

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
    sgd_batches: int = 8  # mini-batches behind each batch-sharpness estimate (optimizer sgd)
    model_file: str | None = None  # FILE.py:FACTORY returning the user's nn.Module (replaces `model`)
    data_file: str | None = None  # FILE.py:FACTORY returning the user's data (replaces `dataset`)

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, SHARPNESS_LOSSES)
        if not self.norms or not self.lrs:
            raise BnlabError("give at least one norm and one learning rate")
        if any(not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0) for lr in self.lrs):
            raise BnlabError(f"learning rates must be finite numbers > 0, got {list(self.lrs)}")
        bad = [m for m in self.bn_modes if m not in MODES]
        if bad or not self.bn_modes:
            raise BnlabError(f"bn_modes must be a non-empty subset of {', '.join(MODES)}, got {list(self.bn_modes)}")
        if self.model_file is not None and any(n not in ("bn", "none") for n in self.norms):
            raise BnlabError(f"with a model file the norms are bn (the model as given) and none (its BN-free twin), "
                             f"got {list(self.norms)}")
        for key in ("train_size", "batch_size", "steps", "every", "sgd_batches"):
            if getattr(self, key) < 1:
                raise BnlabError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.fmt not in ("png", "svg"):
            raise BnlabError(f"format must be png or svg, got {self.fmt!r}")


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½ mean over examples of ‖out − onehot(y)‖² (Cohen et al.'s square loss for classification)."""
    return 0.5 * (out - torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype)).square().sum(1).mean()


def _build_net(cfg: SharpnessConfig, norm: str, data: Any) -> torch.nn.Module:
    """A fresh net for one (norm, lr) run: a built-in model, or the user's factory (norm "none": its BN-free twin)."""
    torch.manual_seed(cfg.seed)
    if cfg.model_file is None:
        from bnlab.models import build_model

        return build_model(cfg.model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes,
                           activation=cfg.activation)
    from bnlab.workflows.study.inputs import call_factory, check_model, load_factory
    from bnlab.workflows.study.twin import remove_bn

    net = call_factory(load_factory(cfg.model_file), "model")
    check_model(net, data)
    return remove_bn(net)[0] if norm == "none" else net


def _loss_for(cfg: SharpnessConfig, data: Any) -> Any:
    if cfg.loss == "cross_entropy":
        if data.task != "classification":
            raise BnlabError("loss cross_entropy needs integer class labels; the data's targets are floats")
        return torch.nn.functional.cross_entropy
    return half_mse if data.task == "classification" else half_mse_regression


def half_mse_regression(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½ mean over examples of ‖out − y‖² for float targets."""
    return 0.5 * (out - y.reshape(out.shape)).square().reshape(out.shape[0], -1).sum(1).mean()


def _probe(net: torch.nn.Module, loss_fn: Any, cfg: SharpnessConfig, data: tuple, modes: tuple, step: int,
           rec: dict[str, Any]) -> None:
    """λ_max on the full batch per BN mode and, under SGD, the batch sharpness over seeded mini-batches."""
    from bnlab.probes.hessian import hessian_operator, lanczos_eigenpairs
    from bnlab.probes.hessian.batch_sharpness import batch_sharpness, sample_batches

    x, y = data
    for m in modes:
        try:
            with hessian_operator(net, loss_fn, (x, y), bn_mode=m) as op:
                rec["top"][m].append(lanczos_eigenpairs(op, tol=cfg.tol, seed=cfg.seed + step).eigenvalues[0])
        except BnlabError:  # a non-finite Hessian: the run has diverged
            rec["top"][m].append(None)
        if cfg.optimizer != "sgd":
            continue
        batches = sample_batches(x, y, min(cfg.batch_size, len(x)), cfg.sgd_batches, seed=cfg.seed + step)
        try:
            value = batch_sharpness(net, loss_fn, batches, bn_mode=m).value
            rec["batch_sharpness"][m].append(value if math.isfinite(value) else None)
        except BnlabError:
            rec["batch_sharpness"][m].append(None)


def edge_of_stability_run(cfg: SharpnessConfig, norm: str, lr: float, data: Any) -> dict[str, Any]:
    """Train one (norm, lr) pair; λ_max (and, under SGD, batch sharpness) every `cfg.every` steps per BN mode, the
    loss, and when λ_max ≥ 2/η."""
    from bnlab.state import batchnorm_layers as bn_layers

    net = _build_net(cfg, norm, data)
    loss_fn = _loss_for(cfg, data)
    x, y = data.train_x, data.train_y
    has_bn = bool(bn_layers(net))
    modes = cfg.bn_modes if has_bn else cfg.bn_modes[:1]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    sgd_size = min(cfg.batch_size, len(x))
    rec: dict[str, Any] = {
        "norm": norm, "lr": lr, "limit": 2 / lr, "steps": [], "loss": [], "top": {m: [] for m in modes},
        "batch_sharpness": {m: [] for m in modes} if cfg.optimizer == "sgd" else {}, "diverged_at": None,
        "has_bn": has_bn, "sgd_batch_size": sgd_size if cfg.optimizer == "sgd" else None,
        # the examples behind each BN statistic: the full batch for λ_max, the SGD batch for batch sharpness
        "bn_batch_size": {m: {"top": len(x) if has_bn and m == "train" else None,
                              "batch_sharpness": sgd_size if has_bn and m == "train" and cfg.optimizer == "sgd"
                              else None} for m in modes}}
    for step in range(cfg.steps + 1):
        if step % cfg.every == 0 or step == cfg.steps:
            with torch.no_grad():
                net.train()
                full = float(loss_fn(net(x), y))
            rec["steps"].append(step)
            rec["loss"].append(full if math.isfinite(full) else None)
            _probe(net, loss_fn, cfg, (x, y), modes, step, rec)
            if not math.isfinite(full):
                rec["diverged_at"] = step
                break
        if step == cfg.steps:
            break
        net.train()
        if cfg.optimizer == "gd":
            xb, yb = x, y
        else:
            idx = torch.randint(0, len(x), (sgd_size,), generator=gen)
            xb, yb = x[idx], y[idx]
        opt.zero_grad()
        loss_fn(net(xb), yb).backward()
        opt.step()
    tops = rec["top"][modes[0]]
    rec["first_at_limit"] = next((s for s, t in zip(rec["steps"], tops) if t is not None and t >= rec["limit"]), None)
    # the "hover": λ_max (and batch sharpness) over the last third of the probes, relative to 2/η
    rec["late_ratio_to_limit"] = _late_ratio(tops, rec["limit"])
    if rec["batch_sharpness"]:
        rec["late_batch_ratio_to_limit"] = _late_ratio(rec["batch_sharpness"][modes[0]], rec["limit"])
    return rec


def _late_ratio(values: list[float | None], limit: float) -> float | None:
    tail = [t for t in values[len(values) * 2 // 3:] if t is not None]
    return (sum(tail) / len(tail)) / limit if tail else None


def _load(cfg: SharpnessConfig) -> Any:
    """The training set: a built-in dataset, or the user's data factory's (its first `train_size` examples)."""
    from bnlab.data import load_dataset

    if cfg.data_file is None:
        return load_dataset(cfg.dataset, train_size=cfg.train_size)
    import dataclasses

    from bnlab.workflows.study.inputs import call_factory, load_data, load_factory

    data = load_data(call_factory(load_factory(cfg.data_file), "data"))
    return dataclasses.replace(data, train_x=data.train_x[: cfg.train_size], train_y=data.train_y[: cfg.train_size])


def _panels(cfg: SharpnessConfig, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One panel per (norm, BN mode): λ_max, the batch sharpness (SGD) and 2/η per learning rate."""
    panels = []
    for norm in cfg.norms:
        for mode in cfg.bn_modes:
            series = []
            for rec in (r for r in runs if r["norm"] == norm):
                if mode not in rec["top"]:
                    continue
                lr = f"lr {rec['lr']:g}"
                series.append({"label": f"λ_max, {lr}", "colour_of": lr, "x": rec["steps"], "y": rec["top"][mode]})
                series.append({"label": f"2/η = {rec['limit']:.3g}", "colour_of": lr,
                               "x": [rec["steps"][0], rec["steps"][-1]], "y": [rec["limit"]] * 2})
                if rec["batch_sharpness"].get(mode):
                    series.append({"label": f"batch sharpness, {lr}", "colour_of": lr, "x": rec["steps"],
                                   "y": rec["batch_sharpness"][mode]})
            if series:
                bn = rec["bn_batch_size"][mode]
                stats = f" (BN statistics over {bn['top']} / {bn['batch_sharpness']})" \
                    if bn["top"] is not None and bn["batch_sharpness"] is not None else ""
                panels.append({"title": (f"BN, BN mode {mode}{stats}" if norm != "none" else "no BN"),
                               "xlabel": f"{cfg.optimizer.upper()} step", "ylabel": "sharpness", "series": series})
    return panels


def run_sharpness(cfg: SharpnessConfig, out: str | Path, log: Any = print, force: bool = False) -> dict[str, Any]:
    """Every (norm, lr) pair of `cfg`; writes ``sharpness.json`` and ``sharpness.<fmt>`` under `out` (which must be
    empty or a sharpness folder, unless `force`: checked before the work, claimed when written)."""
    from bnlab.atomic import write_json
    from bnlab.config import to_mapping
    from bnlab.report.figures import save_figure

    data = _load(cfg)
    out = check_owner(out, "sharpness", force=force)
    runs = []
    for norm in cfg.norms:
        for lr in cfg.lrs:
            rec = edge_of_stability_run(cfg, norm, float(lr), data)
            runs.append(rec)
            if log:
                mode = next(iter(rec["top"]))
                first = rec["first_at_limit"]
                batch = (f", batch sharpness -> {_last(rec['batch_sharpness'][mode])}"
                         if rec["batch_sharpness"] else "")
                log(f"{norm:>5} lr {lr:g}: 2/η = {rec['limit']:.4g}, λ_max {_last(rec['top'][mode][:1])} -> "
                    f"{_last(rec['top'][mode])}{batch}, λ_max reaches 2/η at step {first}"
                    + (f", diverged at step {rec['diverged_at']}" if rec["diverged_at"] is not None else ""))
    sgd = cfg.optimizer == "sgd"
    figure = {"id": "sharpness", "kind": "lines",
              "title": "Sharpness over training and 2/η" + (" (λ_max and batch sharpness under SGD)" if sgd
                                                           else " (Cohen et al. Fig. 1)"),
              "caption": "", "data": {"panels": _panels(cfg, runs)}}
    claim_out_folder(out, "sharpness", force=force)
    save_figure(figure, out / f"sharpness.{cfg.fmt}")
    result = {"config": to_mapping(cfg), "runs": runs}
    write_json(out / "sharpness.json", result)
    return result


def _last(values: list[float | None]) -> str:
    finite = [v for v in values if v is not None]
    return f"{finite[-1]:.4g}" if finite else "n/a"
