"""Sharpness over training: a probe for the training engine (`bnlab.train`) recording the Hessian's top
eigenvalue, its trace ± standard error and, optionally, the scale-invariant sharpness λ_max(H_WW)·‖W‖², every
`every` steps, in each requested BN mode.

    probe = SharpnessProbe(every=50, bn_modes=("train", "eval"), batch=(x_fixed, y_fixed))
    result = train(config, probes=[probe])
    result.probes["sharpness"]  # [{"step", "train": {"top_eigenvalue", "trace", ...}, "eval": {...}}, ...]

A fixed `batch` makes the curve comparable across steps (the same function of the weights at every point);
without one the probe uses the batch the step trains on. Cost per call and mode: one gradient graph, the Lanczos
steps (typically 10-30 products cold; warm-started from the previous probe's eigenvector, usually a few) and the
trace's 2·sketch + samples products. Side effects: none on the model (the operator never writes it; `bn_mode`
restores modes); with ``warm_start=True`` the probe keeps the last eigenvector per mode to start from.

Under SGD give `sgd_batches` (fixed mini-batches of the SGD batch size, `batch_sharpness.sample_batches`): each
mode's record then also holds the batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] ± SE (Andreyev & Beneventano 2024: the
quantity that settles at 2/η under SGD while λ_max stays below), at one gradient graph and one product per batch.
Every number records the batch size its BN statistics used (``bn_batch_size``: the fixed batch's size for λ_max,
the SGD batch size for batch sharpness, None in mode eval or without BN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bnlab.errors import BnlabError
from bnlab.probes.hessian.batch_sharpness import batch_sharpness
from bnlab.probes.hessian.lanczos import lanczos_eigenpairs
from bnlab.probes.hessian.operator import hessian_operator
from bnlab.probes.hessian.scale import invariant_sharpness, scale_invariant_weights
from bnlab.probes.hessian.trace import krylov_hutchpp_trace
from bnlab.state import BN_MODES, batchnorm_layers


class SharpnessProbe:
    """Top eigenvalue and trace of the loss Hessian (see the module doc). Plain-data record per call."""

    name = "sharpness"

    def __init__(self, every: int = 50, *, bn_modes: Sequence[str] = ("train",),
                 batch: tuple[torch.Tensor, torch.Tensor] | None = None, tol: float = 1e-3,
                 max_steps: int = 60, trace: bool = True, trace_samples: int = 10, sketch: int = 8,
                 invariant: bool | Sequence[str] = False, invariant_weights: Sequence[str] | None = None,
                 seed: int = 0, name: str = "sharpness", warm_start: bool = False,
                 sgd_batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        if every < 1:
            raise BnlabError(f"every must be >= 1, got {every}")
        bad = [m for m in bn_modes if m not in BN_MODES]
        if bad or not bn_modes:
            raise BnlabError(f"bn_modes must be a non-empty subset of {', '.join(BN_MODES)}, got {list(bn_modes)}")
        self.every = every
        self.bn_modes = tuple(bn_modes)
        self.batch = batch
        self.tol, self.max_steps = tol, max_steps
        self.trace, self.trace_samples, self.sketch = trace, trace_samples, sketch
        # BN modes in which λ_max(H_WW)·‖W‖² is measured (True: all), over `invariant_weights` (default: the
        # weights feeding a BN layer, `scale_invariant_weights`)
        self.invariant_modes = tuple(self.bn_modes if invariant is True else () if invariant is False else invariant)
        self.invariant_weights = None if invariant_weights is None else list(invariant_weights)
        self.seed = seed
        self.name = name
        # warm start: each mode's Lanczos starts from the eigenvector found at the previous probe (plus the gradient
        # and a random part), with the same stopping rule as a cold start. Off by default: on the audit's VGG runs
        # the cold start (random + gradient) already converges in 5-8 products and warm starts saved nothing
        # (bench/bench_warm_start.py: 149 vs 150 products over 12 probes at tol 1e-3, 230 vs 230 at 1e-6)
        self.warm_start = warm_start
        self._previous: dict[str, torch.Tensor] = {}
        self.sgd_batches = list(sgd_batches) if sgd_batches else []

    def measure(self, model: torch.nn.Module, loss_fn: Any, batch: tuple[torch.Tensor, torch.Tensor],
                step: int = 0) -> dict[str, Any]:
        """The record for one point: {"bn_modes": [...], mode: {...} for each mode}."""
        record: dict[str, Any] = {"bn_modes": list(self.bn_modes), "has_bn": bool(batchnorm_layers(model))}
        weights: list[str] = []
        if self.invariant_modes:
            weights = self.invariant_weights if self.invariant_weights is not None else \
                scale_invariant_weights(model, batch[0])
        for mode in self.bn_modes:
            with hessian_operator(model, loss_fn, batch, bn_mode=mode) as op:
                prev = self._previous.get(mode) if self.warm_start else None
                start = prev if prev is not None and prev.shape[-1] == op.dim else "auto"
                top = lanczos_eigenpairs(op, k=1, tol=self.tol, max_steps=self.max_steps, seed=self.seed + step,
                                         start=start)
                if top.converged:
                    self._previous[mode] = top.eigenvectors.detach().clone()
                entry: dict[str, Any] = {"top_eigenvalue": top.eigenvalues[0], "residual": top.residuals[0],
                                         "converged": top.converged, "products": top.products,
                                         "lanczos_products": top.products, "start": top.info["start"],
                                         "bn_batch_size": op.bn_batch_size}
                if self.trace:
                    tr = krylov_hutchpp_trace(op, sketch=self.sketch, max_samples=self.trace_samples,
                                       min_samples=min(2, self.trace_samples), seed=self.seed + step)
                    entry.update(trace=tr.trace, trace_se=tr.se, products=entry["products"] + tr.products)
            if self.sgd_batches:
                entry.update(self._batch_sharpness(model, loss_fn, mode))
                entry["products"] += entry["batch_sharpness_products"]
            if weights and mode in self.invariant_modes:
                entry["invariant"] = invariant_sharpness(model, loss_fn, batch, weights=weights, bn_mode=mode,
                                                         tol=self.tol, seed=self.seed + step,
                                                         max_steps=self.max_steps)
            record[mode] = entry
        return record

    def _batch_sharpness(self, model: torch.nn.Module, loss_fn: Any, mode: str) -> dict[str, Any]:
        device = next(model.parameters()).device
        batches = [(x.to(device), y.to(device)) for x, y in self.sgd_batches]
        bs = batch_sharpness(model, loss_fn, batches, bn_mode=mode)
        return {"batch_sharpness": bs.value, "batch_sharpness_se": bs.se, "sgd_batch_size": bs.batch_size,
                "batch_sharpness_bn_batch_size": bs.bn_batch_size, "batch_sharpness_products": bs.products}

    def __call__(self, ctx: Any) -> dict[str, Any]:
        batch = self.batch if self.batch is not None else ctx.batch
        device = next(ctx.model.parameters()).device
        batch = (batch[0].to(device), batch[1].to(device))
        return self.measure(ctx.model, ctx.loss_fn, batch, step=int(ctx.step))
