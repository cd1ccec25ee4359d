"""Built-in models (Ioffe's MLP, VGG, Santurkar's deep linear net, deep plain/residual MLPs) by name."""

from bnlab.models.registry import DEFAULT_IN_SHAPES, MODELS, build_model, layers_in_order, normalised_blocks

__all__ = ["DEFAULT_IN_SHAPES", "MODELS", "build_model", "layers_in_order", "normalised_blocks"]
