"""bnlab.tracking."""
