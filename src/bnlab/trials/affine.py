"""Trial functions of C02 (γ and β restore representational power): BN's identity recovery, and a sigmoid net
trained with BN with or without affine parameters while the fraction of sigmoid inputs in the near-linear band is
recorded. Plain data in, plain data out; no claim prose is imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from bnlab.data import load_dataset
from bnlab.layers import BatchNorm
from bnlab.probes.activations import sigmoid_input_fractions
from bnlab.train import TrainConfig, train


def identity_recovery(*, batch: int, seed: int) -> dict:
    """Trial (a): relative error of BN with γ = √(σ²_B + ε), β = μ_B, for (N, C) and (N, C, H, W) inputs."""
    gen = torch.Generator().manual_seed(seed)
    errors: dict[str, float] = {}
    for dtype in (torch.float64, torch.float32):
        for shape in ((batch, 8), (batch, 4, 3, 3)):
            channels = shape[1]
            spread = (10.0 ** torch.linspace(-3, 3, channels, dtype=torch.float64))  # per-channel std
            offset = torch.randn(channels, generator=gen, dtype=torch.float64) * 10.0
            view = (1, channels) + (1,) * (len(shape) - 2)
            x64 = torch.randn(shape, generator=gen, dtype=torch.float64) * spread.view(view) + offset.view(view)
            x = x64.to(dtype)
            layer = BatchNorm(channels).to(dtype).train()
            dims = (0,) + tuple(range(2, len(shape)))
            var, mean = torch.var_mean(x, dim=dims, correction=0)  # (C,), (C,): batch statistics
            with torch.no_grad():
                layer.weight.copy_(torch.sqrt(var + layer.eps))
                layer.bias.copy_(mean)
                y = layer(x)
            key = f"{str(dtype).replace('torch.', '')}/{'x'.join(map(str, shape))}"
            errors[key] = float(((y - x).abs().max() / x.abs().max()).double())
    return {"relative_error": errors}


class _BandProbe:
    """Fraction of every sigmoid's inputs with |x| < band on fixed inputs, BN with those inputs' statistics."""

    name = "sigmoid_band"

    def __init__(self, every: int, inputs: Any, band: float) -> None:
        self.every, self.inputs, self.band = every, inputs, band

    def __call__(self, ctx: Any) -> dict:
        x = self.inputs.to(next(ctx.model.parameters()).device)
        fractions = sigmoid_input_fractions(ctx.model, x, band=self.band, bn_mode="train")
        return {"fractions": list(fractions.values())}


def affine_run(*, dataset: str, model: str, norm: str, affine: bool, steps: int, batch_size: int, lr: float,
               momentum: float, probe_every: int, probe_examples: int, band: float, seed: int) -> dict:
    """Trial (b, c): train `model` with BN with / without affine parameters; band fraction over training."""
    data = load_dataset(dataset)
    norm_kwargs = {} if affine else {"affine": False}
    config = TrainConfig(model=model, norm=norm, norm_kwargs=norm_kwargs, dataset=dataset, steps=steps,
                         batch_size=batch_size, lr=lr, momentum=momentum, eval_every=0, seed=seed, progress=False,
                         device="auto")
    probe = _BandProbe(probe_every, data.test_x[:probe_examples], band)
    result = train(config, dataset=data, probes=[probe])
    records = result.probes[probe.name]
    final = _BandProbe(1, data.test_x[:probe_examples], band)(_Ctx(result.model))
    steps_seen = [r["step"] for r in records] + [result.final["steps_done"]]
    curves = [r["fractions"] for r in records] + [final["fractions"]]
    return {
        "steps": steps_seen,
        "band_fraction": [sum(f) / len(f) for f in curves],  # mean over the sigmoid layers
        "band_fraction_per_layer_final": final["fractions"],
        "test_acc": float(result.final.get("test_acc", math.nan)),
        "train_acc": float(result.final.get("train_acc", math.nan)),
        "diverged": result.diverged_at_step is not None,
    }


@dataclass
class _Ctx:
    model: Any
