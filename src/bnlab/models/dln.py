"""Santurkar et al.'s deep linear network (2018, Sec. 2.2 and App. A): 25 linear 10x10 layers, norm between.

    x (N, 10) -> 24 x [Linear(10, 10) -> norm] -> Linear(10, out)

With `norm="none"` the network is the product of 25 matrices (a linear map with a highly non-convex loss in the
weights); with BN a normalisation follows every layer but the last. Layers in order: ``model.blocks[i]``
(sub-modules ``linear``, ``norm``), then ``model.head``. Trained with MSE on `dln_regression` (y = A x).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.models.init import glorot_init_
from bnlab.models.mlp import DenseBlock


class DeepLinearNet(nn.Module):
    def __init__(self, in_shape: Sequence[int] = (10,), num_classes: int = 10, norm: str = "none",
                 norm_kwargs: Mapping[str, Any] | None = None, init_scale: float = 1.0, depth: int = 25,
                 width: int = 10) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 2:
            raise BnlabError(f"dln depth must be an integer >= 2, got {depth!r}")
        widths = [math.prod(in_shape)] + [width] * (depth - 1)
        self.blocks = nn.ModuleList(
            DenseBlock(widths[i], widths[i + 1], norm, norm_kwargs, "linear") for i in range(depth - 1)
        )
        self.head = nn.Linear(widths[-1], num_classes)
        glorot_init_(self, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (N, 10)
        for block in self.blocks:
            h = block(h)  # (N, 10)
        return self.head(h)  # (N, out)
