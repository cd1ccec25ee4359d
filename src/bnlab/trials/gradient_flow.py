"""Gradient flow at initialisation and trainability of deep plain and residual nets (C11, `bnlab gradflow`).

`gradient_profile` builds a `deep_mlp`, takes one seeded training batch and measures, per hidden layer, the squared
weight-gradient norm ‖∂L/∂W_l‖², the squared input-gradient norm and the layer Jacobian's mean squared singular
value (`bnlab.probes.gradflow.GradFlowProbe`, BN with batch statistics), plus the fitted per-layer growth factor of
‖∂L/∂W_l‖² towards the input (Yang et al. 2019: π/(π−1) ≈ 1.467 for plain ReLU BN nets). `trainability` trains
such a net and measures the same before and after. Both are trial functions (plain data in, plain data out).
"""

from __future__ import annotations

import math

import torch

from bnlab.data import Dataset, load_dataset
from bnlab.errors import BnlabError
from bnlab.models import build_model
from bnlab.probes.gradflow import YANG_RELU, GradFlowProbe, fit_growth_factor
from bnlab.train import TrainConfig, train

__all__ = ["INITS", "YANG_RELU", "gradient_profile", "reinitialise", "standardised", "trainability"]

INITS: tuple[str, ...] = ("glorot", "he", "orthogonal")


@torch.no_grad()
def reinitialise(model: torch.nn.Module, init: str) -> torch.nn.Module:
    """Re-draw the hidden blocks' weights of a built `deep_mlp` (stem and head keep Glorot): "glorot" leaves them,
    "he" draws N(0, 2/fan_in) (He et al. 2015: keeps a plain ReLU net's signal and gradient variance at any depth),
    "orthogonal" draws a random orthogonal matrix (Saxe et al. 2014; Meterez et al. 2024 with BN and linear
    activations). Draws from the global torch RNG."""
    if init not in INITS:
        raise BnlabError(f"unknown init {init!r} (choose from {', '.join(INITS)})")
    for block in model.blocks:
        if init == "he":
            torch.nn.init.kaiming_normal_(block.linear.weight, nonlinearity="relu")
        elif init == "orthogonal":
            torch.nn.init.orthogonal_(block.linear.weight)
    return model


def standardised(data: Dataset) -> Dataset:
    """The data set with every input feature standardised by the training set's mean and sd (features with sd 0,
    such as MNIST's border pixels, are only centred), so that the first normalised block sees inputs of unit scale
    like every other block."""
    flat = data.train_x.flatten(1).double()  # (N, D)
    mean, sd = flat.mean(0), flat.std(0)  # (D,), (D,)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))

    def scale(x: torch.Tensor) -> torch.Tensor:
        return ((x.flatten(1).double() - mean) / sd).to(x.dtype).reshape(x.shape)

    return Dataset(data.name, scale(data.train_x), data.train_y, scale(data.test_x), data.test_y, data.in_shape,
                   data.num_classes, data.task)

def _gradflow(model, data, batch_size: int, seed: int, probes: int) -> dict:  # noqa: ANN001
    """Gradient-flow record on a fixed, seeded training batch (BN in training mode)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    idx = torch.randperm(len(data.train_x), generator=gen)[:batch_size]
    device = next(model.parameters()).device
    batch = (data.train_x[idx].to(device), data.train_y[idx].to(device))
    probe = GradFlowProbe(bn="train", jacobian_probes=probes, top_k=0, network=False, seed=seed)
    rec = probe.measure(model, torch.nn.functional.cross_entropy, batch)
    return {k: rec[k] for k in ("layers", "weight_grad_sq", "input_grad_sq", "layer_jac_msv", "loss")}


def _growth(sq: list[float]) -> float:
    try:
        return fit_growth_factor(sq)
    except BnlabError:  # zero / non-finite gradients: no geometric rate to fit
        return math.nan


def gradient_profile(*, dataset: str, depth: int, width: int, activation: str, residual: bool, norm: str,
                     batch_size: int, jacobian_probes: int, seed: int, init: str = "glorot",
                     branch_scale: float = 1.0, standardise: bool = False) -> dict:
    """Trial: per-layer ‖∂L/∂W_l‖², activation gradients ‖∂L/∂h_l‖² and layer-Jacobian mean squared singular
    values at initialisation; `init` re-draws the hidden blocks (`reinitialise`), `branch_scale` multiplies each
    residual branch, `standardise` standardises the input features (`standardised`)."""
    if not isinstance(batch_size, int) or batch_size < 2:
        raise BnlabError(f"batch_size must be an integer >= 2, got {batch_size!r}")
    if not isinstance(jacobian_probes, int) or jacobian_probes < 1:
        raise BnlabError(f"jacobian_probes must be an integer >= 1, got {jacobian_probes!r}")
    data = load_dataset(dataset)
    if batch_size > len(data.train_x):
        raise BnlabError(f"batch_size {batch_size} is larger than the training set ({len(data.train_x)})")
    data = standardised(data) if standardise else data
    torch.manual_seed(seed)
    model = build_model("deep_mlp", norm=norm, in_shape=data.in_shape, num_classes=data.num_classes, depth=depth,
                        width=width, activation=activation, residual=residual, branch_scale=branch_scale)
    rec = _gradflow(reinitialise(model, init), data, batch_size, seed, jacobian_probes)
    rec["growth_factor"] = _growth(rec["weight_grad_sq"])
    return rec


def trainability(*, dataset: str, depth: int, width: int, norm: str, residual: bool, steps: int, lr: float,
                 momentum: float, batch_size: int, jacobian_probes: int, seed: int) -> dict:
    """Trial: train a plain/residual ReLU deep_mlp; final accuracies, loss curve, gradient flow before/after."""
    data = load_dataset(dataset)
    config = TrainConfig(model="deep_mlp", norm=norm, dataset=dataset, steps=steps, batch_size=batch_size, lr=lr,
                         momentum=momentum, eval_every=0, seed=seed, progress=False, device="auto",
                         model_kwargs={"depth": depth, "width": width, "activation": "relu", "residual": residual})
    torch.manual_seed(seed)
    model = build_model("deep_mlp", norm=norm, in_shape=data.in_shape, num_classes=data.num_classes, depth=depth,
                        width=width, activation="relu", residual=residual)
    before = _gradflow(model, data, batch_size, seed, jacobian_probes)
    result = train(config, model=model, dataset=data)
    finite = all(math.isfinite(float(p.detach().abs().sum())) for p in result.model.parameters())
    after = _gradflow(result.model, data, batch_size, seed, jacobian_probes) if finite else None
    losses = result.history["train_loss"]
    stride = max(1, len(losses) // 100)
    return {
        "diverged": result.diverged_at_step is not None,
        "train_acc": float(result.final.get("train_acc", math.nan)),
        "test_acc": float(result.final.get("test_acc", math.nan)),
        "loss_steps": list(range(0, len(losses), stride)),
        "train_loss": [float(v) for v in losses[::stride]],
        "jac_msv_init": before["layer_jac_msv"],
        "jac_msv_trained": None if after is None else after["layer_jac_msv"],
        "weight_grad_sq_init": before["weight_grad_sq"],
        "weight_grad_sq_trained": None if after is None else after["weight_grad_sq"],
    }
