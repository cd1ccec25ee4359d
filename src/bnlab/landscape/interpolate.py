"""The loss along the straight line between two checkpoints (Goodfellow et al. 2015; e.g. init -> final).

``w(t) = start + t (end - start)``: t = 0 is `start`, t = 1 is `end`; the default grid also looks a quarter of the
way beyond both ends. The model supplies the architecture (and, in ``eval`` mode, the running statistics -- which
belong to one end only; ``recalibrated`` re-estimates them at every t and is the fair choice for BN nets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from bnlab.data.batches import Batch, as_batches
from bnlab.errors import BnlabError
from bnlab.landscape.directions import ParamDict, line_direction
from bnlab.landscape.grid import axis
from bnlab.landscape.points import LossFn, data_hash, evaluate_points
from bnlab.landscape.surface import Curve


def parameters_of(model: nn.Module, state: Mapping[str, torch.Tensor]) -> ParamDict:
    """The entries of a state_dict that are `model`'s parameters (buffers dropped), on the model's device."""
    out: ParamDict = {}
    for name, p in model.named_parameters():
        if name not in state:
            raise BnlabError(f"checkpoint has no parameter {name!r}")
        if tuple(state[name].shape) != tuple(p.shape):
            raise BnlabError(f"checkpoint parameter {name!r} has shape {tuple(state[name].shape)}, "
                             f"the model has {tuple(p.shape)}")
        out[name] = state[name].detach().to(device=p.device, dtype=p.dtype).clone()
    return out


def interpolate(model: nn.Module, loss_fn: LossFn, data: Batch | Sequence[Batch], start: Mapping[str, torch.Tensor],
                end: Mapping[str, torch.Tensor], *, lo: float = -0.25, hi: float = 1.25, steps: int = 31,
                bn_mode: str = "train", info: Mapping[str, Any] | None = None, **eval_kwargs: Any) -> Curve:
    """Loss and accuracy at ``start + t (end - start)`` for `steps` values of t in [lo, hi] (t = 0 exactly on the
    grid when ``lo < 0``). `start` / `end`: parameter dicts or state_dicts of `model`'s architecture."""
    a = parameters_of(model, start)
    b = parameters_of(model, end)
    t = axis(lo, hi, steps)
    if not np.any(np.isclose(t, 1.0, rtol=0, atol=1e-9)):
        raise BnlabError(f"the grid [{lo}, {hi}] with {steps} steps misses t = 1 (the end checkpoint)")
    d = line_direction(a, b)
    batches = as_batches(data)
    res = evaluate_points(model, loss_fn, batches, a, [d], t[:, None], bn_mode, **eval_kwargs)
    return Curve(kind="interpolation", t=t, loss=res["loss"], acc=res["acc"], origin=a, directions=[d],
                 bn_mode=bn_mode, seed=None, norm="none", one_d="include", data_hash=data_hash(batches),
                 precision=eval_kwargs.get("precision", "fp32"), info=dict(info or {}))
