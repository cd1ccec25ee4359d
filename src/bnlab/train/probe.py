"""The one hook through which probes watch a run.

A probe is any object with ``name: str``, ``every: int`` and ``__call__(ctx: ProbeContext) -> dict``. The engine
calls it at step 0 and at every step divisible by `every`, with the model at the weights of that step (after
`step` updates) and the batch that step will train on, BEFORE the step's forward pass and optimizer update. The
returned dict (plain, JSON-able data) is stored with ``"step"`` added in `TrainResult.probes[name]`.

The engine saves the global RNG state around the call and puts the model back in training mode afterwards, so a
probe that draws random numbers or switches modes does not change the run; probes must restore anything else
they touch (`bnlab.state.preserved_state`). After a resume, probes are called again from the checkpointed
step, so keep them stateless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from bnlab.data.dataset import Dataset
    from bnlab.train.config import TrainConfig


class Probe(Protocol):
    name: str
    every: int

    def __call__(self, ctx: ProbeContext) -> dict[str, Any]: ...


@dataclass
class ProbeContext:
    step: int  # number of optimizer updates done so far
    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> scalar mean loss
    batch: tuple[torch.Tensor, torch.Tensor]  # (x, y) this step trains on, on the run's device
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    dataset: Dataset | None = None
    device: torch.device | None = None
