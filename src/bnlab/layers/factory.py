"""Normalisation layers from one table, so "BN vs no BN" is a config value (after timm's `create_norm`).

`make_norm(kind, num_features, dims=0, **kw)` returns a module for (N, C) or (N, C, *) inputs. Each row of
`NORMS` is a `NormKind`: its builder and two flags the rest of bnlab reads from here and nowhere else:

* ``batch_dependent`` -- the layer normalises with statistics over the batch: a batch of one is degenerate, and
  probes must say which BN mode (batch or running statistics) they evaluate in;
* ``cancels_bias`` -- the layer subtracts a per-feature mean over the batch, so a bias of the linear map before it
  is redundant (Ioffe & Szegedy 2015, Sec. 3.2: "its effect will be canceled by the subsequent mean subtraction").

=========  =====  =====  ==============================================================================
kind       batch  bias   layer
=========  =====  =====  ==============================================================================
bn         yes    yes    bnlab's from-scratch BatchNorm (analytic backward), `bnlab.layers.batchnorm`
torch_bn   yes    yes    torch's native BatchNorm1d/2d/3d chosen by `dims` (number of spatial dims, default 0)
none       no     no     identity
noisy_bn   yes    yes    BN followed by Santurkar's time-varying noise, `bnlab.layers.noisy`
noise      no     no     the same noise on a net without BN (Santurkar Fig. 2 control)
l1/l2/linf yes    yes    Santurkar's Lp normalisations (centre, divide by the mean Lp norm), `bnlab.layers.lp`
layer      no     no     LayerNorm over every dim but the batch (GroupNorm with one group: works for (N, C, *))
group      no     no     GroupNorm (`num_groups`, default 8 or the largest divisor of C below it)
=========  =====  =====  ==============================================================================

A user's own normalisation plugs in two ways: `make_norm(MyNorm, C, **kw)` with a class or callable
``(num_features, **kw) -> nn.Module`` (its flags from `norm_kind`: a class that sets ``is_batchnorm = True`` counts
as batch-dependent and bias-cancelling), or a named row added with `register_norm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.lp import LpNorm
from bnlab.layers.noisy import DistributionNoise, NoisyBatchNorm

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class NormKind:
    """One row of the norm table: how to build it and what the rest of bnlab must know about it."""

    name: str
    build: Builder  # (num_features, dims=..., **kw) -> nn.Module
    batch_dependent: bool
    cancels_bias: bool


def _torch_bn(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    classes = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
    if dims not in classes:
        raise BnlabError(f"torch_bn supports 0-3 spatial dims, got dims={dims}")
    return classes[dims](num_features, **kw)


def _ignoring_dims(cls: Callable[..., nn.Module], **fixed: Any) -> Builder:
    def build(num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
        return cls(num_features, **fixed, **kw)

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


NORMS: dict[str, NormKind] = {row.name: row for row in (
    NormKind("bn", _ignoring_dims(BatchNorm), batch_dependent=True, cancels_bias=True),
    NormKind("torch_bn", _torch_bn, batch_dependent=True, cancels_bias=True),
    NormKind("none", _none, batch_dependent=False, cancels_bias=False),
    NormKind("noisy_bn", _ignoring_dims(NoisyBatchNorm), batch_dependent=True, cancels_bias=True),
    NormKind("noise", _ignoring_dims(DistributionNoise), batch_dependent=False, cancels_bias=False),
    NormKind("l1", _ignoring_dims(LpNorm, p=1), batch_dependent=True, cancels_bias=True),
    NormKind("l2", _ignoring_dims(LpNorm, p=2), batch_dependent=True, cancels_bias=True),
    NormKind("linf", _ignoring_dims(LpNorm, p=float("inf")), batch_dependent=True, cancels_bias=True),
    NormKind("layer", _layer, batch_dependent=False, cancels_bias=False),
    NormKind("group", _group, batch_dependent=False, cancels_bias=False),
)}
NORM_KINDS: tuple[str, ...] = tuple(NORMS)  # the built-in names, in table order


def register_norm(name: str, build: Builder, *, batch_dependent: bool, cancels_bias: bool) -> NormKind:
    """Add a named row to the table (e.g. a user's norm, so configs can name it); a taken name is refused."""
    if not isinstance(name, str) or not name.isidentifier():
        raise BnlabError(f"a norm name must be an identifier, got {name!r}")
    if name in NORMS:
        raise BnlabError(f"norm {name!r} is already in the table")
    NORMS[name] = NormKind(name, build, batch_dependent, cancels_bias)
    return NORMS[name]


def norm_kind(kind: str | Builder) -> NormKind:
    """The table row of `kind`: a name, or a class / callable for a user's own norm (flags from ``is_batchnorm``)."""
    if isinstance(kind, str):
        if kind not in NORMS:
            raise BnlabError(f"unknown norm '{kind}' (choose from {', '.join(NORMS)})")
        return NORMS[kind]
    if callable(kind):
        batch = bool(getattr(kind, "is_batchnorm", False)) or (
            isinstance(kind, type) and issubclass(kind, nn.modules.batchnorm._BatchNorm))
        name = getattr(kind, "__name__", type(kind).__name__)
        return NormKind(name, lambda num_features, dims=0, **kw: kind(num_features, **kw), batch, batch)
    raise BnlabError(f"a norm is a name or a class / callable, got {type(kind).__name__}")


def make_norm(kind: str | Builder, num_features: int, dims: int = 0, **kw: Any) -> nn.Module:
    """A normalisation layer of `kind` for `num_features` channels; `dims` = number of spatial dims."""
    return norm_kind(kind).build(num_features, dims=dims, **kw)
