"""One module per claim; each plans trials and summarises them into a verdict by its stated rule."""

from bnlab.experiments.base import CLAIM_IDS, SCALES, VERDICTS, ClaimResult, Figure, KeyNumber, Plan, Trial

__all__ = ["CLAIM_IDS", "SCALES", "VERDICTS", "ClaimResult", "Figure", "KeyNumber", "Plan", "Trial"]
