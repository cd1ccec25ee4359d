"""Evaluation: mean loss and accuracy of a model over a whole tensor set, in eval mode, without gradients.

Sums are accumulated on the device and read back once (one sync per evaluation). BN uses its running
statistics (eval mode); the model's previous train/eval mode is restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int = 2000,
             classification: bool = True) -> tuple[float, float]:
    """(mean loss, accuracy) over (x, y); accuracy is NaN when not `classification`. `loss_fn` is a mean."""
    was_training = model.training
    model.eval()
    try:
        loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
        correct = torch.zeros((), device=x.device, dtype=torch.int64)
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]  # (b, ...), (b,)
            out = model(xb)  # (b, k)
            loss_sum += loss_fn(out, yb).double() * len(xb)
            if classification:
                correct += (out.argmax(dim=1) == yb).sum()
        loss, hits = torch.stack([loss_sum.double(), correct.double()]).tolist()
    finally:
        model.train(was_training)
    n = max(len(x), 1)
    return loss / n, (hits / n if classification else math.nan)
