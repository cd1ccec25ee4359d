"""Built-in models (Ioffe's MLP, VGG, Santurkar's deep linear net, deep plain/residual MLPs) by name."""

from bnlab.models.registry import (
    DEFAULT_IN_SHAPES,
    MODELS,
    build_model,
    check_model_options,
    layers_in_order,
    model_options,
    normalised_blocks,
)

__all__ = ["DEFAULT_IN_SHAPES", "MODELS", "build_model", "check_model_options", "layers_in_order", "model_options",
           "normalised_blocks"]
