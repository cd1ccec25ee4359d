"""Precise population statistics for BN layers (Ioffe & Szegedy 2015, Alg. 2, steps 8-11).

After training, with every parameter frozen, the inference network replaces each BN layer's batch statistics by
population statistics estimated over several training mini-batches B of m values per channel:

    E[x]   = E_B[μ_B]                         (mean of the batch means)
    Var[x] = m/(m − 1) · E_B[σ²_B]            (unbiased: m/(m−1) times the mean of the biased batch variances)

The exponential running averages that BN keeps during training lag behind the weights; these precise statistics do
not (fvcore's `precise_bn.update_bn_stats` is the style reference). The layers' inputs are computed by the
*training* network, i.e. every BN normalises with its batch statistics while the population statistics are
gathered, as in Alg. 2; other modules (Dropout) run in eval mode. When batches have different sizes each batch's
variance gets its own factor m_B/(m_B − 1) before averaging (identical to Alg. 2 for a fixed m).

Side effects: writes `running_mean` and `running_var` of every BN layer that has them (bnlab's and torch's) and
nothing else; train/eval modes, momentum, track_running_stats, num_batches_tracked, gradients and the global RNG
are restored (`bnlab.state`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.state import batchnorm_layers, bn_mode, preserved_state


def _inputs_of(batch: Any) -> Any:
    """A batch may be a tensor or an (inputs, targets, ...) tuple/list; the model gets the inputs."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise BnlabError("precise_statistics got an empty batch")
        return batch[0]
    return batch


class _Accumulator:
    """Float64 running sums of per-channel batch means and unbiased batch variances for one layer."""

    def __init__(self) -> None:
        self.mean_sum: torch.Tensor | None = None
        self.var_sum: torch.Tensor | None = None
        self.batches = 0

    def __call__(self, _module: nn.Module, args: tuple) -> None:
        x = args[0].detach().to(torch.float64)  # (N, C, *)
        dims = (0,) + tuple(range(2, x.dim()))
        m = x.numel() // x.shape[1]
        if m < 2:
            raise BnlabError(f"precise_statistics needs more than 1 value per channel per batch, got input of "
                             f"shape {tuple(x.shape)}")
        var, mean = torch.var_mean(x, dim=dims, correction=0)  # (C,), (C,) biased
        unbiased = var * (m / (m - 1))
        self.mean_sum = mean if self.mean_sum is None else self.mean_sum + mean
        self.var_sum = unbiased if self.var_sum is None else self.var_sum + unbiased
        self.batches += 1


def precise_statistics(model: nn.Module, batches: Iterable[Any], max_batches: int | None = None) -> dict[str, int]:
    """Replace the running statistics of every BN layer in `model` by Ioffe Alg. 2 population statistics.

    `batches`: an iterable of input tensors or (inputs, targets) pairs; `max_batches` caps how many are used (needed
    for an endless iterator such as `bnlab.data.BatchIterator`). Returns {layer name: batches used}.
    """
    if max_batches is not None and max_batches < 1:
        raise BnlabError(f"max_batches must be >= 1, got {max_batches}")
    layers = [(n, m) for n, m in batchnorm_layers(model)
              if getattr(m, "running_mean", None) is not None and getattr(m, "running_var", None) is not None]
    if not layers:
        raise BnlabError("precise_statistics found no BN layer with running statistics in the model")
    accumulators = {name: _Accumulator() for name, _ in layers}
    used = 0
    with preserved_state(model, params=False) as guard, bn_mode(model, "train"), torch.no_grad():
        for name, layer in layers:
            guard.add_hook(layer.register_forward_pre_hook(accumulators[name]))
        for batch in batches:
            if max_batches is not None and used >= max_batches:
                break
            model(_inputs_of(batch))
            used += 1
    if used == 0:
        raise BnlabError("precise_statistics got no batches")
    counts = {}
    with torch.no_grad():  # after the guards: they restore the buffers, these writes must come last
        for name, layer in layers:
            acc = accumulators[name]
            if acc.batches == 0:
                raise BnlabError(f"BN layer '{name}' was not used by the model's forward pass")
            layer.running_mean.copy_((acc.mean_sum / acc.batches).to(layer.running_mean.dtype))
            layer.running_var.copy_((acc.var_sum / acc.batches).to(layer.running_var.dtype))
            counts[name] = acc.batches
    return counts
