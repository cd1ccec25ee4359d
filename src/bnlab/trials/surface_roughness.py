"""Train one net, then measure its 2-D and 1-D loss landscapes in each BN mode and their roughness (C14).

Around the trained net: a 2-D plane on two seeded filter-normalised Gaussian directions (1-D parameters get 0, Li
et al.'s ``biasbn``) over [-radius, radius]² and a 1-D line along a third, of the training loss on a fixed prefix
of the training set, with BN in mode ``train`` (batch statistics of that prefix) and ``eval`` (running
statistics). A no-BN net (no BN layer, no Dropout) is one function in both modes: measured once, used for both.
Roughness (`bnlab.landscape.roughness`): mean |second difference| / h² over the interior grid points within
``rough_radius`` of the centre. Ruggedness (`bnlab.landscape.roughness.quadratic_residual`): sqrt(1 − R²) of the
least-squares quadratic fit to the 2-D surface within ``rough_radius``, the part a smooth bowl does not explain.
A trial function: plain data in, plain data out.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bnlab.data import load_dataset
from bnlab.landscape import random_directions, random_line, random_plane, roughness
from bnlab.landscape.directions import model_origin
from bnlab.landscape.roughness import negative_curvature_fraction, quadratic_residual
from bnlab.models import build_model
from bnlab.state import BN_MODES, batchnorm_layers
from bnlab.train import TrainConfig, train

MODES = BN_MODES  # the BN modes every curvature / landscape number is measured in


def roughness_run(*, dataset: str, model: str, model_config: str, width: float, norm: str, steps: int,
                  batch_size: int, lr: float, momentum: float, eval_samples: int, grid: int, line: int,
                  radius: float, rough_radius: float, direction_seed: int, seed: int) -> dict[str, Any]:
    """Trial: train one net, then its 2-D and 1-D landscapes in each BN mode; returns grids and roughness."""
    data = load_dataset(dataset)
    config = TrainConfig(model=model, norm=norm, dataset=dataset, model_kwargs={"config": model_config,
                                                                                "width": width},
                         steps=steps, batch_size=batch_size, lr=lr, momentum=momentum, eval_every=0,
                         eval_train_size=min(eval_samples, len(data.train_x)), seed=seed, progress=False,
                         device="cpu", trackers=())
    torch.manual_seed(seed)
    net = build_model(model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes,
                      config=model_config, width=width)
    result = train(config, model=net, dataset=data)
    net = result.model
    batch = (data.train_x[:eval_samples], data.train_y[:eval_samples])
    loss_fn = nn.CrossEntropyLoss()
    origin = model_origin(net)
    dirs = random_directions(origin, 3, direction_seed)  # two for the plane, one for the line
    has_bn = bool(batchnorm_layers(net))
    out: dict[str, Any] = {"norm": norm, "diverged": result.diverged_at_step is not None,
                           "final_train_loss": float(result.final.get("train_eval_loss", math.nan)),
                           "final_test_acc": float(result.final.get("test_acc", math.nan)),
                           "modes": {}}
    for mode in MODES if has_bn else MODES[:1]:
        plane = random_plane(net, loss_fn, batch, radius=radius, steps=grid, bn_mode=mode, directions=dirs[:2],
                             seed=direction_seed)
        curve = random_line(net, loss_fn, batch, radius=radius, steps=line, bn_mode=mode, direction=dirs[2],
                            seed=direction_seed)
        out["modes"][mode] = {
            "x": plane.x.tolist(), "y": plane.y.tolist(), "loss": plane.loss.tolist(), "acc": plane.acc.tolist(),
            "t": curve.t.tolist(), "line_loss": curve.loss.tolist(),
            "centre_loss": float(plane.loss[grid // 2, grid // 2]),
            "roughness_2d": roughness(plane.loss, plane.x, plane.y, rough_radius),
            "roughness_1d": roughness(curve.loss, curve.t, None, rough_radius),
            "negative_curvature": negative_curvature_fraction(plane.loss, plane.x, plane.y, rough_radius),
            "ruggedness_2d": quadratic_residual(plane.loss, plane.x, plane.y, rough_radius),
        }
    if not has_bn:  # no BN layer and no Dropout: eval mode is the same function
        out["modes"]["eval"] = out["modes"]["train"]
    return out
