"""The one place where probes save and restore what they touch.

A probe must leave a model exactly as it found it: parameters, buffers (BN running statistics and
`num_batches_tracked`), `.grad`, `requires_grad`, train/eval mode of every module, BN `momentum` and
`track_running_stats`, forward/backward hooks it registered, and the global RNG streams. `preserved_state` snapshots
all of these on entry and puts them back on exit (also when the probe raises).

`bn_mode(model, mode)` puts every BN layer in the mode a probe asks for, explicitly:

* ``"train"`` -- normalise with the statistics of the batch being evaluated (the papers' choice for
  along-gradient, Hessian and landscape probes) **without** updating the running statistics: the layer runs in
  training mode with ``track_running_stats=False``, which makes both torch's and bnlab's BN skip the buffer update.
* ``"eval"`` -- normalise with the stored running statistics.

Every other module (Dropout in particular) is put in eval mode, so a probe evaluates a deterministic function.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

BNMode = Literal["train", "eval"]
BN_MODES: tuple[str, ...] = ("train", "eval")


def is_batchnorm(module: nn.Module) -> bool:
    """torch's BatchNorm{1,2,3}d / SyncBatchNorm and bnlab's BN layers (which set ``is_batchnorm = True``)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or bool(getattr(module, "is_batchnorm", False))


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if is_batchnorm(m)]


@dataclass
class _Snapshot:
    params: dict[str, torch.Tensor] | None
    buffers: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    requires_grad: dict[str, bool]
    modes: dict[str, bool]
    bn_settings: dict[str, tuple[float | None, bool]]
    rng: tuple | None
    hooks: list = field(default_factory=list)


class StateGuard:
    """Handed out by `preserved_state`; hooks registered through `add_hook` are removed on exit."""

    def __init__(self, snapshot: _Snapshot) -> None:
        self._snapshot = snapshot

    def add_hook(self, handle: torch.utils.hooks.RemovableHandle) -> torch.utils.hooks.RemovableHandle:
        self._snapshot.hooks.append(handle)
        return handle


def _rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda, random.getstate(), np.random.get_state()


def _set_rng_state(state: tuple) -> None:
    cpu, cuda, py, npy = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(py)
    np.random.set_state(npy)


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, params: bool = True, rng: bool = True) -> Iterator[StateGuard]:
    """Snapshot `model` (and the global RNG) and restore it on exit, whatever happens inside.

    `params=False` skips the copy of parameter values for probes that never write them (they go through
    `torch.func.functional_call`); everything else is always restored. Restoring writes in place
    (``tensor.copy_``) so references held by optimizers stay valid.
    """
    named_params = dict(model.named_parameters())
    snap = _Snapshot(
        params={k: p.detach().clone() for k, p in named_params.items()} if params else None,
        buffers={k: b.detach().clone() for k, b in model.named_buffers()},
        grads={k: (None if p.grad is None else p.grad.detach().clone()) for k, p in named_params.items()},
        requires_grad={k: p.requires_grad for k, p in named_params.items()},
        modes={k: m.training for k, m in model.named_modules()},
        bn_settings={k: (m.momentum, m.track_running_stats) for k, m in batchnorm_layers(model)},
        rng=_rng_state() if rng else None,
    )
    try:
        yield StateGuard(snap)
    finally:
        for handle in snap.hooks:
            handle.remove()
        modules = dict(model.named_modules())
        for name, training in snap.modes.items():
            modules[name].training = training
        for name, (momentum, track) in snap.bn_settings.items():
            modules[name].momentum = momentum
            modules[name].track_running_stats = track
        with torch.no_grad():
            if snap.params is not None:
                for name, value in snap.params.items():
                    named_params[name].copy_(value)
            for name, buf in model.named_buffers():
                if name in snap.buffers:
                    buf.copy_(snap.buffers[name])
        for name, p in named_params.items():
            p.requires_grad_(snap.requires_grad[name])
            old = snap.grads[name]
            if old is None:
                p.grad = None
            elif p.grad is not None and p.grad.shape == old.shape:
                p.grad.copy_(old)
            else:
                p.grad = old
        if snap.rng is not None:
            _set_rng_state(snap.rng)


@contextlib.contextmanager
def bn_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Put BN layers in `mode` ("train": batch statistics, running statistics untouched; "eval": running
    statistics) and every other module in eval mode; restore everything on exit."""
    if mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {mode!r}")
    with preserved_state(model, params=False, rng=False):
        model.eval()
        if mode == "train":
            for _, m in batchnorm_layers(model):
                m.train()
                m.track_running_stats = False  # batch statistics, and no running-stat update
        yield model
