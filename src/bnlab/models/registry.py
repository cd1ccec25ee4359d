"""Built-in models by name, and the ordered list of layers probes walk through.

`build_model(name, *, norm="none", init_scale=1.0, in_shape=..., num_classes=10, **kwargs)` builds one of
MODELS; every model takes `norm` (a `make_norm` kind), `norm_kwargs`, `init_scale` (multiplier on Glorot
init) and, where it makes sense, `dropout`. Parameters are drawn from the global torch RNG: seed first.

Layers in order: `layers_in_order(model)` returns the weight layers (Linear / Conv) as (name, module) in forward
order. For the built-in models forward order is definition order (``blocks[i].linear`` / ``features[i].conv``,
then ``head``), so the list is `named_modules()` filtered; for a user's model the same filter is used, which is
correct whenever modules are registered in the order they are applied (as in ``nn.Sequential``).
`normalised_blocks(model)` gives the (name, block) pairs that hold one linear map + norm (+ activation).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from bnlab.errors import BnlabError
from bnlab.models.deep_mlp import DeepMLP
from bnlab.models.dln import DeepLinearNet
from bnlab.models.init import check_init_scale
from bnlab.models.mlp import DenseBlock, IoffeMLP
from bnlab.models.vgg import VGG, ConvBlock

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": IoffeMLP,
    "vgg": VGG,
    "dln": DeepLinearNet,
    "deep_mlp": DeepMLP,
}

DEFAULT_IN_SHAPES: dict[str, tuple[int, ...]] = {
    "mlp": (1, 28, 28),
    "vgg": (3, 32, 32),
    "dln": (10,),
    "deep_mlp": (1, 28, 28),
}


# what build_model passes itself: given as model options they would collide with the config's own keys
_SET_BY_BUILD = ("in_shape", "num_classes", "norm", "norm_kwargs", "init_scale")


@functools.cache
def model_options(name: str) -> tuple[str, ...]:
    """The options (``model_kwargs`` / ``--model-opt`` keys) the built-in model `name` takes (once per name:
    `inspect.signature` was most of the time a sweep took to validate its configs)."""
    params = inspect.signature(MODELS[name]).parameters
    return tuple(p for p in params if p not in _SET_BY_BUILD)


def check_model_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse an option `name` does not take, by name, before anything runs (a sweep of 36 trials must not fail
    36 times at build time). Values are checked by the model when it is built."""
    if name not in MODELS:
        raise BnlabError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
    known = model_options(name)
    for key in options:
        if key in _SET_BY_BUILD:
            raise BnlabError(f"'{key}' is a config key of its own, not a model option of '{name}'")
        if key not in known:
            raise BnlabError(f"model '{name}' has no option '{key}' (its options: {', '.join(known)})")


def build_model(name: str, *, norm: str = "none", init_scale: float = 1.0, in_shape: Sequence[int] | None = None,
                num_classes: int = 10, norm_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """The built-in model `name`; unknown names and bad options raise BnlabError with a one-line message."""
    check_model_options(name, kwargs)  # an option the model does not take, named, with the ones it does
    if not isinstance(num_classes, int) or num_classes < 1:
        raise BnlabError(f"num_classes (output size) must be an integer >= 1, got {num_classes!r}")
    check_init_scale(init_scale)
    shape = tuple(int(s) for s in (in_shape if in_shape is not None else DEFAULT_IN_SHAPES[name]))
    try:
        return MODELS[name](in_shape=shape, num_classes=num_classes, norm=norm, norm_kwargs=norm_kwargs,
                            init_scale=init_scale, **kwargs)
    except TypeError as exc:  # a value of the wrong kind the model's code trips on
        raise BnlabError(f"model '{name}': {exc}") from None


_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layers_in_order(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Linear / Conv layer in forward order (see the module docstring for user models)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)]


def normalised_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, block) of the built-in blocks (linear map -> norm -> activation) in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (DenseBlock, ConvBlock))]
