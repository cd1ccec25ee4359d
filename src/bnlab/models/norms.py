"""How the built-in models place a normalisation layer (`bnlab.layers.factory.make_norm`) after a linear map.

A layer whose normalisation subtracts a per-feature mean over the batch (BN and its variants, Santurkar's Lp
normalisations) cancels any bias of the linear map before it, so that map is built without one (Ioffe & Szegedy
2015, Sec. 3.2: "the bias b can be ignored since its effect will be canceled by the subsequent mean subtraction").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from bnlab.layers.factory import NORM_KINDS, make_norm

# kinds that subtract a per-feature batch mean, making a preceding bias redundant
BIAS_CANCELLING: frozenset[str] = frozenset({"bn", "torch_bn", "noisy_bn", "l1", "l2", "linf"})


def wants_bias(norm: str) -> bool:
    """Whether the linear map before a `norm` layer should carry a bias (False when the norm cancels it)."""
    return norm not in BIAS_CANCELLING


def norm_layer(norm: str, num_features: int, dims: int, norm_kwargs: Mapping[str, Any] | None) -> nn.Module:
    """`make_norm(norm, num_features, dims, **norm_kwargs)`; unknown kinds raise BnlabError listing NORM_KINDS."""
    return make_norm(norm, num_features, dims=dims, **dict(norm_kwargs or {}))


__all__ = ["BIAS_CANCELLING", "NORM_KINDS", "norm_layer", "wants_bias"]
