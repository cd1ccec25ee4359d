"""C07 (learning rates): the smoke plan runs end to end; the rule's pieces on hand-made records."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bnlab.experiments import c07_learning_rate as c07
from bnlab.experiments.base import VERDICTS, Plan
from bnlab.sweeps.trial import execute_trial


@pytest.fixture(scope="module")
def smoke() -> tuple[Plan, dict]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = c07.plan("smoke", 2)
        results = {t.name: json.loads(json.dumps(execute_trial(t))) for t in plan.trials}
    finally:
        torch.set_num_threads(before)
    return plan, results


def test_smoke_plan_runs_and_summarizes(smoke: tuple[Plan, dict]) -> None:
    plan, results = smoke
    assert len(plan.trials) == len({t.name for t in plan.trials}) == 2 * 4 * 2
    assert all(t.fn == c07.TRIAL_FN and "seed" in t.params for t in plan.trials)
    result = c07.summarize(plan, results)
    assert result.id == "C07" and result.verdict in VERDICTS and result.rule
    assert math.isfinite(result.key_number.value)
    assert {f.id for f in result.figures} == {"accuracy_vs_lr", "loss_curves"}
    panel = result.figures[0].data["panels"][0]
    assert panel["xscale"] == "log" and [s["label"] for s in panel["series"]] == ["BN", "no BN"]
    assert all(math.isfinite(y) for s in panel["series"] for y in s["y"])
    json.dumps(result.metrics)
    rec = next(iter(results.values()))
    assert len(rec["train_loss"]) <= 100 and len(rec["test_acc_curve"]) <= 200


def _rec(acc: float, diverged: int | None = None) -> dict:
    return {"test_acc": acc, "diverged_at_step": diverged}


def test_largest_stable_lr_rule() -> None:
    recs = {0.01: _rec(0.5), 0.1: _rec(0.9), 1.0: _rec(0.95), 10.0: _rec(0.1, diverged=3)}
    assert c07.largest_stable_log_lr(recs, 0.8) == pytest.approx(0.0)  # lr 1
    none_ok = {0.01: _rec(0.2), 0.1: _rec(0.3)}
    assert c07.largest_stable_log_lr(none_ok, 0.8) == pytest.approx(-3.0)  # one grid step below 0.01
    assert not c07.is_stable(_rec(float("nan")), 0.5)
    assert c07.effective_accuracy(_rec(0.9, diverged=5)) == 0.1


def test_verdicts_follow_the_rule() -> None:
    s = c07.LrSetting(label="t", lrs=(0.1, 1.0, 10.0), trained_acc=0.8)

    def results(bn_largest: dict[int, float], none_largest: dict[int, float]) -> dict:
        out = {}
        for norm, largest in (("bn", bn_largest), ("none", none_largest)):
            for seed, top in largest.items():
                for lr in s.lrs:
                    out[c07.trial_name(s, norm, lr, seed)] = {
                        "test_acc": 0.9 if lr <= top else 0.1, "diverged_at_step": None if lr <= top else 2,
                        "loss_step": [0, 1], "train_loss": [2.3, 1.0], "eval_step": [0], "test_acc_curve": [0.1]}
        return out

    seeds = (0, 1, 2)
    up = c07.summarize_setting(s, seeds, results({0: 10.0, 1: 10.0, 2: 1.0}, {0: 0.1, 1: 0.1, 2: 0.1}))
    assert up["verdict"] == "supported" and up["d"] == pytest.approx(5 / 3)
    same = c07.summarize_setting(s, seeds, results({0: 1.0, 1: 1.0, 2: 1.0}, {0: 1.0, 1: 1.0, 2: 1.0}))
    assert same["verdict"] == "refuted"
    noisy = c07.summarize_setting(s, seeds, results({0: 10.0, 1: 0.1, 2: 1.0}, {0: 1.0, 1: 1.0, 2: 1.0}))
    assert noisy["verdict"] == "inconclusive"
    assert same["small_lr"]["lr"] == 0.1 and same["small_lr"]["coincide"]
