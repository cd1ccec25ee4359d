"""Batch sharpness: the curvature SGD feels along its own step, the quantity that settles at 2/η under SGD.

Andreyev & Beneventano (2024, "Edge of Stochastic Stability: Revisiting the Edge of Stability for SGD") show that
under mini-batch SGD with step size η it is not the full-batch λ_max that rises to 2/η and hovers there (it stays
below), but the *batch sharpness*

    BS = E_B [ g_Bᵀ H_B g_B / ‖g_B‖² ],        g_B = ∇L_B(θ),  H_B = ∇²L_B(θ),

the expectation over mini-batches B of the size SGD trains on of the Rayleigh quotient of each batch's own Hessian
along that batch's own gradient — the curvature in the direction of the step SGD actually takes. (A quadratic
L_B along −η g_B is stable iff η g_Bᵀ H_B g_B / ‖g_B‖² < 2.)

With BN the mode is part of the definition: ``"train"`` normalises each mini-batch with its own statistics (the
function SGD differentiates), so the BN statistics use |B| examples — the batch size is recorded beside every
number; ``"eval"`` uses the stored running statistics (no batch statistic at all: ``bn_batch_size`` None).

Cost per batch: one gradient graph (it yields g_B for free) and one Hessian-vector product. Side effects: none
(`hessian_operator` never writes the model and restores its modes). The estimate's standard error over batches is
reported, so a caller can ask for more batches where it matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bnlab.data.batches import Batch, as_batches
from bnlab.errors import BnlabError
from bnlab.probes.hessian.operator import LossFn, hessian_operator
from bnlab.state import batchnorm_layers


@dataclass
class BatchSharpness:
    """E_B[g_Bᵀ H_B g_B / ‖g_B‖²] ± its standard error over the batches, with what it was measured in."""

    value: float  # mean over batches of the Rayleigh quotients
    se: float  # standard error of the mean (nan for one batch)
    per_batch: list[float]  # one Rayleigh quotient per batch (nan where g_B = 0)
    bn_mode: str
    bn_batch_size: int | None  # examples behind each BN statistic: |B| in mode train; None in eval (running
    # statistics) and for a net without BN
    batch_size: int  # |B|, the SGD mini-batch size the expectation is over
    products: int  # Hessian-vector products used (one per batch)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_sharpness": self.value, "batch_sharpness_se": self.se, "per_batch": self.per_batch,
                "bn_mode": self.bn_mode, "bn_batch_size": self.bn_batch_size, "batch_size": self.batch_size,
                "products": self.products, **self.info}


def rayleigh_along_gradient(model: nn.Module, loss_fn: LossFn, batch: Batch, *, bn_mode: str = "train",
                            params: Sequence[str] | None = None, backend: str = "autograd") -> tuple[float, int]:
    """(g_Bᵀ H_B g_B / ‖g_B‖², products) for one batch B: the curvature of L_B along its own gradient (nan where
    g_B = 0: no direction)."""
    with hessian_operator(model, loss_fn, batch, params=params, bn_mode=bn_mode, backend=backend) as op:
        g = op.loss_gradient()  # (P,) ∇L_B: free from the kept gradient graph
        norm_sq = float(g.double().pow(2).sum())
        if not math.isfinite(norm_sq):
            raise BnlabError("the loss gradient is not finite (a diverged point?); no batch sharpness there")
        if norm_sq == 0.0:
            return math.nan, 0
        hg = op.matvec(g)  # (P,) H_B g_B
        return float(g.double() @ hg.double()) / norm_sq, op.products


def sample_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, count: int, *, seed: int = 0) -> list[Batch]:
    """`count` mini-batches of `batch_size` examples drawn without replacement within each batch (as SGD draws
    them), seeded by `seed` with a private generator (the global RNG is untouched)."""
    if batch_size < 1 or count < 1:
        raise BnlabError(f"batch_size and count must be >= 1, got {batch_size} and {count}")
    if batch_size > x.shape[0]:
        raise BnlabError(f"batch_size {batch_size} is larger than the {x.shape[0]} examples given")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        idx = torch.randperm(x.shape[0], generator=gen)[:batch_size].to(x.device)  # (b,)
        out.append((x[idx], y[idx]))
    return out


def batch_sharpness(model: nn.Module, loss_fn: LossFn, batches: Any, *, bn_mode: str = "train",
                    params: Sequence[str] | None = None, backend: str = "autograd") -> BatchSharpness:
    """Batch sharpness over the mini-batches `batches` (an iterable of (x, y), all of the SGD batch size: see
    `sample_batches`; one (x, y) pair is one batch). See the module doc."""
    parts = as_batches(batches)
    sizes = {int(b[0].shape[0]) for b in parts}
    if len(sizes) != 1:
        raise BnlabError(f"batch sharpness needs mini-batches of one size (the SGD batch size), got {sorted(sizes)}")
    size = sizes.pop()
    values, products = [], 0
    for b in parts:
        value, used = rayleigh_along_gradient(model, loss_fn, b, bn_mode=bn_mode, params=params, backend=backend)
        values.append(value)
        products += used
    finite = [v for v in values if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    se = (math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) / len(finite))
          if len(finite) > 1 else math.nan)
    bn_size = size if bn_mode == "train" and batchnorm_layers(model) else None
    return BatchSharpness(value=mean, se=se, per_batch=values, bn_mode=bn_mode, bn_batch_size=bn_size,
                          batch_size=size, products=products, info={"batches": len(parts), "backend": backend})
