"""ℓp batch normalisations of Santurkar et al. (2018, Sec. 3.3 and App. C), p ∈ {1, 2, ∞}.

Santurkar et al. show that normalising by an ℓp norm instead of the standard deviation smooths the loss landscape
like BN, although the activations' distributions move *more* (larger ICS). For one channel and its m values in a
batch (every dim but dim 1):

    μ      = (1/m) Σ x_i                                   (centring)
    n_p    = ((1/m) Σ |x_i|^p)^(1/p)  for p = 1, 2;   n_∞ = max_i |x_i|     (mean ℓp norm, *before* centring)
    y_i    = γ (x_i − μ) / (n_p + ε) + β

Autograd differentiates this forward (it is a variant for experiments, not the analytic reference layer).
Running statistics (EMA with `momentum` of μ and n_p, or cumulative averages with ``momentum=None``) are used in
eval mode, exactly as BN's running mean and variance are. The layer sets ``is_batchnorm = True`` so probes handle
it like BN (`bnlab.state.bn_mode("train")` normalises with batch statistics without touching the buffers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnlab.errors import BnlabError

LP_NORMS: tuple[float, ...] = (1.0, 2.0, math.inf)


def mean_lp_norm(x: torch.Tensor, p: float) -> torch.Tensor:
    """Per-channel mean ℓp norm of x (N, C, *) -> (C,): ((1/m) Σ|x|^p)^(1/p), or max|x| for p = ∞."""
    dims = (0,) + tuple(range(2, x.dim()))
    if p == math.inf:
        return x.abs().amax(dim=dims)
    if p == 1.0:
        return x.abs().mean(dim=dims)
    return x.square().mean(dim=dims).sqrt()


class LpNorm(nn.Module):
    """Santurkar's ℓp normalisation for (N, C) and (N, C, *) inputs; p in {1, 2, inf}.

    Parameters weight (γ), bias (β); buffers running_mean, running_norm, num_batches_tracked. Side effect: a
    training call with ``track_running_stats=True`` updates the buffers in place.
    """

    is_batchnorm = True

    def __init__(self, num_features: int, p: float = 2.0, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise BnlabError(f"LpNorm num_features must be a positive int, got {num_features!r}")
        if isinstance(p, str) and p.lower() in ("inf", "infinity"):
            p = math.inf
        if not isinstance(p, (int, float)) or float(p) not in LP_NORMS:
            raise BnlabError(f"LpNorm p must be 1, 2 or inf, got {p!r}")
        if not eps > 0:
            raise BnlabError(f"LpNorm eps must be > 0, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise BnlabError(f"LpNorm momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features = num_features
        self.p = float(p)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_norm", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_norm", None)
            self.register_buffer("num_batches_tracked", None)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, p={self.p}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise BnlabError(f"LpNorm expects a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise BnlabError(f"LpNorm expects input of shape (N, {self.num_features}, *), got {tuple(x.shape)}")
        dims = (0,) + tuple(range(2, x.dim()))
        shape = (1, self.num_features) + (1,) * (x.dim() - 2)
        if self.training or self.running_mean is None:
            if self.training and x.numel() // x.shape[1] < 2:
                raise BnlabError(f"LpNorm in training mode needs more than 1 value per channel, got input of "
                                 f"shape {tuple(x.shape)}")
            mean = x.mean(dim=dims)  # (C,)
            norm = mean_lp_norm(x, self.p)  # (C,) before centring
            if self.training and self.track_running_stats and self.running_mean is not None:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), f)
                    self.running_norm.lerp_(norm.detach().to(self.running_norm.dtype), f)
        else:
            mean, norm = self.running_mean, self.running_norm
        y = (x - mean.view(shape)) / (norm.view(shape) + self.eps)  # (N, C, *)
        if self.weight is not None:
            y = torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))
        return y
