"""Normalisation layers: bnlab's from-scratch BN, its variants, and a string factory."""

from bnlab.layers.factory import NORM_KINDS, make_norm

__all__ = ["NORM_KINDS", "make_norm"]
