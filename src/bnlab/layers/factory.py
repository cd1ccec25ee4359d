"""Normalisation layers from a string, so "BN vs no BN" is a config value (after timm's `create_norm`).

`make_norm(kind, num_features, **kw)` returns a module for (N, C) or (N, C, *) inputs:

=========  ===================================================================================
kind       layer
=========  ===================================================================================
bn         bnlab's from-scratch BatchNorm (analytic backward), `bnlab.layers.batchnorm`
torch_bn   torch's native BatchNorm1d/2d/3d chosen by `dims` (number of spatial dims, default 0)
none       identity
noisy_bn   BN followed by Santurkar's time-varying noise, `bnlab.layers.noisy`
noise      the same noise on a net without BN (Santurkar Fig. 2 control)
l1/l2/linf Santurkar's Lp normalisations (centre, divide by the mean Lp norm), `bnlab.layers.lp`
layer      LayerNorm over every dim but the batch (GroupNorm with one group: works for (N, C, *))
group      GroupNorm (`num_groups`, default 8 or the largest divisor of C below it)
=========  ===================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from bnlab.errors import BnlabError

NORM_KINDS: tuple[str, ...] = ("bn", "torch_bn", "none", "noisy_bn", "noise", "l1", "l2", "linf", "layer", "group")


def _torch_bn(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    classes = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
    if dims not in classes:
        raise BnlabError(f"torch_bn supports 0-3 spatial dims, got dims={dims}")
    return classes[dims](num_features, **kw)


def _bn(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    from bnlab.layers.batchnorm import BatchNorm

    return BatchNorm(num_features, **kw)


def _noisy_bn(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    from bnlab.layers.noisy import NoisyBatchNorm

    return NoisyBatchNorm(num_features, **kw)


def _noise(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    from bnlab.layers.noisy import DistributionNoise

    return DistributionNoise(num_features, **kw)


def _lp(p: float) -> Callable[..., nn.Module]:
    def build(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
        from bnlab.layers.lp import LpNorm

        return LpNorm(num_features, p=p, **kw)

    return build


def _group_count(num_features: int, wanted: int) -> int:
    return max(g for g in range(1, min(wanted, num_features) + 1) if num_features % g == 0)


def _layer(num_features: int, dims: int = 0, eps: float = 1e-5, affine: bool = True, **kw: Any) -> nn.Module:
    if kw:
        raise BnlabError(f"norm 'layer' got unexpected options: {', '.join(sorted(kw))}")
    return nn.GroupNorm(1, num_features, eps=eps, affine=affine)


def _group(num_features: int, dims: int = 0, num_groups: int = 8, eps: float = 1e-5, affine: bool = True,
           **kw: Any) -> nn.Module:
    if kw:
        raise BnlabError(f"norm 'group' got unexpected options: {', '.join(sorted(kw))}")
    return nn.GroupNorm(_group_count(num_features, num_groups), num_features, eps=eps, affine=affine)


def _none(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    return nn.Identity()


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "bn": _bn,
    "torch_bn": _torch_bn,
    "none": _none,
    "noisy_bn": _noisy_bn,
    "noise": _noise,
    "l1": _lp(1),
    "l2": _lp(2),
    "linf": _lp(float("inf")),
    "layer": _layer,
    "group": _group,
}


def make_norm(kind: str, num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    """A normalisation layer of `kind` for `num_features` channels; `dims` = number of spatial dims."""
    if kind not in _BUILDERS:
        raise BnlabError(f"unknown norm '{kind}' (choose from {', '.join(NORM_KINDS)})")
    return _BUILDERS[kind](num_features, dims=dims, **kw)


def is_normalising(kind: str) -> bool:
    """True for kinds that normalise activations by batch (or other) statistics."""
    return kind not in ("none", "noise")
