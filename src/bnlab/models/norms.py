"""How the built-in models place a normalisation layer (`bnlab.layers.factory.make_norm`) after a linear map.

A layer whose normalisation subtracts a per-feature mean over the batch (the norm table's ``cancels_bias``: BN and
its variants, Santurkar's Lp normalisations) cancels any bias of the linear map before it, so that map is built
without one (Ioffe & Szegedy 2015, Sec. 3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from bnlab.layers.factory import make_norm, norm_kind


def wants_bias(norm: str) -> bool:
    """Whether the linear map before a `norm` layer should carry a bias (False when the norm cancels it: the
    table's ``cancels_bias`` flag)."""
    return not norm_kind(norm).cancels_bias


def norm_layer(norm: str, num_features: int, dims: int, norm_kwargs: Mapping[str, Any] | None) -> nn.Module:
    """`make_norm(norm, num_features, dims, **norm_kwargs)`; unknown kinds raise BnlabError listing the table."""
    return make_norm(norm, num_features, dims=dims, **dict(norm_kwargs or {}))


__all__ = ["norm_layer", "wants_bias"]
