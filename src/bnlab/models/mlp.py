"""Ioffe & Szegedy's MNIST network (2015, Sec. 4.1): 3 fully connected hidden layers of 100 sigmoid units.

    x (N, *in_shape) -> flatten (N, D) -> 3 x [Linear(100) -> norm -> sigmoid -> dropout] -> Linear(num_classes)

BN (or any `norm`) sits before the nonlinearity, as in the paper ("we add BN to each hidden layer ... before the
nonlinearity"), and the Linear before a mean-cancelling norm has no bias. Layers in order: ``model.blocks[i]`` is
hidden block i, with sub-modules ``linear``, ``norm``, ``act``; ``model.head`` is the output layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.models.init import glorot_init_
from bnlab.models.norms import norm_layer, wants_bias

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise BnlabError(f"unknown activation '{name}' (choose from {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]()


class DenseBlock(nn.Module):
    """Linear -> norm -> activation -> dropout; the Linear has no bias when the norm cancels it."""

    def __init__(self, in_features: int, out_features: int, norm: str, norm_kwargs: Mapping[str, Any] | None,
                 act: str, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=wants_bias(norm))
        self.norm = norm_layer(norm, out_features, 0, norm_kwargs)
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in) -> (N, out)
        return self.dropout(self.act(self.norm(self.linear(x))))


def check_dropout(dropout: float) -> float:
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise BnlabError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


class IoffeMLP(nn.Module):
    """Ioffe & Szegedy's MNIST MLP; `hidden` defaults to their (100, 100, 100) sigmoid layers."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, norm: str = "none",
                 norm_kwargs: Mapping[str, Any] | None = None, init_scale: float = 1.0, dropout: float = 0.0,
                 hidden: Sequence[int] = (100, 100, 100), activation: str = "sigmoid") -> None:
        super().__init__()
        dropout = check_dropout(dropout)
        if (isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden
                or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)):
            raise BnlabError(f"mlp hidden sizes must be a list of positive integers, got {hidden!r}")
        widths = [math.prod(in_shape), *[int(h) for h in hidden]]
        self.blocks = nn.ModuleList(
            DenseBlock(widths[i], widths[i + 1], norm, norm_kwargs, activation, dropout) for i in range(len(hidden))
        )
        self.head = nn.Linear(widths[-1], num_classes)
        glorot_init_(self, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (N, *in_shape) -> (N, D)
        for block in self.blocks:
            h = block(h)  # (N, 100)
        return self.head(h)  # (N, num_classes)
