"""C10 initialisation: smoke plan -> every trial -> summarize, and the rule."""

import json
import math
from dataclasses import asdict

from bnlab.experiments import c10_initialisation as c10
from bnlab.experiments.base import VERDICTS
from experiments_smoke import run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c10)
    for rec in results.values():
        assert 0.0 <= c10.effective_accuracy(rec) <= 1.0
    assert result.verdict in VERDICTS and math.isfinite(result.key_number.value)
    assert len(result.metrics["range_bn"]) == 2
    assert result.figures[0].data["panels"][0]["xscale"] == "log"
    json.dumps(asdict(result))


def _fake(plan, acc):
    return {t.name: {"test_acc": acc(t.params), "diverged": False, "chance": 0.1} for t in plan.trials}


def test_rule_supported_mixed_and_refuted():
    plan = c10.plan("smoke", 3)
    jitter = {0: 0.0, 1: 0.01, 2: -0.01}
    # BN flat at 0.9, no BN collapses at extreme scales -> supported
    res = _fake(plan, lambda p: 0.9 + jitter[p["seed"]] if p["norm"] == "bn" or p["init_scale"] == 1.0
                else 0.1 + jitter[p["seed"]] / 2)
    assert c10.summarize(plan, res).verdict == "supported"
    # BN better but still fails at the largest scale -> mixed
    res = _fake(plan, lambda p: (0.2 if p["init_scale"] == 100.0 else 0.9) + jitter[p["seed"]] / 4
                if p["norm"] == "bn" else (0.9 if p["init_scale"] == 1.0 else 0.1) + jitter[p["seed"]] / 2)
    assert c10.summarize(plan, res).verdict == "mixed"
    # BN the sensitive one -> refuted
    res = _fake(plan, lambda p: 0.9 + jitter[p["seed"]] if p["norm"] == "none" or p["init_scale"] == 1.0
                else 0.1 + jitter[p["seed"]] / 2)
    assert c10.summarize(plan, res).verdict == "refuted"


def test_default_and_paper_plans_are_plain_data():
    for scale, seeds in (("default", 3), ("paper", 5)):
        plan = c10.plan(scale, seeds)
        json.dumps({"config": plan.config, "trials": [dict(t.params) for t in plan.trials]})
        assert plan.seeds == tuple(range(seeds)) and len({t.name for t in plan.trials}) == len(plan.trials)
