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
from bnlab.state import BN_MODES

MODES = BN_MODES  # the BN modes every curvature / landscape number is measured in

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
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, SHARPNESS_LOSSES)
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
