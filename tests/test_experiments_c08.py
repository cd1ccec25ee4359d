"""Experiment C08 (a verification): smoke run end to end, and a failing identity refutes."""

from __future__ import annotations

from bnlab.experiments import c08_jacobian as exp
from bnlab.experiments.base import summarize
from experiments_smoke import all_finite, run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(exp)
    assert plan.claim == exp.CLAIM_ID == "C08"
    assert result.verdict == "supported", result.description.summary
    names = {v.name for v in result.decision.verifications}
    assert {"jacobian.vs_autograd", "real.thm41.identity"} <= names
    assert result.decision.secondary[0].name.startswith("fraction of channels where the printed bound")
    for fig in result.figures:
        assert fig.kind in ("lines", "bars") and all_finite(fig.data)


def test_thm41_identity_off_beyond_tolerance_refutes():
    plan, results, _ = run_and_check(exp)
    results[f"real_layer/seed={plan.seeds[0]}"]["layers"][0]["identity_rel_error"] = 1e-3
    result = summarize(exp, plan, results)
    assert result.verdict == "refuted"
    assert [v.name for v in result.decision.verifications if not v.passed] == ["real.thm41.identity"]
