"""VGG-style convolutional nets (Simonyan & Zisserman 2015) for small images, as Santurkar et al. used on CIFAR-10.

    x (N, C, H, W) -> features: [Conv3x3(pad 1) -> norm -> ReLU]* with 2x2 max-pools ("M")
                   -> flatten -> dropout -> Linear(num_classes)

Configs list channels and "M" (max-pool) entries; a pool is skipped once the feature map is 1x1, so the same
config works for 28x28 (MNIST), 32x32 (CIFAR-10) and 8x8 (digits). `width` multiplies every channel count
(at least 1). Configs:

* ``vgg11`` / ``vgg13`` / ``vgg16``: the paper's stacks (64 ... 512 channels); Santurkar et al. Fig. 1 uses VGG
  on CIFAR-10 with a single linear classifier.
* ``narrow``: 16-32-64 channels, three pools -- a CPU-sized net for the default audit scale.

Layers in order: ``model.features`` is an ``nn.Sequential`` of ``ConvBlock`` (sub-modules ``conv``, ``norm``,
``act``) and ``nn.MaxPool2d``; ``model.head`` is the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.models.init import glorot_init_
from bnlab.models.mlp import check_dropout
from bnlab.models.norms import norm_layer, wants_bias

VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "narrow": (16, "M", 32, "M", 64, "M"),
}


class ConvBlock(nn.Module):
    """Conv3x3 -> norm -> ReLU; the conv has no bias when the norm cancels it."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, norm_kwargs: Mapping[str, Any] | None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=wants_bias(norm))
        self.norm = norm_layer(norm, out_channels, 2, norm_kwargs)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H, W)
        return self.act(self.norm(self.conv(x)))


class VGG(nn.Module):
    def __init__(self, in_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, norm: str = "none",
                 norm_kwargs: Mapping[str, Any] | None = None, init_scale: float = 1.0, dropout: float = 0.0,
                 config: str = "vgg11", width: float = 1.0) -> None:
        super().__init__()
        dropout = check_dropout(dropout)
        if config not in VGG_CONFIGS:
            raise BnlabError(f"unknown vgg config '{config}' (choose from {', '.join(VGG_CONFIGS)})")
        if not isinstance(width, (int, float)) or width <= 0:
            raise BnlabError(f"vgg width must be > 0, got {width!r}")
        if len(in_shape) != 3:
            raise BnlabError(f"vgg needs image inputs (C, H, W), got in_shape={tuple(in_shape)}")
        channels, height, wide = (int(s) for s in in_shape)
        layers: list[nn.Module] = []
        for item in VGG_CONFIGS[config]:
            if item == "M":
                if min(height, wide) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    height, wide = height // 2, wide // 2
                continue
            out = max(1, round(int(item) * width))
            layers.append(ConvBlock(channels, out, norm, norm_kwargs))
            channels = out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(channels * height * wide, num_classes)
        self.feature_shape = (channels, height, wide)
        glorot_init_(self, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (N, C, H, W) -> (N, C', H', W')
        return self.head(self.dropout(h.flatten(1)))  # (N, C'H'W') -> (N, num_classes)

