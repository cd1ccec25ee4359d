"""The Jacobian of batch normalisation for one feature over a batch, and Santurkar et al.'s Theorem 4.1.

For one feature (channel) and its m values x ∈ R^m in a batch, with μ = mean(x), σ² = mean((x − μ)²) (biased),
s = √(σ² + ε) and x̂ = (x − μ)/s,

    ∂x̂/∂x = (1/s) (I − 11ᵀ/m − x̂x̂ᵀ/m)                   (symmetric, m × m)
    ∂y/∂x = γ ∂x̂/∂x                                      for y = γ x̂ + β

This is exact for any ε > 0 (differentiate x̂_i = (x_i − μ)/s, with ∂s/∂x_j = (x_j − μ)/(m s)). Its eigenvectors:

* **1**:  eigenvalue 0 (mean shifts are removed);
* x̂:     eigenvalue (1/s)(1 − ‖x̂‖²/m) = ε/s³ → 0 as ε → 0 (rescalings are removed);
* the m − 2 directions orthogonal to both: eigenvalue 1/s.

So the backward pass rescales the upstream gradient by γ/s and projects it off **1** and x̂ (claims.md C08).

Santurkar et al. (2018), Theorem 4.1: with g = ∂L/∂z the gradient at the BN output z of unit j and ŷ_j = x̂,

    ‖∂L̂/∂y_j‖² = (γ²/σ_j²) (‖g‖² − (1/m)⟨1, g⟩² − c ⟨g, ŷ_j⟩²)

The proof (their App. C) gives the identity with c = 1/m (exact when ε = 0; with ε > 0 the exact third
coefficient is (2 − σ²/s²)/m and σ_j becomes s). The *published statement* of Theorem 4.1 (arXiv:1805.11604)
prints c = 1/√m instead: because 1/√m ≥ 1/m, that right-hand side is *smaller* than the true value, so the printed
"bound" fails whenever ⟨g, ŷ⟩ ≠ 0 and m > 1. `theorem_4_1` returns both sides so the audit measures this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import BnlabError
from bnlab.state import bn_mode, preserved_state


def _check_feature(x: torch.Tensor, eps: float) -> None:
    if x.dim() != 1 or x.numel() < 2:
        raise BnlabError(f"the BN Jacobian needs one feature over a batch: a 1-D tensor of >= 2 values, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise BnlabError(f"the BN Jacobian needs a floating-point tensor, got {x.dtype}")
    if not eps > 0:
        raise BnlabError(f"eps must be > 0, got {eps!r}")


def normalize(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂, s) for one feature: x (m,) -> x̂ (m,), s = √(σ² + ε) (scalar tensor)."""
    _check_feature(x, eps)
    mu = x.mean()
    s = torch.sqrt(((x - mu) ** 2).mean() + eps)
    return (x - mu) / s, s


def bn_jacobian(x: torch.Tensor, eps: float = 1e-5, gamma: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Explicit ∂y/∂x = γ (1/s)(I − 11ᵀ/m − x̂x̂ᵀ/m) for one feature x (m,) -> (m, m); γ = 1 gives ∂x̂/∂x."""
    xhat, s = normalize(x, eps)
    m = x.numel()
    eye = torch.eye(m, dtype=x.dtype, device=x.device)
    jac = (eye - 1.0 / m - torch.outer(xhat, xhat) / m) / s  # (m, m)
    return gamma * jac


@dataclass(frozen=True)
class JacobianSpectrum:
    """Eigen-decomposition of ∂x̂/∂x and what the formula predicts (both ascending)."""

    eigenvalues: torch.Tensor  # (m,) measured, ascending
    eigenvectors: torch.Tensor  # (m, m) columns
    predicted: torch.Tensor  # (m,) [0, ε/s³, 1/s, ..., 1/s] sorted ascending
    s: float
    ones_alignment: float  # |cos| between 1 and the eigenvector of the smallest eigenvalue
    xhat_alignment: float  # |cos| between x̂ and the eigenvector of the second-smallest eigenvalue

    @property
    def max_error(self) -> float:
        return float((self.eigenvalues - self.predicted).abs().max())


def predicted_eigenvalues(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The spectrum the formula predicts for ∂x̂/∂x: 0 (along 1), ε/s³ (along x̂), and 1/s (m − 2 times)."""
    _, s = normalize(x, eps)
    m = x.numel()
    values = torch.cat([torch.zeros(1, dtype=x.dtype, device=x.device), (eps / s**3).reshape(1),
                        (1.0 / s).reshape(1).expand(m - 2)])
    return torch.sort(values).values


def jacobian_spectrum(x: torch.Tensor, eps: float = 1e-5) -> JacobianSpectrum:
    """Eigen-decompose the explicit Jacobian of one feature (symmetric, so `torch.linalg.eigh`)."""
    jac = bn_jacobian(x, eps)
    values, vectors = torch.linalg.eigh(jac)  # ascending
    xhat, s = normalize(x, eps)
    m = x.numel()
    ones = torch.ones(m, dtype=x.dtype, device=x.device) / math.sqrt(m)
    xhat_unit = xhat / xhat.norm().clamp_min(torch.finfo(x.dtype).tiny)
    # the two smallest eigenvalues are 0 and ε/s³; the 2-D eigenspace they span is {1, x̂}
    ones_al = float(torch.linalg.vector_norm(vectors[:, :2].T @ ones))
    xhat_al = float(torch.linalg.vector_norm(vectors[:, :2].T @ xhat_unit))
    return JacobianSpectrum(values, vectors, predicted_eigenvalues(x, eps), float(s), ones_al, xhat_al)


def autograd_jacobian(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """∂x̂/∂x of one feature by autograd through torch's own batch_norm (an independent reference)."""
    _check_feature(x, eps)

    def f(v: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(v.reshape(-1, 1), None, None, training=True, eps=eps).reshape(-1)

    return torch.autograd.functional.jacobian(f, x)


def finite_difference_jacobian(x: torch.Tensor, eps: float = 1e-5, h: float = 1e-6) -> torch.Tensor:
    """∂x̂/∂x of one feature by central finite differences (column j: (x̂(x + h e_j) − x̂(x − h e_j)) / 2h)."""
    _check_feature(x, eps)
    m = x.numel()
    cols = []
    for j in range(m):
        step = torch.zeros_like(x)
        step[j] = h
        cols.append((normalize(x + step, eps)[0] - normalize(x - step, eps)[0]) / (2 * h))
    return torch.stack(cols, dim=1)  # (m, m): [i, j] = ∂x̂_i/∂x_j


@dataclass(frozen=True)
class Theorem41:
    """Both sides of Santurkar Thm 4.1, per channel (each a (C,) tensor)."""

    lhs: torch.Tensor  # ‖∂L/∂x_j‖², from autograd through torch's batch_norm
    identity: torch.Tensor  # exact right side: (γ²/s²)(‖g‖² − ⟨1,g⟩²/m − (2 − σ²/s²)⟨g,x̂⟩²/m)
    identity_c_1_over_m: torch.Tensor  # the proof's form, c = 1/m, σ² → s² (exact as ε → 0)
    published_bound: torch.Tensor  # the printed statement, c = 1/√m
    m: int

    @property
    def identity_rel_error(self) -> float:
        """max over channels of |lhs − identity| / max(lhs, tiny)."""
        return float(((self.lhs - self.identity).abs() / self.lhs.abs().clamp_min(1e-300)).max())

    @property
    def published_bound_holds(self) -> torch.Tensor:
        """(C,) bool: lhs ≤ published right side (up to 1e-12 relative)."""
        return self.lhs <= self.published_bound * (1 + 1e-12) + 1e-300


def theorem_4_1(layer_input: torch.Tensor, upstream_grad: torch.Tensor, weight: torch.Tensor | None = None,
                eps: float = 1e-5) -> Theorem41:
    """Santurkar Thm 4.1 on a real BN layer: `layer_input` x (N, C, *) entering a train-mode BN, `upstream_grad`
    g = ∂L/∂z (same shape) at its output, `weight` γ (C,) or None. Per channel, m = N·∏(*).

    The left side is measured by autograd through `torch.nn.functional.batch_norm` (not bnlab's backward).
    """
    if layer_input.shape != upstream_grad.shape or layer_input.dim() < 2:
        raise BnlabError(f"layer_input and upstream_grad must share a shape (N, C, *), got "
                         f"{tuple(layer_input.shape)} and {tuple(upstream_grad.shape)}")
    c = layer_input.shape[1]
    x = layer_input.detach().clone().requires_grad_(True)
    gamma = torch.ones(c, dtype=x.dtype, device=x.device) if weight is None else weight.detach().to(x.dtype)
    y = F.batch_norm(x, None, None, gamma, None, training=True, eps=eps)
    (dx,) = torch.autograd.grad(y, x, upstream_grad.detach().to(x.dtype))
    flat = x.detach().transpose(0, 1).reshape(c, -1)  # (C, m)
    g = upstream_grad.detach().to(x.dtype).transpose(0, 1).reshape(c, -1)  # (C, m)
    m = flat.shape[1]
    mu = flat.mean(1, keepdim=True)
    var = ((flat - mu) ** 2).mean(1)  # (C,) biased
    s2 = var + eps
    xhat = (flat - mu) / s2.sqrt().unsqueeze(1)  # (C, m)
    g_norm2 = (g * g).sum(1)
    ones_g = g.sum(1)
    g_xhat = (g * xhat).sum(1)
    scale = gamma**2 / s2
    lhs = (dx.transpose(0, 1).reshape(c, -1) ** 2).sum(1)
    identity = scale * (g_norm2 - ones_g**2 / m - (2 - var / s2) * g_xhat**2 / m)
    proof_form = scale * (g_norm2 - ones_g**2 / m - g_xhat**2 / m)
    published = scale * (g_norm2 - ones_g**2 / m - g_xhat**2 / math.sqrt(m))
    return Theorem41(lhs, identity, proof_form, published, m)


def bn_input_and_grad(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                      loss_fn: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Capture a real BN layer's input x and upstream gradient ∂L/∂z on one batch (train-mode BN, no buffer
    update): returns (x, g), both (N, C, *). The model's state (modes, buffers, grads) is restored."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    captured: dict[str, torch.Tensor] = {}

    def keep_input(_m: nn.Module, args: tuple) -> None:
        captured["x"] = args[0].detach()

    def keep_grad(_m: nn.Module, _gin: tuple, gout: tuple) -> None:
        captured["g"] = gout[0].detach()

    with preserved_state(model) as guard, bn_mode(model, "train"):
        guard.add_hook(layer.register_forward_pre_hook(keep_input))
        guard.add_hook(layer.register_full_backward_hook(keep_grad))
        loss = loss_fn(model(inputs), targets)
        loss.backward()
    if "x" not in captured or "g" not in captured:
        raise BnlabError("the chosen layer was not used by the model's forward pass")
    return captured["x"], captured["g"]
