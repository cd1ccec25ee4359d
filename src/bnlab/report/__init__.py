"""bnlab.report."""
