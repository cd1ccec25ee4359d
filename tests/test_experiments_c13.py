"""C13 (convergence speed): the smoke plan runs end to end; steps-to-target and the rule on hand-made records."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bnlab.experiments import c07_learning_rate as c07
from bnlab.experiments import c13_convergence as c13
from bnlab.experiments.base import VERDICTS
from bnlab.sweeps.trial import execute_trial


def test_smoke_plan_runs_and_summarizes() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = c13.plan("smoke", 2)
        results = {t.name: json.loads(json.dumps(execute_trial(t))) for t in plan.trials}
    finally:
        torch.set_num_threads(before)
    # the same trials as C07: the audit runs them once
    assert {t.key() for t in plan.trials} == {t.key() for t in c07.plan("smoke", 2).trials}
    result = c13.summarize(plan, results)
    assert result.id == "C13" and result.verdict in VERDICTS
    assert math.isfinite(result.key_number.value) and result.key_number.value > 0
    assert {f.id for f in result.figures} == {"accuracy_at_best_lr", "steps_vs_lr"}
    for fig in result.figures:
        for panel in fig.data["panels"]:
            assert all(math.isfinite(y) for s in panel["series"] for y in s["y"])
    json.dumps(result.metrics)


def test_steps_to_target() -> None:
    rec = {"eval_step": [0, 10, 20, 30], "test_acc_curve": [0.1, 0.5, 0.9, 0.95], "diverged_at_step": None}
    assert c13.steps_to_target(rec, 0.9, 99) == (20, True)
    assert c13.steps_to_target(rec, 0.99, 99) == (99, False)
    cut = {**rec, "diverged_at_step": 15}
    assert c13.steps_to_target(cut, 0.9, 99) == (99, False)  # evaluations after the divergence do not count
    assert c13.steps_to_target({**rec, "test_acc_curve": [0.95] * 4}, 0.9, 99) == (1, True)


def test_rule_uses_each_nets_best_lr() -> None:
    s = c07.LrSetting(label="t", lrs=(0.1, 1.0), steps=100, eval_every=10)
    # steps to 0.9: BN 20 at lr 1 (60 at lr 0.1); no BN 80 at lr 0.1 (never at lr 1)
    reach = {("bn", 0.1): 60, ("bn", 1.0): 20, ("none", 0.1): 80, ("none", 1.0): None}
    results = {}
    for (norm, lr), at in reach.items():
        for seed in (0, 1, 2):
            steps = list(range(0, 101, 10))
            curve = [0.95 if at is not None and st >= at else 0.5 for st in steps]
            results[c07.trial_name(s, norm, lr, seed)] = {"eval_step": steps, "test_acc_curve": curve,
                                                          "diverged_at_step": None}
    out = c13.summarize_setting(s, 0.9, (0, 1, 2), results)
    assert out["best_lr_bn"] == 1.0 and out["best_lr_none"] == 0.1
    assert out["speedup"] == pytest.approx(4.0) and out["verdict"] == "supported"  # identical seeds: CI = {ln 4}
    assert out["reached_none"] == 3 and out["steps_none"] == [80, 80, 80]
