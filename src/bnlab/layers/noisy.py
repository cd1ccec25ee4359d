"""Santurkar et al. (2018) "noisy BN": BN followed by time-varying, non-zero-mean, non-unit-variance noise.

Santurkar Sec. 2.1 / Fig. 2 (claims.md row C04) asks whether a net whose activations keep *moving* distribution
(large internal covariate shift) still trains as well as BN. After each BN layer the activations a are replaced by

    a ← s · a + m

with, at every training step t and for every unit (channel) j,

    μ_t,j ~ U(−mean_range, mean_range)            (default U(−0.5, 0.5))
    σ_t,j ~ U(scale_low, scale_high)              (default U(1, 1.25))

and, for every element of the activation tensor,

    m ~ U(μ_t,j − mean_jitter, μ_t,j + mean_jitter)   (default ±0.1)
    s ~ N(σ_t,j, scale_std)                            (default std 0.1)

"A step" is one forward call in training mode: each call draws new μ_t, σ_t and new per-element m, s. The noise is
a constant with respect to the parameters (gradients flow through s · a, not into the noise). In eval mode the
layer adds no noise. Draws come from `generator` when one is given (or a generator seeded with `seed`, created
lazily on the input's device), else from torch's global RNG.

`DistributionNoise` is the noise alone (for the no-BN + noise control, factory kind ``"noise"``);
`NoisyBatchNorm` is bnlab's `BatchNorm` followed by it (factory kind ``"noisy_bn"``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm


def _check_noise_settings(mean_range: float, scale_low: float, scale_high: float, mean_jitter: float,
                          scale_std: float) -> None:
    if mean_range < 0 or mean_jitter < 0 or scale_std < 0:
        raise BnlabError(f"noise ranges must be >= 0, got mean_range={mean_range}, mean_jitter={mean_jitter}, "
                         f"scale_std={scale_std}")
    if scale_low > scale_high:
        raise BnlabError(f"noise scale_low must be <= scale_high, got {scale_low} > {scale_high}")


class DistributionNoise(nn.Module):
    """a ← s·a + m with Santurkar's time-varying noise (see the module docstring); identity in eval mode.

    Input (N, C) or (N, C, *); channel j of every sample shares μ_t,j and σ_t,j. Side effect: each training call
    advances the generator (or torch's global RNG).
    """

    def __init__(self, num_features: int, mean_range: float = 0.5, scale_low: float = 1.0, scale_high: float = 1.25,
                 mean_jitter: float = 0.1, scale_std: float = 0.1, generator: torch.Generator | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise BnlabError(f"noise num_features must be a positive int, got {num_features!r}")
        _check_noise_settings(mean_range, scale_low, scale_high, mean_jitter, scale_std)
        if generator is not None and seed is not None:
            raise BnlabError("give the noise either a generator or a seed, not both")
        self.num_features = num_features
        self.mean_range = float(mean_range)
        self.scale_low = float(scale_low)
        self.scale_high = float(scale_high)
        self.mean_jitter = float(mean_jitter)
        self.scale_std = float(scale_std)
        self.generator = generator
        self.seed = seed

    def extra_repr(self) -> str:
        return (f"{self.num_features}, mean_range={self.mean_range}, scale=[{self.scale_low}, {self.scale_high}], "
                f"mean_jitter={self.mean_jitter}, scale_std={self.scale_std}")

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.generator is None and self.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(int(self.seed))
        return self.generator

    def sample(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's noise for activations shaped like `like` (N, C, *): (s, m), both of that shape."""
        if like.dim() < 2 or like.shape[1] != self.num_features:
            raise BnlabError(f"noise expects input of shape (N, {self.num_features}, *), got {tuple(like.shape)}")
        gen = self._generator(like.device)
        opts: dict[str, Any] = {"device": like.device, "dtype": like.dtype, "generator": gen}
        c = self.num_features
        shape = (1, c) + (1,) * (like.dim() - 2)
        mu_t = (torch.rand(c, **opts) * 2 - 1) * self.mean_range  # (C,) ~ U(−r, r)
        sigma_t = self.scale_low + torch.rand(c, **opts) * (self.scale_high - self.scale_low)  # (C,)
        m = mu_t.view(shape) + (torch.rand(like.shape, **opts) * 2 - 1) * self.mean_jitter  # (N, C, *)
        s = sigma_t.view(shape) + torch.randn(like.shape, **opts) * self.scale_std  # (N, C, *)
        return s, m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        s, m = self.sample(x)
        return torch.addcmul(m, s, x)  # (N, C, *): s·a + m


class NoisyBatchNorm(BatchNorm):
    """bnlab's `BatchNorm` followed by `DistributionNoise` in training mode (Santurkar's "noisy BN").

    Same parameters, buffers and state_dict keys as `BatchNorm` (the noise has no state besides its generator).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, ghost_batch_size: int | None = None, mean_range: float = 0.5,
                 scale_low: float = 1.0, scale_high: float = 1.25, mean_jitter: float = 0.1, scale_std: float = 0.1,
                 generator: torch.Generator | None = None, seed: int | None = None, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, ghost_batch_size=ghost_batch_size, device=device,
                         dtype=dtype)
        noise = DistributionNoise(num_features, mean_range=mean_range, scale_low=scale_low, scale_high=scale_high,
                                  mean_jitter=mean_jitter, scale_std=scale_std, generator=generator, seed=seed)
        self.noise = noise  # no parameters or buffers: state_dict keys stay those of a plain BN layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (N, C, *)
        if not self.training:  # this layer's mode decides (probes may set `.training` directly)
            return y
        s, m = self.noise.sample(y)
        return torch.addcmul(m, s, y)  # (N, C, *): s·a + m
