"""C12 regularisation: smoke plan end to end, the noise-free control, precise statistics, the rule's cases."""

import json
import math

import pytest

from bnlab.errors import BnlabError
from bnlab.experiments import c12_regularisation as c12
from bnlab.trials.regularisation import regularisation_run
from experiments_smoke import run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c12)
    assert [r.setting for r in result.decision.primary] == ["regularisation", "batch noise"]
    assert c12.REFERENCE in result.metrics["per_variant"]
    for rec in results.values():
        assert not rec["diverged"] and 0 <= rec["test_acc"] <= 1
        assert rec["loss_gap"] == pytest.approx(rec["test_loss"] - rec["train_loss"])
    assert {s.name for s in result.decision.secondary} >= {"test-loss gap, no BN − BN", "gap(no BN) − gap(Dropout)"}


def test_reference_control_trains_and_is_evaluated_with_its_statistics():
    kw = dict(dataset="digits", model="mlp", activation="relu", train_size=200, norm="bn", norm_kwargs={},
              dropout=0.0, steps=60, batch_size=20, lr=0.05, momentum=0.9, seed=0)
    ref = regularisation_run(reference_batch=True, **kw)
    bn = regularisation_run(reference_batch=False, **kw)
    assert ref["train_acc"] > 0.8 and bn["train_acc"] > 0.8  # the control learns: the gradient path is intact
    assert ref != bn


def test_ghost_batch_nets_use_precise_statistics():
    """The old evaluation used running averages from the 5-example ghost batches; with precise statistics a ghost
    net is evaluated as well as plain BN on the data it fits (train accuracy near its training fit)."""
    kw = dict(dataset="digits", model="mlp", activation="relu", train_size=200, dropout=0.0, steps=200,
              batch_size=20, lr=0.05, momentum=0.9, seed=0, reference_batch=False, norm="bn")
    ghost = regularisation_run(norm_kwargs={"ghost_batch_size": 4}, **kw)
    assert ghost["train_acc"] > 0.95


def _m(reg, noise):
    return {"primary": {"regularisation": reg, "batch noise": noise}}


def test_rule_cases():
    pos = [0.03, 0.025, 0.04, 0.02, 0.035, 0.03, 0.028, 0.033]
    neg = [-v for v in pos]
    noise = [0.01, -0.02, 0.015, -0.005, 0.0, 0.02, -0.01, 0.004]
    assert c12.decide(_m(pos, pos)).verdict == "supported"
    assert c12.decide(_m(pos, neg)).verdict == "mixed"  # BN regularises, but not through its noise
    assert c12.decide(_m(pos, noise)).verdict == "inconclusive"
    assert c12.decide(_m(neg, neg)).verdict == "refuted"
    assert c12.decide(_m([math.nan, 0.02], pos)).verdict == "inconclusive"


def test_ghost_slope_and_bad_config():
    assert c12.ghost_slope([5, 10, 20], [0.3, 0.2, 0.1]) == pytest.approx(-0.1)
    assert math.isnan(c12.ghost_slope([5, 10], [0.3, math.nan]))
    with pytest.raises(BnlabError, match="ghost sizes"):
        c12._check(c12.C12Config(ghost_sizes=(50,)))
    with pytest.raises(BnlabError, match="unknown scale"):
        c12.plan("huge")


@pytest.mark.parametrize("scale", ["default", "paper"])
def test_plans_are_plain_data(scale):
    plan = c12.plan(scale, 2)
    json.dumps({"config": plan.config, "trials": [dict(t.params) for t in plan.trials]})
    assert len(plan.trials) == 2 * (5 + len(plan.config["ghost_sizes"]))
