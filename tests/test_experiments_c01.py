"""Experiment C01: smoke plan -> every trial -> summarize; structure, finite numbers, the verdict."""

from __future__ import annotations

from bnlab.experiments import c01_mechanics as exp
from bnlab.experiments.base import ClaimResult
from bnlab.sweeps.trial import execute_trial
from experiments_smoke import all_finite, run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(exp)
    assert plan.claim == exp.CLAIM_ID == "C01"
    assert isinstance(result, ClaimResult) and result.verdict == "supported", result.summary
    assert all_finite(result.key_number.value)
    for fig in result.figures:
        assert fig.kind in ("lines", "bars") and all_finite(fig.data)


def test_a_failing_row_refutes():
    plan = exp.plan("smoke", 1)
    results = {t.name: execute_trial(t) for t in plan.trials}
    results["verify/seed=0"]["errors"]["bn.forward.f64"] = 1.0
    result = exp.summarize(plan, results)
    assert result.verdict == "refuted" and "bn.forward.f64" in result.metrics["failed"]
