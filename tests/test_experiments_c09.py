"""Experiment C09: smoke run end to end; the behavioural endpoint decides, the identities are verifications."""

from __future__ import annotations

import math

import pytest

from bnlab.experiments import c09_scale_invariance as exp
from bnlab.trials.scale_invariance import trajectory
from experiments_smoke import run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(exp)
    assert {v.name for v in result.decision.verifications} >= {"invariance.forward", "SGD norm recursion"}
    assert all(v.passed for v in result.decision.verifications)
    assert len(result.decision.secondary) == 4


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_twin_runs_coincide_with_bn_and_not_without(momentum: float):
    """The identity behind the endpoint: (αW₀, α²lr) follows (W₀, lr) with BN (to the ε effect), not without."""
    kw = dict(dataset="synthetic", model="mlp", steps=30, batch_size=60, lr=0.5, momentum=momentum, alpha=3.0,
              record_every=10, eval_examples=128, seed=1)
    bn, none = trajectory(norm="bn", **kw), trajectory(norm="none", **kw)
    assert max(bn["relative_distance"]) < 1e-3
    assert min(none["relative_distance"]) > 1e-2


def test_identities_passing_do_not_decide_the_claim():
    """The old rule let the identities vote; now twins that diverge with BN refute the claim even if every identity
    holds."""
    checks = {"invariance.forward": [0.1, 0.2], "invariance.grad": [0.0, 0.1]}
    diverging = {"primary": {"all": [-2.1, -1.8, -2.4, -2.0]}, "checks": checks}
    decision = exp.decide(diverging)
    assert decision.verdict == "refuted" and all(v.passed for v in decision.verifications)


def test_rule_prose_cases():
    assert exp.decide({"primary": {"all": [8.0, 9.1, 7.7, 8.4]}}).verdict == "supported"
    assert exp.decide({"primary": {"all": [0.5, -0.4, 0.1, -0.3]}}).verdict == "inconclusive"
    assert exp.decide({"primary": {"all": [3.0, 3.0, 3.0]}}).verdict == "inconclusive"  # zero spread decides nothing
    assert exp.decide({"primary": {"all": [math.nan, 2.0]}}).verdict == "inconclusive"
