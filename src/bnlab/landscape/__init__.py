"""bnlab.landscape."""
