"""Probes measure; they never leave state behind (see `bnlab.state`)."""

from bnlab.state import bn_mode, is_batchnorm, preserved_state

__all__ = ["bn_mode", "is_batchnorm", "preserved_state"]
