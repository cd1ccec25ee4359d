"""Experiment C08: smoke plan -> every trial -> summarize; structure, finite numbers, the verdict."""

from __future__ import annotations

from bnlab.experiments import c08_jacobian as exp
from bnlab.experiments.base import ClaimResult
from experiments_smoke import all_finite, run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(exp)
    assert plan.claim == exp.CLAIM_ID == "C08"
    assert isinstance(result, ClaimResult) and result.verdict == "supported", result.summary
    assert all_finite(result.key_number.value)
    for fig in result.figures:
        assert fig.kind in ("lines", "bars") and all_finite(fig.data)
