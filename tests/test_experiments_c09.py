"""Experiment C09: smoke run end to end; the angular-update equilibrium decides, the identities and the twin runs
are verifications; the angle measurement against an arccos reference in float64."""

from __future__ import annotations

import math

import pytest
import torch

from bnlab.experiments import c09_scale_invariance as exp
from bnlab.trials.scale_invariance import angle_between, angular_update, trajectory
from experiments_smoke import run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(exp)
    names = {v.name for v in result.decision.verifications}
    assert names >= {"invariance.forward", "SGD norm recursion"} and any(n.startswith("twin runs") for n in names)
    assert all(v.passed for v in result.decision.verifications)
    assert [r.setting for r in result.decision.primary] == list(exp.LAYERS)
    assert len(result.decision.secondary) == 8
    assert result.metrics["predicted_angle"] == pytest.approx(math.sqrt(2 * 0.1 * 5e-4 / 1.9))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_twin_runs_coincide_with_bn_and_not_without(momentum: float):
    """The identity behind the endpoint: (αW₀, α²lr) follows (W₀, lr) with BN (to the ε effect), not without."""
    kw = dict(dataset="synthetic", model="mlp", steps=30, batch_size=60, lr=0.5, momentum=momentum, alpha=3.0,
              record_every=10, eval_examples=128, seed=1)
    bn, none = trajectory(norm="bn", **kw), trajectory(norm="none", **kw)
    assert max(bn["relative_distance"]) < 1e-3
    assert min(none["relative_distance"]) > 1e-2


def test_angle_between_matches_arccos_in_float64():
    """Reference oracle: acos of the normalised inner product, in float64 at angles where it is accurate."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 7, generator=g, dtype=torch.float64)
    for scale in (1e-2, 1e-1, 0.5):
        b = 3.0 * (a + scale * torch.randn(30, 7, generator=g, dtype=torch.float64))
        ref = math.acos(float((a * b).sum() / (a.norm() * b.norm())))
        assert angle_between(a, b) == pytest.approx(ref, rel=1e-9)
    assert angle_between(a, 5.0 * a) == pytest.approx(0.0, abs=1e-12)  # the angle ignores the norm


def test_bn_weights_turn_at_the_equilibrium_rate():
    """The behaviour the endpoint votes on, on a short run at a fast equilibrium (ηλ/(1−α) = 0.01/step): the BN
    net's angular update settles near √(2ηλ/(1+α)) in every layer."""
    r = angular_update(dataset="synthetic", model="mlp", norm="bn", steps=240, batch_size=60, lr=0.1, momentum=0.9,
                       weight_decay=1e-2, tail=1 / 3, seed=0)
    assert r["predicted"] == pytest.approx(math.sqrt(2 * 0.1 * 1e-2 / 1.9))
    for angle in r["tail_mean"]:
        assert abs(math.log(angle / r["predicted"])) < math.log(1.25)


def test_identities_passing_do_not_decide_the_claim():
    """Identities that hold do not decide: an angular update far from the equilibrium refutes the claim even if
    every identity holds."""
    checks = {"invariance.forward": [0.1, 0.2], "invariance.grad": [0.0, 0.1]}
    far = [1.1, 0.9, 1.2, 1.0, 1.05, 0.95, 1.0, 1.1]
    decision = exp.decide({"primary": {layer: far for layer in exp.LAYERS}, "checks": checks})
    assert decision.verdict == "refuted" and all(v.passed for v in decision.verifications)


def test_rule_prose_cases():
    near = [0.02, -0.03, 0.01, 0.0, 0.015, -0.01, 0.02, -0.02]
    noisy = [0.6, -0.8, 0.2, -0.6, 0.5, -0.4, 0.7, -0.2]
    far = [1.1, 0.9, 1.2, 1.0, 1.05, 0.95, 1.0, 1.1]
    assert exp.decide({"primary": {layer: near for layer in exp.LAYERS}}).verdict == "supported"
    assert exp.decide({"primary": {layer: noisy for layer in exp.LAYERS}}).verdict == "inconclusive"
    assert exp.decide({"primary": {"layer 1": near, "layer 2": near, "layer 3": far}}).verdict == "mixed"
    assert exp.decide({"primary": {layer: [0.0] * 3 for layer in exp.LAYERS}}).verdict == "inconclusive"
    assert exp.decide({"primary": {layer: [math.nan, 0.0] for layer in exp.LAYERS}}).verdict == "inconclusive"


def test_a_diverged_bn_run_is_infinitely_far_from_the_prediction():
    import copy

    from experiments_smoke import smoke_results

    plan, results = smoke_results(exp)
    s = plan.seeds[0]
    edited = copy.deepcopy(results)
    edited[f"angular/bn/seed={s}"]["diverged_at"] = 5
    edited[f"angular/none/seed={s}"]["diverged_at"] = 5
    m = exp.measure(plan, edited)
    assert all(m["primary"][layer][0] == math.inf for layer in exp.LAYERS)  # the primary: the worst outcome
    assert all(math.isfinite(v) for layer in exp.LAYERS for v in m["primary"][layer][1:])
    no_bn = m["secondary"][f"log(measured / predicted angular update) without BN [{exp.LAYERS[0]}]"]["values"]
    assert math.isnan(no_bn[0])  # the secondary leaves it out, as its note says
    rows = [[math.inf if i < 4 else 0.01 * (-1) ** i for i in range(8)]] * 3  # half the seeds diverged
    assert exp.decide({"primary": dict(zip(exp.LAYERS, rows)), "checks": {}}).verdict != "supported"
