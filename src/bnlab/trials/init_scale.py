"""Trial function of C10 (insensitivity to initialisation): train a net whose initial weights are multiplied by a
scale -- in the hidden layers only, or in the output layer only, so the two effects are measured apart.

With BN, every hidden linear map feeds a normalisation and is scale invariant; the output layer is not (a huge
scale there gives huge logits whatever BN does). Rescaling all layers at once, as the first version did, mixes the
two. Plain data in, plain data out; no claim prose is imported here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnlab.data import load_dataset
from bnlab.errors import BnlabError
from bnlab.models import build_model, layers_in_order
from bnlab.train import TrainConfig, train

WHERE: tuple[str, ...] = ("hidden", "output")


@torch.no_grad()
def scale_initial_weights(model: nn.Module, scale: float, where: str) -> list[str]:
    """Multiply the weights of the hidden weight layers (all but the last) or of the output layer (the last) by
    `scale`; returns the names of the layers scaled."""
    if where not in WHERE:
        raise BnlabError(f"where must be one of {', '.join(WHERE)}, got {where!r}")
    layers = layers_in_order(model)  # (name, module) of the weight layers in forward order
    chosen = layers[:-1] if where == "hidden" else layers[-1:]
    for _, module in chosen:
        module.weight.mul_(scale)
    return [name for name, _ in chosen]


def init_scale_run(*, dataset: str, model: str, norm: str, init_scale: float, where: str, steps: int,
                   batch_size: int, lr: float, momentum: float, seed: int) -> dict:
    """Trial: train `model` with the `where` layers' initial weights × `init_scale`; final accuracies and losses."""
    data = load_dataset(dataset)
    config = TrainConfig(model=model, norm=norm, dataset=dataset, steps=steps, batch_size=batch_size, lr=lr,
                         momentum=momentum, eval_every=0, seed=seed, progress=False, device="auto")
    torch.manual_seed(seed)
    net = build_model(model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes)
    scaled = scale_initial_weights(net, init_scale, where)
    result = train(config, model=net, dataset=data)
    losses = result.history["train_loss"]
    return {
        "diverged": result.diverged_at_step is not None,
        "test_acc": float(result.final.get("test_acc", math.nan)),
        "train_acc": float(result.final.get("train_acc", math.nan)),
        "initial_loss": float(losses[0]) if losses else math.nan,
        "chance": 1.0 / data.num_classes,
        "scaled_layers": scaled,
    }
