"""Weight initialisation shared by the built-in models: Glorot (Xavier) uniform times `init_scale`.

Glorot & Bengio (2010), eq. 16: W ~ U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), which keeps the variance of
activations and of back-propagated gradients roughly constant through a linear (or tanh/sigmoid near 0) layer.
`init_scale` multiplies every weight after that draw (C10 sweeps it over decades); biases start at zero and the
normalisation layers keep their own defaults (gamma = 1, beta = 0).

Side effect: draws from the global torch RNG, so seed before building a model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnlab.errors import BnlabError


def check_init_scale(init_scale: float) -> float:
    if not isinstance(init_scale, (int, float)) or not math.isfinite(init_scale) or init_scale <= 0:
        raise BnlabError(f"init_scale must be a finite number > 0, got {init_scale!r}")
    return float(init_scale)


@torch.no_grad()
def glorot_init_(model: nn.Module, init_scale: float = 1.0) -> nn.Module:
    """Glorot-uniform weights times `init_scale` and zero biases for every Linear / Conv layer of `model`."""
    scale = check_init_scale(init_scale)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(module.weight)
            module.weight.mul_(scale)
            if module.bias is not None:
                module.bias.zero_()
    return model
