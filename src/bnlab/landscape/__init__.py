"""Loss landscapes: 1-D and 2-D, filter-normalised directions, BN mode explicit (Li et al. 2018).

    from bnlab.landscape import random_plane
    surface = random_plane(model, nn.CrossEntropyLoss(), (x, y), steps=21, seed=0, bn_mode="train")
    surface.save("plane.npz")
"""

from bnlab.landscape.directions import (
    model_origin,
    normalize_direction,
    orthogonalize,
    pca_directions,
    random_directions,
)
from bnlab.landscape.grid import axis, plane_points, symmetric_axis
from bnlab.landscape.interpolate import interpolate, parameters_of
from bnlab.landscape.plane import merge_rows, pca_plane, random_line, random_plane
from bnlab.landscape.points import BN_MODES, evaluate_points
from bnlab.landscape.roughness import roughness
from bnlab.landscape.surface import Curve, Surface

__all__ = [
    "BN_MODES", "Curve", "Surface", "axis", "evaluate_points", "interpolate", "merge_rows", "model_origin",
    "normalize_direction", "orthogonalize", "parameters_of", "pca_directions", "pca_plane", "plane_points",
    "random_directions", "random_line", "random_plane", "roughness", "symmetric_axis",
]
