"""Train one regularisation variant on a small training subset and measure how much it overfits (C12).

Variants: no BN, BN, Dropout, BN + Dropout, BN on ghost batches, and BN normalised by a reference batch (the whole
training subset, differentiated through: `bnlab.layers.reference`), the control without batch noise. After
training every BN variant is evaluated with precise population statistics (Ioffe & Szegedy Alg. 2,
`bnlab.layers.precise`): over the training subset in mini-batches of the training batch size, as the training
network normalised them (ghost chunks included); the reference variant in one batch of the reference, which is
what its training network normalised with. Running averages from tiny ghost batches are never used.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bnlab.data import load_dataset
from bnlab.layers.precise import precise_statistics
from bnlab.layers.reference import ReferenceBatchModel
from bnlab.models import build_model
from bnlab.state import batchnorm_layers
from bnlab.train import TrainConfig, train
from bnlab.train.metrics import loss_and_accuracy


def regularisation_run(*, dataset: str, model: str, activation: str, train_size: int, norm: str,
                       norm_kwargs: dict[str, Any], dropout: float, reference_batch: bool, steps: int,
                       batch_size: int, lr: float, momentum: float, seed: int) -> dict:
    """Trial: train one variant on the training subset; final train / test accuracy and loss (precise BN
    statistics), and the train-test gaps."""
    data = load_dataset(dataset, train_size=train_size)
    config = TrainConfig(model=model, norm=norm, norm_kwargs=dict(norm_kwargs), dataset=dataset,
                         dataset_kwargs={"train_size": train_size},
                         model_kwargs={"activation": activation, "dropout": dropout}, steps=steps,
                         batch_size=batch_size, lr=lr, momentum=momentum, eval_every=0, eval_train_size=train_size,
                         seed=seed, progress=False, device="auto")
    torch.manual_seed(seed)
    net: nn.Module = build_model(model, norm=norm, norm_kwargs=dict(norm_kwargs), in_shape=data.in_shape,
                                 num_classes=data.num_classes, activation=activation, dropout=dropout)
    wrapped = ReferenceBatchModel(net, data.train_x) if reference_batch else net
    result = train(config, model=wrapped, dataset=data)
    diverged = result.diverged_at_step is not None
    trained = result.model.model if reference_batch else result.model
    if reference_batch:
        result.model.close()
    device = next(trained.parameters()).device
    on = data.to(device)
    finite = all(bool(torch.isfinite(p).all()) for p in trained.parameters())
    if batchnorm_layers(trained) and finite:
        batches = [on.train_x] if reference_batch else list(torch.split(on.train_x, batch_size))
        precise_statistics(trained, batches)
    loss_fn = nn.functional.cross_entropy
    train_loss, train_acc = loss_and_accuracy(trained, on.train_x, on.train_y, loss_fn)
    test_loss, test_acc = loss_and_accuracy(trained, on.test_x, on.test_y, loss_fn)
    ok = not diverged and finite
    return {
        "diverged": not ok,
        "train_acc": train_acc if ok else math.nan,
        "test_acc": test_acc if ok else math.nan,
        "gap": train_acc - test_acc if ok else math.nan,
        "train_loss": train_loss if ok else math.nan,
        "test_loss": test_loss if ok else math.nan,
        "loss_gap": test_loss - train_loss if ok else math.nan,
        "n_test": len(data.test_y),
    }
