"""Pre-activation statistics over training (Ioffe & Szegedy 2015, Fig. 1; Santurkar et al. 2018, Fig. 2).

For every watched module, bnlab records on one batch the values that flow *into* it (``capture="input"``, the
pre-activation when the module is a nonlinearity such as ``nn.Sigmoid``) or *out of* it (``capture="output"``, for
nets that call activation functions functionally), and reports

    mean, std                      over all elements
    unit_percentiles[u][j]         the percentiles[j]-th percentile of unit u over the batch (and spatial
                                   positions for (N, C, *) tensors): Ioffe Fig. 1(b, c) plots the 15/50/85th
    unit_mean[u], unit_std[u]      the same unit's mean and (biased) std, for drift between probe times
    near_linear_fraction           fraction of elements with |x| < band (band 1 by default): the share of sigmoid
                                   inputs in the near-linear regime (C02: BN without γ, β pushes them there)

Percentiles use linear interpolation between order statistics (numpy's default "linear" method).

`near_linear_fraction` and `sigmoid_input_fractions` are the small public helpers C02 imports.

Side effects: none. The forward hooks are removed on exit and the model's parameters, buffers (running
statistics), ``.grad``, modes and the global RNG are restored (`bnlab.state.preserved_state`). With
``bn_mode="train"`` or ``"eval"`` the probe evaluates in that explicit BN mode with every other module in eval mode;
with ``bn_mode="as_is"`` it evaluates the model in its current modes (a training-mode noise layer draws its noise;
the running statistics it moves are put back afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.state import BN_MODES, preserved_state
from bnlab.state import bn_mode as bn_mode_context

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Hardtanh, nn.ReLU6,
    nn.Mish, nn.SELU, nn.CELU, nn.PReLU,
)
CAPTURES: tuple[str, ...] = ("input", "output")
ACTIVATION_BN_MODES: tuple[str, ...] = (*BN_MODES, "as_is")


@dataclass(frozen=True)
class ActivationStats:
    module: str
    mean: float
    std: float
    near_linear_fraction: float
    units: list[int]
    percentiles: list[float]
    unit_percentiles: list[list[float]]  # (U, P)
    unit_mean: list[float]  # (U,)
    unit_std: list[float]  # (U,)
    numel: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def near_linear_fraction(values: torch.Tensor, band: float = 1.0) -> float:
    """Fraction of entries with |x| < band (sigmoid's near-linear regime for band = 1)."""
    if values.numel() == 0:
        raise BnlabError("near_linear_fraction of an empty tensor")
    return float((values.detach().abs() < band).double().mean())


def activation_modules(model: nn.Module) -> list[str]:
    """Names of the nonlinearity modules of `model` (their inputs are the pre-activations)."""
    return [name for name, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]


def sigmoid_modules(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Sigmoid)]


def unit_values(x: torch.Tensor, unit: int) -> torch.Tensor:
    """All values of unit (channel) `unit` of x (N, C, *) -> (N·∏*,); for (N,) a single unit 0."""
    if x.dim() == 1:
        if unit != 0:
            raise BnlabError(f"unit {unit} out of range for a 1-D activation")
        return x
    if not 0 <= unit < x.shape[1]:
        raise BnlabError(f"unit {unit} out of range for {x.shape[1]} units")
    return x.select(1, unit).reshape(-1)  # (N, C, *) -> (N·∏*,)


def summarize_values(module: str, x: torch.Tensor, units: Sequence[int], percentiles: Sequence[float],
                     band: float) -> ActivationStats:
    """`ActivationStats` of one captured tensor (computed in float64)."""
    x = x.detach().double()
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=torch.float64, device=x.device)  # (P,)
    per_unit = [unit_values(x, u) for u in units]  # U × (M,)
    return ActivationStats(
        module=module,
        mean=float(x.mean()),
        std=float(x.std(correction=0)),
        near_linear_fraction=near_linear_fraction(x, band),
        units=list(units),
        percentiles=[float(p) for p in percentiles],
        unit_percentiles=[[float(v) for v in torch.quantile(v_u, q)] for v_u in per_unit],
        unit_mean=[float(v_u.mean()) for v_u in per_unit],
        unit_std=[float(v_u.std(correction=0)) for v_u in per_unit],
        numel=x.numel(),
    )


def _check(percentiles: Sequence[float], band: float, capture: str, bn_mode: str) -> None:
    if not percentiles or not all(0 <= p <= 100 for p in percentiles):
        raise BnlabError(f"percentiles must be in [0, 100], got {list(percentiles)}")
    if not band > 0:
        raise BnlabError(f"band must be positive, got {band}")
    if capture not in CAPTURES:
        raise BnlabError(f"capture must be one of {', '.join(CAPTURES)}, got {capture!r}")
    if bn_mode not in ACTIVATION_BN_MODES:
        raise BnlabError(f"bn_mode must be one of {', '.join(ACTIVATION_BN_MODES)}, got {bn_mode!r}")


def capture_activations(model: nn.Module, x: torch.Tensor, modules: Sequence[str], capture: str = "input",
                        bn_mode: str = "train") -> dict[str, torch.Tensor]:
    """One forward pass of `x` returning the detached input (or output) of each named module (the first call of
    a module that runs several times). No state is left behind (see the module doc)."""
    _check([50.0], 1.0, capture, bn_mode)
    named = dict(model.named_modules())
    missing = [m for m in modules if m not in named]
    if missing:
        raise BnlabError(f"no module named {missing[0]!r} in the model")
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module: nn.Module, inputs: tuple, output: Any) -> None:
            if name in captured:
                return
            value = inputs[0] if capture == "input" else output
            if not isinstance(value, torch.Tensor):
                raise BnlabError(f"module {name!r} has no tensor {capture}")
            captured[name] = value.detach()

        return hook

    with preserved_state(model, params=False) as guard, torch.no_grad():
        for name in modules:
            guard.add_hook(named[name].register_forward_hook(hook_for(name)))
        if bn_mode == "as_is":
            model(x)
        else:
            with bn_mode_context(model, bn_mode):
                model(x)
    missed = [m for m in modules if m not in captured]
    if missed:
        raise BnlabError(f"module {missed[0]!r} did not run in the forward pass")
    return captured


def activation_stats(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[str] | None = None,
    *,
    units: Sequence[int] = (0,),
    percentiles: Sequence[float] = (15.0, 50.0, 85.0),
    band: float = 1.0,
    capture: str = "input",
    bn_mode: str = "train",
) -> dict[str, ActivationStats]:
    """Pre-activation statistics of `modules` (default: every nonlinearity module) on inputs `x`; see the module
    doc for the fields. `bn_mode`: ``train`` | ``eval`` | ``as_is``."""
    _check(percentiles, band, capture, bn_mode)
    names = list(modules) if modules is not None else activation_modules(model)
    if not names:
        raise BnlabError("no modules to watch: the model has no nonlinearity modules; pass module names")
    captured = capture_activations(model, x.detach(), names, capture, bn_mode)
    return {name: summarize_values(name, captured[name], units, percentiles, band) for name in names}


def sigmoid_input_fractions(model: nn.Module, x: torch.Tensor, band: float = 1.0,
                            bn_mode: str = "train") -> dict[str, float]:
    """Fraction of the inputs of every ``nn.Sigmoid`` with |x| < band (C02's near-linear share)."""
    names = sigmoid_modules(model)
    if not names:
        raise BnlabError("the model has no nn.Sigmoid modules")
    captured = capture_activations(model, x.detach(), names, "input", bn_mode)
    return {name: near_linear_fraction(captured[name], band) for name in names}


class ActivationProbe:
    """Engine adapter (`bnlab.train` probe protocol): `activation_stats` of `modules` on fixed inputs `inputs`
    (e.g. held-out images, as in Ioffe Fig. 1; moved to the run's device on first use) or, when None, on the step's
    own batch."""

    def __init__(self, every: int, modules: Sequence[str] | None = None, *, inputs: torch.Tensor | None = None,
                 units: Sequence[int] = (0,), percentiles: Sequence[float] = (15.0, 50.0, 85.0), band: float = 1.0,
                 capture: str = "input", bn_mode: str = "train", name: str = "activations") -> None:
        if every < 1:
            raise BnlabError(f"every must be >= 1, got {every}")
        _check(percentiles, band, capture, bn_mode)
        self.every = every
        self.modules = None if modules is None else list(modules)
        self.inputs = inputs
        self.units = list(units)
        self.percentiles = list(percentiles)
        self.band = band
        self.capture = capture
        self.bn_mode = bn_mode
        self.name = name

    def __call__(self, ctx: Any) -> dict[str, Any]:
        x = ctx.batch[0]
        if self.inputs is not None:
            if self.inputs.device != x.device:  # held-out inputs follow the run to its device, once
                self.inputs = self.inputs.to(x.device)
            x = self.inputs
        stats = activation_stats(ctx.model, x, self.modules, units=self.units, percentiles=self.percentiles,
                                 band=self.band, capture=self.capture, bn_mode=self.bn_mode)
        return {"step": int(ctx.step), "modules": {name: s.to_dict() for name, s in stats.items()}}
