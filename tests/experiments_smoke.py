"""Shared by the C03–C06 experiment tests: run a claim at smoke scale end to end (trials cached per process)."""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from bnlab.experiments.base import VERDICTS, ClaimResult
from bnlab.experiments.trial import execute_trial

_CACHE: dict[str, dict[str, Any]] = {}


def run_smoke(module: Any, seeds: int = 2) -> tuple[Any, ClaimResult]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared machine
    try:
        plan = module.plan("smoke", seeds)
        results = {}
        for trial in plan.trials:
            key = trial.key()
            if key not in _CACHE:
                _CACHE[key] = json.loads(json.dumps(execute_trial(trial)))  # through JSON, as the store keeps it
            results[trial.name] = _CACHE[key]
    finally:
        torch.set_num_threads(threads)
    return plan, module.summarize(plan, results)


def check_result(module: Any, plan: Any, result: ClaimResult) -> None:
    assert result.id == module.CLAIM_ID == plan.claim
    assert result.verdict in VERDICTS and result.verdict != "not_measured"
    assert result.rule and result.summary and result.method
    assert result.key_number is not None and math.isfinite(result.key_number.value)
    assert result.figures and all(f.data["panels"] for f in result.figures)
    for fig in result.figures:
        for panel in fig.data["panels"]:
            for series in panel.get("series", []):
                assert len(series["x"]) == len(series["y"]) > 0
                assert any(v is not None and math.isfinite(v) for v in series["y"])
    json.dumps({"metrics": result.metrics, "figures": [f.data for f in result.figures]})
    assert len({t.name for t in plan.trials}) == len(plan.trials)
