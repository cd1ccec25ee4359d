"""Reference-batch normalisation: BN without batch noise, with the gradient through its statistics kept.

The noise-free control of C12 (BN regularises "through the noise of mini-batch statistics"). In training, every
BN layer of the wrapped model normalises the mini-batch with the statistics of a fixed *reference batch* R of
examples, computed at the current weights and differentiated through (Salimans et al. 2016, "virtual batch
normalization", with the mini-batch left out of its own statistics):

    μ_R = mean over R of x,   σ²_R = biased variance over R of x,   y = γ (x − μ_R) / √(σ²_R + ε) + β

for each channel (statistics over every dim but 1, as BN). The reference examples travel through the net with the
mini-batch (one forward of the concatenation [R; B]) so that every layer's statistics are those of the reference's
own activations at that layer. Given the weights, the normalisation of an example no longer depends on which other
examples share its mini-batch: the batch noise is gone. Unlike normalising with frozen population statistics (eval
mode during training), the loss still depends on the weights *through* μ_R and σ_R, so the gradient keeps BN's
projection (C08) and BN's scale invariance holds.

Cost: each training forward and backward runs |R| + |B| examples. In eval mode the wrapped model runs alone with
its running statistics (set them with `bnlab.layers.precise.precise_statistics`). Side effects: while training,
the BN layers' own forward still runs on [R; B] and moves their running statistics (overwritten by precise
statistics before any evaluation that matters); the forward hooks are removed by `close()`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.state import batchnorm_layers


def reference_normalise(x: torch.Tensor, rows: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                        eps: float) -> torch.Tensor:
    """Normalise all of x (N, C, *) by the per-channel mean and biased variance of its first `rows` samples,
    with ordinary differentiable ops (autograd flows through the statistics)."""
    ref = x[:rows]  # (R, C, *)
    dims = [0, *range(2, x.dim())]
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    mean = ref.mean(dim=dims, keepdim=True)  # (R, C, *) -> (1, C, 1...)
    var = ((ref - mean) ** 2).mean(dim=dims, keepdim=True)  # biased, as Alg. 1
    y = (x - mean) / torch.sqrt(var + eps)  # (N, C, *)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    return y


class ReferenceBatchModel(nn.Module):
    """Wrap `model` so that in training every BN layer normalises with the statistics of `reference` (R, *in_shape).

    Works with bnlab's and torch's BN layers (anything `bnlab.state.batchnorm_layers` finds); ghost batches are not
    combined with it. ``model(x)`` in training returns the outputs of x only, (N, k).
    """

    def __init__(self, model: nn.Module, reference: torch.Tensor) -> None:
        super().__init__()
        layers = [m for _, m in batchnorm_layers(model)]
        if not layers:
            raise BnlabError("reference-batch normalisation: the model has no BN layer")
        if not torch.is_tensor(reference) or reference.dim() < 2 or len(reference) < 2:
            raise BnlabError("the reference batch must be a tensor of at least 2 examples")
        if any(getattr(m, "ghost_batch_size", None) for m in layers):
            raise BnlabError("reference-batch normalisation does not combine with ghost batches")
        self.model = model
        self.register_buffer("reference", reference, persistent=False)
        self._rows: int | None = None  # set only inside a training forward
        self._hooks = [m.register_forward_hook(self._normalise) for m in layers]

    def _normalise(self, module: nn.Module, args: tuple, output: Any) -> torch.Tensor | None:
        if self._rows is None or not module.training:
            return None  # eval mode, or a forward that did not come through this wrapper: BN's own output
        return reference_normalise(args[0], self._rows, module.weight, module.bias, module.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.model(x)
        rows = len(self.reference)
        self._rows = rows
        try:
            out = self.model(torch.cat([self.reference.to(x.dtype), x]))  # (R + N, *) -> (R + N, k)
        finally:
            self._rows = None
        return out[rows:]  # (N, k)

    def close(self) -> None:
        """Remove the hooks from the wrapped model's BN layers (it is then a plain BN model again)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
