"""Internal covariate shift as Santurkar et al. (2018) define it (Definition 2.1, Fig. 3).

For a network with parameterised layers W_1 … W_k (in forward order) and one batch (x, y), the ICS of layer i at
step t is measured by comparing

    G_i  = ∇_{W_i} L(W_1^t, …, W_k^t; x, y)
    G′_i = ∇_{W_i} L(W_1^{t+1}, …, W_{i−1}^{t+1}, W_i^t, …, W_k^t; x, y)

where W^{t+1} is the weight after the *actual optimizer update* of step t (momentum, weight decay, Adam moments:
whatever `optimizer.step()` would do with the gradient G). bnlab reports ‖G_i − G′_i‖₂, cos(G_i, G′_i) and the
relative distance ‖G_i − G′_i‖₂ / ‖G_i‖₂. Santurkar Fig. 3 shows that with BN the distance is not smaller (often
larger) than without, and that in a deep linear net G and G′ become almost uncorrelated.

How:
* One pass gives G for every layer and records the forward order of the parameterised modules (pre-forward hooks).
* The update W^{t+1} is previewed with a deep copy of the optimizer whose parameters are fresh clones of the
  weights carrying G as their ``.grad`` (`optimizer_step_preview`): the optimizer's own ``step`` does the math, so
  SGD (momentum, dampening, Nesterov, weight decay), Adam/AdamW and any torch optimizer are exact, and the real
  optimizer state is never touched.
* For each reported layer i one pass through `torch.func.functional_call` with the earlier layers' updated weights
  gives G′_i; only W_i requires grad, so backward stops at layer i. The first layer needs no pass (G′ = G).

Side effects: none (parameters, buffers, ``.grad``, modes, hooks, RNG and the optimizer's state are as before).
BN runs in `bn_mode` (default ``train``: batch statistics, running statistics untouched); every other module in eval
mode; the RNG is rewound before every pass so noise layers draw identical noise for G and G′.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from bnlab.errors import BnlabError
from bnlab.probes.along_gradient import (
    LossFn,
    ReplayRng,
    check_batch,
    check_bn_mode,
    scalar_loss,
    trainable_parameters,
)
from bnlab.state import bn_mode as bn_mode_context
from bnlab.state import preserved_state


@dataclass(frozen=True)
class LayerShift:
    """ICS of one layer: G, G′ norms, their distance and cosine."""

    layer: str
    grad_norm: float  # ‖G‖₂
    shifted_grad_norm: float  # ‖G′‖₂
    distance: float  # ‖G − G′‖₂
    cosine: float  # cos(G, G′); nan when either is zero
    relative_distance: float  # ‖G − G′‖₂ / ‖G‖₂


@dataclass(frozen=True)
class ICSResult:
    layers: list[LayerShift]
    order: list[str]  # every parameterised module in forward order
    bn_mode: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def optimizer_step_preview(optimizer: torch.optim.Optimizer, model: nn.Module,
                           grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights `optimizer.step()` would produce if the model's gradients were `grads` (name -> tensor), without
    touching the model or the optimizer.

    The optimizer is deep-copied with a memo that maps each model parameter to a detached clone carrying its
    gradient, so the copy's state (momentum buffers, Adam moments, step counts) is a copy and its parameters are
    the clones; its ``step()`` then writes only the clones. Parameters without a gradient stay unchanged.
    """
    named = dict(model.named_parameters())
    memo: dict[int, Any] = {}
    clones: dict[str, torch.Tensor] = {}
    for name, p in named.items():
        clone = p.detach().clone()
        clone.grad = grads[name].detach().clone() if name in grads else None
        memo[id(p)] = clone  # deepcopy returns the clone wherever the optimizer refers to p
        clones[name] = clone
    preview = copy.deepcopy(optimizer, memo)
    with torch.no_grad():
        # the class's step, not `preview.step`: an LR scheduler installs an instance `step` wrapper holding a weak
        # reference to the *original* optimizer; torch's Optimizer.__getstate__ drops it from the copy, but an
        # optimizer class with its own pickling might not
        type(preview).step(preview)
    return {name: c.detach() for name, c in clones.items()}


def _sgd_preview(model: nn.Module, grads: dict[str, torch.Tensor], lr: float) -> dict[str, torch.Tensor]:
    """Plain gradient descent, W − lr·G, when no optimizer is given."""
    return {name: (p.detach() - lr * grads[name]) if name in grads else p.detach()
            for name, p in model.named_parameters()}


def parameterised_modules(model: nn.Module) -> dict[str, list[str]]:
    """module name -> names of the trainable parameters it owns directly (registration order)."""
    owned: dict[str, list[str]] = {}
    for mod_name, module in model.named_modules():
        names = [f"{mod_name}.{n}" if mod_name else n for n, p in module.named_parameters(recurse=False)
                 if p.requires_grad]
        if names:
            owned[mod_name] = names
    return owned


def default_layers(model: nn.Module, order: Sequence[str]) -> list[str]:
    """Santurkar's "layers": modules owning a weight matrix or kernel (a parameter with >= 2 dims)."""
    modules = dict(model.named_modules())
    return [name for name in order
            if any(p.dim() >= 2 for p in modules[name].parameters(recurse=False) if p.requires_grad)]


def _cosine(a: float, b: float, dot: float) -> float:
    return dot / (a * b) if a > 0 and b > 0 else math.nan


def ics(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    lr: float | None = None,
    layers: Sequence[str] | None = None,
    bn_mode: str = "train",
) -> ICSResult:
    """Santurkar's ICS (Def. 2.1) of every layer in `layers` (module names; default `default_layers`).

    The update is `optimizer`'s (previewed, see `optimizer_step_preview`), or plain W − lr·G when no optimizer is
    given (then `lr` is required). See the module doc for the definition and the side effects (none).
    """
    x, y = check_batch(batch)
    mode = check_bn_mode(bn_mode)
    if optimizer is None and (lr is None or not lr > 0):
        raise BnlabError("ics needs an optimizer or a positive lr")
    owned = parameterised_modules(model)
    if layers is not None:
        unknown = [name for name in layers if name not in owned]
        if unknown:
            raise BnlabError(f"not a module with trainable parameters: {unknown[0]!r}")
    modules = dict(model.named_modules())
    with preserved_state(model, params=False) as guard, bn_mode_context(model, mode):
        params = trainable_parameters(model)
        rng = ReplayRng(x.device)
        order: list[str] = []
        handles = [guard.add_hook(modules[name].register_forward_pre_hook(
            lambda _m, _i, name=name: order.append(name) if name not in order else None)) for name in owned]
        leaves = {k: v.requires_grad_(True) for k, v in ((k, v.detach()) for k, v in params.items())}
        loss = scalar_loss(loss_fn(functional_call(model, leaves, (x,)), y))
        grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)))
        grads = {k: g for k, g in grads.items() if g is not None}
        for handle in handles:  # order is known: later passes run without the hooks
            handle.remove()
        updated = (optimizer_step_preview(optimizer, model, grads) if optimizer is not None
                   else _sgd_preview(model, grads, float(lr)))
        chosen = list(layers) if layers is not None else default_layers(model, order)
        results = []
        for layer in chosen:
            if layer not in order:
                raise BnlabError(f"layer {layer!r} did not run in the forward pass")
            earlier = order[: order.index(layer)]
            mixed = dict(params)  # (detached weights at step t)
            for mod in earlier:
                for pname in owned[mod]:
                    mixed[pname] = updated[pname]  # W^{t+1} for layers before i
            g_i = [grads.get(pname, torch.zeros_like(params[pname])) for pname in owned[layer]]
            if not earlier:  # nothing precedes the first layer: G′ = G, no pass needed
                g_p = g_i
            else:
                mine = {pname: params[pname].detach().requires_grad_(True) for pname in owned[layer]}
                mixed.update(mine)
                rng.rewind()
                loss_i = scalar_loss(loss_fn(functional_call(model, mixed, (x,)), y))
                g_prime = torch.autograd.grad(loss_i, list(mine.values()), allow_unused=True)
                g_p = [torch.zeros_like(t) if gp is None else gp for gp, t in zip(g_prime, g_i)]
            a = math.sqrt(sum(float(t.double().pow(2).sum()) for t in g_i))
            b = math.sqrt(sum(float(t.double().pow(2).sum()) for t in g_p))
            dot = sum(float((s.double() * t.double()).sum()) for s, t in zip(g_i, g_p))
            dist = math.sqrt(sum(float((s.double() - t.double()).pow(2).sum()) for s, t in zip(g_i, g_p)))
            results.append(LayerShift(layer=layer, grad_norm=a, shifted_grad_norm=b, distance=dist,
                                      cosine=_cosine(a, b, dot), relative_distance=dist / a if a > 0 else math.nan))
    return ICSResult(layers=results, order=order, bn_mode=mode)


class ICSProbe:
    """Engine adapter (`bnlab.train` probe protocol): `ics` with the run's optimizer on the step's own batch,
    called before the step's update, exactly when Def. 2.1 wants it."""

    def __init__(self, every: int, layers: Sequence[str] | None = None, bn_mode: str = "train",
                 name: str = "ics") -> None:
        if every < 1:
            raise BnlabError(f"every must be >= 1, got {every}")
        self.every = every
        self.layers = None if layers is None else list(layers)
        self.bn_mode = check_bn_mode(bn_mode)
        self.name = name

    def __call__(self, ctx: Any) -> dict[str, Any]:
        optimizer = getattr(ctx, "optimizer", None)
        result = ics(ctx.model, ctx.loss_fn, ctx.batch, optimizer,
                     lr=None if optimizer is not None else float(ctx.config.lr),
                     layers=self.layers, bn_mode=self.bn_mode)
        return {
            "step": int(ctx.step),
            "layers": [r.layer for r in result.layers],
            "distance": [r.distance for r in result.layers],
            "cosine": [r.cosine for r in result.layers],
            "relative_distance": [r.relative_distance for r in result.layers],
            "grad_norm": [r.grad_norm for r in result.layers],
        }
