"""Experiment C01 (a verification): smoke run end to end, and its rule on synthetic check results."""

from __future__ import annotations

import math

from bnlab.experiments import c01_mechanics as exp
from bnlab.experiments.base import summarize
from experiments_smoke import all_finite, run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(exp)
    assert plan.claim == exp.CLAIM_ID == "C01"
    assert result.verdict == "supported", result.description.summary
    assert result.decision.primary[0].test == "verification" and result.decision.verifications
    assert all(v.passed for v in result.decision.verifications)
    for fig in result.figures:
        assert fig.kind in ("lines", "bars") and all_finite(fig.data)


def test_a_failing_row_refutes():
    plan, results, _ = run_and_check(exp)
    results["verify/seed=0"]["errors"]["bn.forward.f64"] = 1.0  # 1e10 x its tolerance
    result = summarize(exp, plan, results)
    assert result.verdict == "refuted"
    assert [v.name for v in result.decision.verifications if not v.passed] == ["bn.forward.f64"]


def test_rule_prose_cases():
    """RULE: within tolerance everywhere -> supported; one check beyond -> refuted; a check with no number and none
    beyond -> inconclusive."""
    assert exp.decide({"checks": {"a": [0.1, 0.2], "b": [0.0]}}).verdict == "supported"
    assert exp.decide({"checks": {"a": [0.1, 1.5], "b": [0.0]}}).verdict == "refuted"
    assert exp.decide({"checks": {"a": [0.1, math.nan], "b": [0.0]}}).verdict == "inconclusive"
    assert exp.decide({"checks": {"a": [math.nan], "b": [2.0]}}).verdict == "refuted"
    assert exp.decide({"checks": {"a": [0.5], "b": [0.999]}}).primary[0].effect == 0.999
