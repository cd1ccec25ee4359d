"""Experiment C09: smoke plan -> every trial -> summarize; structure, finite numbers, the verdict."""

from __future__ import annotations

import json

from bnlab.experiments import c09_scale_invariance as exp
from bnlab.experiments.base import ClaimResult
from bnlab.sweeps.trial import execute_trial
from experiments_smoke import all_finite, run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(exp)
    assert plan.claim == exp.CLAIM_ID == "C09"
    assert isinstance(result, ClaimResult) and result.verdict == "supported", result.summary
    assert all_finite(result.key_number.value)
    for fig in result.figures:
        assert fig.kind in ("lines", "bars") and all_finite(fig.data)


def test_rules_react_to_the_data():
    plan = exp.plan("smoke", 2)
    results = {t.name: execute_trial(t) for t in plan.trials}
    shrinking = json.loads(json.dumps(results))
    for s in (0, 1):
        shrinking[f"dynamics/wd=0/seed={s}"]["log_growth"] = -0.1 - 0.01 * s
    assert exp.summarize(plan, shrinking).metrics["growth_verdict"] == "refuted"
    broken = json.loads(json.dumps(results))
    broken["dynamics/wd=0/seed=0"]["measured_growth"][0] *= 2
    assert exp.summarize(plan, broken).metrics["recursion_verdict"] == "refuted"
