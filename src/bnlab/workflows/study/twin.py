"""The study's twin: the user's model with only its BatchNorm replaced, every other part kept.

`make_twin(model, kind)` replaces, in place, the normalisation of every BN layer (torch's, bnlab's, and BN
subclasses such as timm's fused ``BatchNormAct2d``) by

* ``identity`` (alias ``remove-bn``): nothing -- the net without normalisation;
* ``groupnorm``: ``nn.GroupNorm`` with 32 groups, or the largest divisor of C below 32 (timm's ``create_norm``
  default, Wu & He 2018);
* ``layernorm``: normalisation over every dim but the batch (``nn.GroupNorm(1, C)``: for (N, C) inputs this is
  LayerNorm over the features, for (N, C, H, W) over C, H and W -- Ba et al. 2016 as applied to conv nets).

A fused norm-and-activation layer is found by structure, not by name: a BN layer with child modules. Its
children named ``drop`` and ``act`` (timm's convention: ``BatchNormAct2d.forward`` is batch norm, then
``self.drop``, then ``self.act``) are kept, in that order, after the replacement; so MobileNetV2's twin keeps its
ReLU6s. A BN layer with any other child cannot be split by a rule bnlab knows, and is refused with a message (give
``--twin FILE.py:FACTORY`` instead).

`init_confounds(model)` names the BN layers whose γ starts at zero (timm's ResNets zero the last BN of each
block, ``zero_init_last``): the BN net starts with those residual branches off, the twin with them on. With
``match_init=True`` the twin starts with them off as well: a norm twin's γ is zeroed likewise; the identity twin
zeroes the weight (and bias) of the weight layer just before the removed BN (Fixup's zero-initialised last
layer of each residual branch, Zhang et al. 2019).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.state import batchnorm_layers

TWINS: tuple[str, ...] = ("remove-bn", "identity", "groupnorm", "layernorm")
KEPT_CHILDREN: tuple[str, ...] = ("drop", "act")  # the order timm's BatchNormAct*.forward applies them
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
GROUPS = 32  # timm's create_norm("groupnorm") default


def _largest_divisor(channels: int, wanted: int) -> int:
    return max(g for g in range(1, min(wanted, channels) + 1) if channels % g == 0)


def _channels(name: str, module: nn.Module) -> int:
    features = getattr(module, "num_features", None)
    if not isinstance(features, int):
        raise BnlabError(f"cannot replace BN layer {name} ({type(module).__name__}): it has no num_features")
    return features


def _norm(kind: str, name: str, module: nn.Module) -> nn.Module:
    """The replacement of `module`'s normalisation alone."""
    if kind in ("remove-bn", "identity"):
        return nn.Identity()
    channels = _channels(name, module)
    groups = _largest_divisor(channels, GROUPS) if kind == "groupnorm" else 1
    affine = bool(getattr(module, "affine", True))
    eps = float(getattr(module, "eps", 1e-5))
    weight = getattr(module, "weight", None)
    norm = nn.GroupNorm(groups, channels, eps=eps, affine=affine)
    if isinstance(weight, torch.Tensor):  # the same device and dtype as the layer it replaces
        norm = norm.to(device=weight.device, dtype=weight.dtype)
    return norm


def _split(name: str, module: nn.Module, replacement: nn.Module) -> tuple[nn.Module, list[str]]:
    """The replacement followed by the fused layer's kept children (found by structure), or a refusal."""
    children = dict(module.named_children())
    unknown = sorted(set(children) - set(KEPT_CHILDREN))
    if unknown:
        raise BnlabError(f"cannot split BN layer {name} ({type(module).__name__}): it holds {', '.join(unknown)} "
                         f"besides the normalisation, and bnlab knows only {' and '.join(KEPT_CHILDREN)} "
                         "(applied after it); give the twin yourself with --twin FILE.py:FACTORY")
    kept = [(child, children[child]) for child in KEPT_CHILDREN
            if child in children and not isinstance(children[child], nn.Identity)]
    if not kept:
        return replacement, []
    parts = nn.Sequential()
    parts.add_module("norm", replacement)
    for child, part in kept:
        parts.add_module(child, part)
    return parts, [f"{child} ({type(part).__name__})" for child, part in kept]


def make_twin(model: nn.Module, kind: str = "remove-bn", *,
              match_init: bool = False) -> tuple[nn.Module, list[dict[str, Any]]]:
    """`model` with every BN layer's normalisation replaced by `kind` (module doc), in place; per replaced layer
    its name, class, replacement, the parts kept from it, whether the weight layer just before it (in registration
    order) has a bias (without one, the identity twin has no shift there: BN's β was the only one), and whether
    its γ started at zero (and was matched)."""
    if kind not in TWINS:
        raise BnlabError(f"twin must be one of {', '.join(TWINS)} or FILE.py:FACTORY, got {kind!r}")
    bn_names = {n for n, _ in batchnorm_layers(model)}
    replaced: list[dict[str, Any]] = []
    previous: nn.Module | None = None
    for name, module in list(model.named_modules()):
        if any(name.startswith(done + ".") for done in (r["layer"] for r in replaced)):
            continue  # inside a layer already replaced
        if name in bn_names:
            zero = _zero_gamma(module)
            norm = _norm(kind, name, module)
            new, kept = _split(name, module, norm)
            if match_init and zero:
                _match(name, norm, previous)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
            replaced.append({"layer": name, "kind": type(module).__name__, "by": type(norm).__name__,
                             "kept": kept, "bias_before": getattr(previous, "bias", None) is not None
                             if previous is not None else None, "zero_gamma": zero,
                             "matched": bool(match_init and zero)})
        elif isinstance(module, WEIGHT_LAYERS):
            previous = module
    return model, replaced


def remove_bn(model: nn.Module) -> tuple[nn.Module, list[dict[str, Any]]]:
    """The identity twin (`make_twin(model, "remove-bn")`): kept for callers of the first study API."""
    return make_twin(model, "remove-bn")


def _zero_gamma(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.numel() > 0 and not bool(weight.detach().any())


@torch.no_grad()
def _match(name: str, norm: nn.Module, previous: nn.Module | None) -> None:
    """Start the twin's branch off where the BN net's γ = 0 starts it off (module doc)."""
    if isinstance(getattr(norm, "weight", None), torch.Tensor):
        norm.weight.zero_()
        return
    if previous is None:
        raise BnlabError(f"--match-init: BN layer {name} starts with γ = 0 but has no weight layer before it to "
                         "zero in the identity twin")
    previous.weight.zero_()
    if getattr(previous, "bias", None) is not None:
        previous.bias.zero_()


def init_confounds(model: nn.Module) -> list[str]:
    """Names of the BN layers whose γ is zero at initialisation (their branch starts off with BN only)."""
    return [name for name, module in batchnorm_layers(model) if _zero_gamma(module)]
