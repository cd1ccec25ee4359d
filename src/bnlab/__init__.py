"""bnlab: a laboratory that tests, by experiment, why Batch Normalization helps deep networks train."""

__version__ = "0.1.0"
