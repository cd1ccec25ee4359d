"""`bnlab hessian`: curvature of a built-in model (trained for a few steps, or at init) or of a `bnlab train` run.

For each requested BN mode: the top-k eigenvalues (Lanczos), the trace ± SE (Hutch++) and the spectral density
(stochastic Lanczos quadrature) of the training loss on a fixed prefix of the training set. Writes, atomically,
``<out>/hessian.json`` (every number, with the BN mode, parameters, products and seed of each) and
``<out>/density.<fmt>`` (the densities side by side, one panel per mode), and returns the JSON data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bnlab.atomic import write_bytes, write_json
from bnlab.config import check_choice, from_mapping, to_mapping
from bnlab.errors import BnlabError
from bnlab.probes.hessian import estimate_trace, hessian_operator, lanczos_eigenpairs, slq_density
from bnlab.probes.hessian.lanczos import CRITERIA, STARTS
from bnlab.report.figures import render_figure
from bnlab.state import BN_MODES, batchnorm_layers
from bnlab.train import TrainConfig, train
from bnlab.train.loop import build_for_config, default_loss, load_for_config
from bnlab.train.run_folder import load_run


@dataclass(frozen=True)
class HessianConfig:
    run: str | None = None  # a `bnlab train --out` folder; otherwise the built-in model below
    model: str = "vgg"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    norm: str = "bn"
    dataset: str = "digits"
    data_dir: str | None = None
    train_steps: int = 0  # 0: the model at initialisation
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0
    samples: int = 256  # Hessian of the loss on this many training examples (one batch)
    bn_modes: tuple[str, ...] = ("train", "eval")
    k: int = 3
    tol: float = 1e-4
    criterion: str = "residual"  # Lanczos stopping: "residual" (bound) | "eigenvalue" (estimated eigenvalue error)
    start: str = "auto"  # Lanczos start vector: "auto" (random + loss gradient) | "random"
    trace_rtol: float = 0.02  # stop the trace at SE <= rtol x |trace|
    max_samples: int = 200
    density_runs: int = 4
    density_steps: int = 60
    fmt: str = "png"

    def __post_init__(self) -> None:
        bad = [m for m in self.bn_modes if m not in BN_MODES]
        if bad or not self.bn_modes:
            raise BnlabError(f"bn_modes must be a non-empty subset of {', '.join(BN_MODES)}, got {list(self.bn_modes)}")
        for key in ("samples", "k", "max_samples", "density_runs", "density_steps"):
            if getattr(self, key) < 1:
                raise BnlabError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.train_steps < 0:
            raise BnlabError(f"train_steps must be >= 0, got {self.train_steps}")
        if not (self.tol > 0 and self.trace_rtol > 0):
            raise BnlabError("tol and trace_rtol must be positive")

        check_choice("criterion", self.criterion, CRITERIA)
        check_choice("start", self.start, STARTS)
        if self.fmt not in ("png", "svg"):
            raise BnlabError(f"format must be png or svg, got {self.fmt!r}")


def _load_run(folder: str) -> tuple[torch.nn.Module, Any, Any]:
    run = load_run(folder)
    return run.model, run.dataset, default_loss(run.config, run.dataset)


def _build(cfg: HessianConfig) -> tuple[torch.nn.Module, Any, Any]:
    kwargs = dict(cfg.model_kwargs)
    if cfg.model == "vgg" and "config" not in kwargs:
        kwargs["config"] = "narrow"
    tcfg = from_mapping(TrainConfig, {"model": cfg.model, "model_kwargs": kwargs, "norm": cfg.norm,
                                      "dataset": cfg.dataset, "data_dir": cfg.data_dir, "lr": cfg.lr,
                                      "steps": max(cfg.train_steps, 1), "batch_size": cfg.batch_size,
                                      "seed": cfg.seed, "eval_every": 0, "progress": False, "trackers": (),
                                      "device": "cpu"})
    data = load_for_config(tcfg)
    torch.manual_seed(cfg.seed)
    model = build_for_config(tcfg, data)
    if cfg.train_steps > 0:
        model = train(tcfg, model=model, dataset=data).model
    return model, data, default_loss(tcfg, data)


def _plot(densities: dict[str, dict[str, Any]], title: str, fmt: str) -> bytes:
    """The spectral density per BN mode, log density floored at 1e-8 (the report's plotting stack)."""
    panels = [{"title": f"BN mode {mode}", "xlabel": "eigenvalue", "ylabel": "density", "yscale": "log",
               "series": [{"label": "density", "x": list(d["grid"]), "y": [max(v, 1e-8) for v in d["density"]]}]}
              for mode, d in densities.items()]
    return render_figure({"id": "density", "kind": "lines", "title": title, "caption": "",
                          "data": {"panels": panels}}, fmt=fmt)


def run_hessian(cfg: HessianConfig, out: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure, save ``hessian.json`` and the density figure under `out`, and return the JSON data."""
    out = Path(out)
    model, data, loss_fn = _load_run(cfg.run) if cfg.run else _build(cfg)
    model = model.cpu()
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise BnlabError("the model has non-finite parameters (a diverged run?)")
    n = min(cfg.samples, len(data.train_x))
    batch = (data.train_x[:n], data.train_y[:n])
    has_bn = bool(batchnorm_layers(model))
    modes = cfg.bn_modes if has_bn else cfg.bn_modes[:1]
    results: dict[str, Any] = {"config": to_mapping(cfg), "has_bn": has_bn, "samples": n, "modes": {}}
    densities = {}
    for mode in modes:
        t0 = time.process_time()
        with hessian_operator(model, loss_fn, batch, bn_mode=mode) as op:
            top = lanczos_eigenpairs(op, k=min(cfg.k, op.dim), tol=cfg.tol, seed=cfg.seed, start=cfg.start,
                                     criterion=cfg.criterion)
            tr = estimate_trace(op, rtol=cfg.trace_rtol, max_samples=cfg.max_samples, seed=cfg.seed)
            dens = slq_density(op, runs=cfg.density_runs, steps=cfg.density_steps, seed=cfg.seed)
        densities[mode] = {"grid": dens.grid, "density": dens.density}
        results["modes"][mode] = {"top": top.to_dict(), "trace": tr.to_dict(), "density": dens.to_dict(),
                                  "cpu_s": time.process_time() - t0}
        log(f"BN mode {mode}: top eigenvalues {', '.join(f'{v:.6g}' for v in top.eigenvalues)} "
            f"(converged: {top.converged}, {top.products} products); trace {tr.trace:.6g} ± {tr.se:.3g} "
            f"({tr.products} products); density from {dens.runs} x {dens.steps} Lanczos steps")
    if not has_bn:
        log("the model has no BN layer: both BN modes are the same function, measured once")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "hessian.json", results)
    what = cfg.run or f"{cfg.model} ({cfg.norm}) on {cfg.dataset}, {cfg.train_steps} steps"
    write_bytes(out / f"density.{cfg.fmt}", _plot(densities, f"Hessian spectral density: {what}", cfg.fmt))
    log(f"wrote {out / 'hessian.json'} and {out / f'density.{cfg.fmt}'}")
    return results
