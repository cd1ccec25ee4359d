"""bnlab.models."""
