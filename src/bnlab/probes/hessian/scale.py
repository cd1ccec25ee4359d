"""Sharpness that does not depend on the weight norm: λ_max of a scale-invariant block times ‖W‖².

A weight W whose output feeds a BN layer directly makes the loss scale-invariant in W when BN uses batch
statistics: L(αW) = L(W) for α > 0 (Ioffe & Szegedy 2015, Sec. 3.3; up to BN's ε). Differentiating twice,
α² ∇²L(αW) = ∇²L(W), so the Hessian block of W scales as 1/α² and its top eigenvalue λ_max(H_WW) can be made
as small or as large as one likes by rescaling W without changing the function. Under SGD ‖W‖ grows (the
gradient is orthogonal to W), so raw sharpness of a BN net falls during training even where nothing about the
function changed (Li & Arora 2019; Lyu, Li & Arora 2022). The product

    λ_max(H_WW) · ‖W‖²

is invariant to that rescaling (exactly in BN mode "train"; in "eval" the running statistics do not rescale, so it
is invariant only once they have caught up), which is why bnlab reports it beside the raw number.

`scale_invariant_weights` finds such W structurally: the weight (dim ≥ 2) of a module whose output tensor is
the very tensor a BN layer receives as input, observed with forward hooks on one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bnlab.data.batches import as_batches
from bnlab.probes.hessian.lanczos import lanczos_eigenpairs
from bnlab.probes.hessian.operator import LossFn, hessian_operator
from bnlab.state import bn_mode, is_batchnorm, preserved_state


def scale_invariant_weights(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the weights that feed a BN layer directly (scale-invariant in BN mode "train"), in model order.

    Runs one forward pass on `x` without gradients; the model is left as it was.
    """
    # id(output tensor) -> (module name, the tensor): holding the tensor keeps its id from being reused
    producers: dict[int, tuple[str, torch.Tensor]] = {}
    found: list[str] = []
    with preserved_state(model, params=False) as guard, bn_mode(model, "train"), torch.no_grad():
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if is_batchnorm(module):
                def pre_hook(mod: nn.Module, args: tuple) -> None:
                    if args and isinstance(args[0], torch.Tensor) and id(args[0]) in producers:
                        found.append(producers[id(args[0])][0] + ".weight")
                guard.add_hook(module.register_forward_pre_hook(pre_hook))
            elif isinstance(weight, nn.Parameter) and weight.dim() >= 2:
                def hook(mod: nn.Module, args: tuple, out: Any, _name: str = name) -> None:
                    if isinstance(out, torch.Tensor):
                        producers[id(out)] = (_name, out)
                guard.add_hook(module.register_forward_hook(hook))
        model(x)
    order = [n for n, _ in model.named_parameters()]
    return [n for n in order if n in set(found)]


def invariant_sharpness(model: nn.Module, loss_fn: LossFn, data: Any, *, weights: Sequence[str] | None = None,
                        bn_mode: str = "train", tol: float = 1e-3, seed: int = 0,
                        max_steps: int | None = None) -> list[dict[str, Any]]:
    """Per scale-invariant weight W: λ_max(H_WW), ‖W‖² and their product (see the module doc).

    `weights` defaults to `scale_invariant_weights` on the first batch's inputs. Each entry:
    ``{"param", "top_eigenvalue", "weight_norm_sq", "invariant", "products", "converged", "bn_mode"}``.
    """
    batches = as_batches(data)
    names = list(weights) if weights is not None else scale_invariant_weights(model, batches[0][0])
    named = dict(model.named_parameters())
    out = []
    for name in names:
        with hessian_operator(model, loss_fn, batches, params=[name], bn_mode=bn_mode) as op:
            res = lanczos_eigenpairs(op, k=1, tol=tol, seed=seed, max_steps=max_steps)
        norm_sq = float(named[name].detach().double().pow(2).sum())
        out.append({"param": name, "top_eigenvalue": res.eigenvalues[0], "weight_norm_sq": norm_sq,
                    "invariant": res.eigenvalues[0] * norm_sq, "products": res.products,
                    "converged": res.converged, "bn_mode": bn_mode})
    return out
