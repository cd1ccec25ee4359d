"""A plain or residual MLP of any depth and width (gradient-flow experiments, Yang et al. 2019).

    x -> flatten -> Linear(width) [input projection, no norm]
      -> depth x block -> Linear(num_classes)

    plain block:     h <- act(norm(W h))
    residual block:  h <- h + s · act(norm(W h))      (s = `branch_scale`, default 1; 1/√depth keeps the
                                                      variance of h bounded at any depth without a norm)

`activation` is relu | tanh | linear | sigmoid. Layers in order: ``model.stem``, ``model.blocks[i]`` (sub-modules
``linear``, ``norm``, ``act``), ``model.head``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.models.init import glorot_init_
from bnlab.models.mlp import DenseBlock, check_dropout


class DeepMLP(nn.Module):
    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, norm: str = "none",
                 norm_kwargs: Mapping[str, Any] | None = None, init_scale: float = 1.0, dropout: float = 0.0,
                 depth: int = 10, width: int = 64, activation: str = "relu", residual: bool = False,
                 branch_scale: float = 1.0) -> None:
        super().__init__()
        dropout = check_dropout(dropout)
        if not isinstance(depth, int) or depth < 1:
            raise BnlabError(f"deep_mlp depth must be an integer >= 1, got {depth!r}")
        if not isinstance(width, int) or width < 1:
            raise BnlabError(f"deep_mlp width must be an integer >= 1, got {width!r}")
        if not isinstance(branch_scale, (int, float)) or not math.isfinite(branch_scale) or branch_scale <= 0:
            raise BnlabError(f"deep_mlp branch_scale must be a finite number > 0, got {branch_scale!r}")
        self.residual = bool(residual)
        self.branch_scale = float(branch_scale)
        self.stem = nn.Linear(math.prod(in_shape), width)
        self.blocks = nn.ModuleList(
            DenseBlock(width, width, norm, norm_kwargs, activation, dropout) for _ in range(depth)
        )
        self.head = nn.Linear(width, num_classes)
        glorot_init_(self, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x.flatten(1))  # (N, D) -> (N, width)
        for block in self.blocks:
            h = h + self.branch_scale * block(h) if self.residual else block(h)  # (N, width)
        return self.head(h)  # (N, num_classes)
