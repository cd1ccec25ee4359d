"""bnlab.sweeps."""
