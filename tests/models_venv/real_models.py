"""Real models for `bnlab study` (timm and torchvision, never written for bnlab) and a tiny real data set: sklearn's
digits upsampled to 3×32×32. Used as FILE.py:FACTORY specs by tests/models_venv/test_study_real_models.py."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _digits(size: int, train: int, test: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn digits (8×8, 16 grey levels) as 3×size×size images in [-1, 1]: `train` and `test` examples."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    n = train + test
    images = torch.tensor(x[:n], dtype=torch.float32).reshape(-1, 1, 8, 8) / 8.0 - 1.0  # (n, 1, 8, 8)
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    labels = torch.tensor(y[:n], dtype=torch.long)  # (n,)
    return images[:train].contiguous(), labels[:train], images[train:].contiguous(), labels[train:]


def digits32() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """3×32×32 digits, 600 train and 300 test examples (the end-to-end resnet10t study, make test-models-full)."""
    return _digits(32, 600, 300)


def digits16() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """3×16×16 digits, 128 train and 64 test examples: the plumbing tests' tiny input (make test-models)."""
    return _digits(16, 128, 64)


def _timm(name: str) -> torch.nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=10)


def resnet10t() -> torch.nn.Module:
    return _timm("resnet10t")


def mobilenetv2_035() -> torch.nn.Module:
    return _timm("mobilenetv2_035")


def mobilenetv3_small_050() -> torch.nn.Module:
    return _timm("mobilenetv3_small_050")


def tv_resnet18() -> torch.nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=10)


def tv_mobilenet_v2() -> torch.nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None, num_classes=10, width_mult=0.35)
