"""Shared by the claim experiment tests: run a claim at smoke scale end to end (trials cached per process, each
caller gets its own copy of the results, so a test may edit them to exercise a rule)."""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from bnlab.experiments.base import VERDICTS, ClaimResult, summarize
from bnlab.report.figures import log_axis_problems
from bnlab.sweeps.trial import execute_trial

_CACHE: dict[str, str] = {}  # trial key -> its result as JSON


def smoke_results(module: Any, seeds: int = 2) -> tuple[Any, dict[str, Any]]:
    """(plan, trial name -> result) at smoke scale, every result passed through JSON as the store keeps it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared machine
    try:
        plan = module.plan("smoke", seeds)
        results = {}
        for trial in plan.trials:
            key = trial.key()
            if key not in _CACHE:
                _CACHE[key] = json.dumps(execute_trial(trial))
            results[trial.name] = json.loads(_CACHE[key])  # a fresh copy per caller
    finally:
        torch.set_num_threads(threads)
    return plan, results


def run_smoke(module: Any, seeds: int = 2) -> tuple[Any, ClaimResult]:
    plan, results = smoke_results(module, seeds)
    return plan, summarize(module, plan, results)


def run_and_check(module: Any, seeds: int = 2) -> tuple[Any, dict[str, Any], ClaimResult]:
    """(plan, results, summarised result), the result already through `check_result`."""
    plan, results = smoke_results(module, seeds)
    result = summarize(module, plan, results)
    check_result(module, plan, result)
    return plan, results, result


def all_finite(value: Any) -> bool:
    """Every float in a nested structure of dicts, lists and tuples is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    return True


def check_result(module: Any, plan: Any, result: ClaimResult) -> None:
    assert result.id == module.CLAIM_ID == plan.claim
    assert result.verdict in VERDICTS and result.verdict != "not_measured"
    assert result.rule and result.description.summary and result.description.method
    assert result.rule == module.RULE and result.protocol is module.PROTOCOL
    head = result.decision.primary[0]
    assert head.effect is not None and math.isfinite(head.effect)
    # one vote per setting ("conv:*" stands for every measured conv layer)
    wild = [s for s in module.PROTOCOL.endpoint.settings if s.endswith("*")]
    assert len(result.decision.primary) >= len(module.PROTOCOL.endpoint.settings) - len(wild)
    # decide sees only what measure returned: the same verdict from the metrics alone (JSON round trip)
    assert module.decide(json.loads(json.dumps(result.metrics))).verdict == result.verdict
    assert result.figures and all(f.data["panels"] for f in result.figures)
    for fig in result.figures:
        for panel in fig.data["panels"]:
            for series in panel.get("series", []):
                assert len(series["x"]) == len(series["y"]) > 0
                assert any(v is not None and math.isfinite(v) for v in series["y"])
    json.dumps({"metrics": result.metrics, "figures": [f.data for f in result.figures]})
    # no figure draws a non-positive value on a log axis (it would vanish from the picture)
    problems = [p for f in result.figures for p in log_axis_problems({"id": f.id, "data": f.data})]
    assert not problems, problems
    assert len({t.name for t in plan.trials}) == len(plan.trials)
