"""Experiment C01: smoke plan -> every trial -> summarize; structure, finite numbers, the verdict."""

from __future__ import annotations

import json
import math

from bnlab.experiments import c01_mechanics as exp
from bnlab.experiments.base import VERDICTS, ClaimResult
from bnlab.experiments.trial import execute_trial


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def test_smoke_plan_runs_and_summarizes():
    plan = exp.plan("smoke", 2)
    assert plan.claim == exp.CLAIM_ID == "C01"
    assert len({t.name for t in plan.trials}) == len(plan.trials)
    results = {t.name: execute_trial(t) for t in plan.trials}
    json.dumps(results)  # plain data
    result = exp.summarize(plan, results)
    assert isinstance(result, ClaimResult) and result.verdict in VERDICTS
    assert result.verdict == "supported", result.summary
    assert result.rule and result.summary and result.figures
    assert result.key_number is not None and math.isfinite(result.key_number.value)
    assert _finite(result.key_number.value)
    json.dumps(result.metrics)
    for fig in result.figures:
        assert fig.kind in ("lines", "bars") and fig.data["panels"]
        assert _finite(fig.data)


def test_a_failing_row_refutes():
    plan = exp.plan("smoke", 1)
    results = {t.name: execute_trial(t) for t in plan.trials}
    results["verify/seed=0"]["errors"]["bn.forward.f64"] = 1.0
    result = exp.summarize(plan, results)
    assert result.verdict == "refuted" and "bn.forward.f64" in result.metrics["failed"]
