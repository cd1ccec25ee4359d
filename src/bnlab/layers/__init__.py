"""Normalisation layers: bnlab's from-scratch BN, its variants, and a string factory."""

from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.factory import NORM_KINDS, make_norm
from bnlab.layers.lp import LpNorm
from bnlab.layers.noisy import DistributionNoise, NoisyBatchNorm
from bnlab.layers.precise import precise_statistics

__all__ = [
    "NORM_KINDS", "BatchNorm", "DistributionNoise", "LpNorm", "NoisyBatchNorm", "make_norm", "precise_statistics",
]
