"""Scale invariance of BN with respect to the weights that feed it (Ioffe & Szegedy 2015, Sec. 3.3; claims.md C09).

If a layer with parameters θ = (W, b) feeds a BN layer, then for every α > 0

    BN((αW)x + αb) = BN(Wx + b)                          (forward invariance)
    ∂L/∂(αθ) = (1/α) ∂L/∂θ                               (gradients shrink as the weights grow)
    ⟨∂L/∂θ, θ⟩ = 0                                        (the gradient is orthogonal to the weights)

The third follows from the first: d/dα L(αθ) = ⟨∇L(αθ), θ⟩ = 0. Together they make plain SGD act with an effective
learning rate η/‖θ‖² on the direction θ/‖θ‖ (Li & Arora 2019). All three hold exactly when ε = 0; with ε > 0 the
normaliser √(α²σ² + ε) deviates from α√(σ² + ε) by a relative ≈ ε(1 − 1/α²)/(2σ²), so tiny α or tiny σ² show it.

`scale_invariance` scales *every* direct parameter of the chosen layer (weight and bias: a bias before BN must
scale too, else the map is not invariant) and measures, on one batch with BN normalising by the batch's statistics
(`bn_mode(model, "train")`), the relative errors of the three identities. The model is restored afterwards
(parameters, buffers, modes, gradients, RNG): see `bnlab.state.preserved_state`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.state import bn_mode, preserved_state

DEFAULT_ALPHAS: tuple[float, ...] = (0.1, 0.5, 2.0, 10.0, 100.0)


@dataclass(frozen=True)
class InvarianceReport:
    """Measured errors per α (lists aligned with `alphas`); all errors are relative, see `scale_invariance`."""

    alphas: list[float]
    forward_error: list[float]  # max|f(αθ) − f(θ)| / max|f(θ)| on the model's output
    grad_error: list[float]  # max|α ∇L(αθ) − ∇L(θ)| / max|∇L(θ)|
    orthogonality: list[float]  # |⟨∇L(αθ), αθ⟩| / (‖∇L(αθ)‖ ‖αθ‖): |cos| between gradient and weights
    loss: list[float]  # L(αθ)
    grad_norm: list[float]  # ‖∇L(αθ)‖
    weight_norm: float  # ‖θ‖ at α = 1
    base_loss: float

    @property
    def max_forward_error(self) -> float:
        return max(self.forward_error)

    @property
    def max_grad_error(self) -> float:
        return max(self.grad_error)

    @property
    def max_orthogonality(self) -> float:
        return max(self.orthogonality)

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            raise BnlabError(f"no layer named '{layer}' in the model")
        return modules[layer]
    if not any(m is layer for m in model.modules()):
        raise BnlabError("the chosen layer is not part of the model")
    return layer


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _norm(a: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((x * x).sum() for x in a))


def scale_invariance(model: nn.Module, layer: nn.Module | str, inputs: torch.Tensor, targets: torch.Tensor,
                     loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                     alphas: Sequence[float] = DEFAULT_ALPHAS) -> InvarianceReport:
    """Measure the three scale-invariance identities for `layer` (a module or its name) of `model` on one batch.

    `loss_fn(output, targets)` defaults to cross-entropy. Raises BnlabError for an unknown layer, a layer without
    parameters or a non-positive α.
    """
    target = _resolve_layer(model, layer)
    params = [p for p in target.parameters(recurse=False)]
    if not params:
        raise BnlabError("the chosen layer has no parameters to scale")
    alphas = [float(a) for a in alphas]
    if not alphas or any(not a > 0 for a in alphas):
        raise BnlabError(f"alphas must be positive numbers, got {alphas}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    with preserved_state(model), bn_mode(model, "train"):
        base = [p.detach().clone() for p in params]
        for p in params:
            p.requires_grad_(True)

        def evaluate(alpha: float) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
            with torch.no_grad():
                for p, b in zip(params, base):
                    p.copy_(b * alpha)
            out = model(inputs)
            loss = loss_fn(out, targets)
            grads = torch.autograd.grad(loss, params)
            return out.detach(), loss.detach(), [g.detach() for g in grads]

        out1, loss1, grad1 = evaluate(1.0)
        out_scale = out1.abs().max().clamp_min(torch.finfo(out1.dtype).tiny)
        grad_scale = max(float(g.abs().max()) for g in grad1) or torch.finfo(out1.dtype).tiny
        fwd, gerr, orth, losses, gnorms = [], [], [], [], []
        for alpha in alphas:
            out, loss, grads = evaluate(alpha)
            fwd.append(float((out - out1).abs().max() / out_scale))
            gerr.append(max(float((alpha * g - g1).abs().max()) for g, g1 in zip(grads, grad1)) / grad_scale)
            scaled = [b * alpha for b in base]
            denom = float(_norm(grads) * _norm(scaled)) or 1.0
            orth.append(abs(float(_dot(grads, scaled))) / denom)
            losses.append(float(loss))
            gnorms.append(float(_norm(grads)))
        weight_norm = float(_norm(base))
    return InvarianceReport(alphas, fwd, gerr, orth, losses, gnorms, weight_norm, float(loss1))
