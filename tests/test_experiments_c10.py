"""C10: worst-case accuracy over hidden-layer init scales; the output layer apart; smoke run end to end."""

import pytest
import torch

from bnlab.experiments import c10_initialisation as c10
from bnlab.models import build_model, layers_in_order
from bnlab.trials.init_scale import scale_initial_weights
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end():
    plan, result = run_smoke(c10)
    check_result(c10, plan, result)
    wheres = {t.params["where"] for t in plan.trials}
    assert wheres == {"hidden", "output"}


def test_hidden_scaling_leaves_the_output_layer_alone():
    torch.manual_seed(0)
    net = build_model("mlp", norm="bn", in_shape=(1, 8, 8), num_classes=10)
    before = {n: m.weight.clone() for n, m in layers_in_order(net)}
    names = scale_initial_weights(net, 10.0, "hidden")
    layers = layers_in_order(net)
    assert names == [n for n, _ in layers[:-1]]
    for n, m in layers[:-1]:
        assert torch.allclose(m.weight, 10 * before[n])
    assert torch.equal(layers[-1][1].weight, before[layers[-1][0]])


def _results(acc_bn: list[list[float]], acc_none: list[list[float]]) -> tuple:
    """A plan with 2 hidden scales and 1 output scale, and fake trial results with the given accuracies."""
    plan = c10.plan("smoke", len(acc_bn))
    cfg = plan.config
    results = {}
    for norm, acc in (("bn", acc_bn), ("none", acc_none)):
        for i, seed in enumerate(plan.seeds):
            for j, s in enumerate(cfg["init_scales"]):
                results[c10._name(norm, "hidden", s, seed)] = {"test_acc": acc[i][j], "diverged": False,
                                                               "chance": 0.1}
            for s in cfg["output_scales"]:
                results[c10._name(norm, "output", s, seed)] = {"test_acc": 0.5, "diverged": False, "chance": 0.1}
    return plan, results


def test_a_net_that_fails_at_every_scale_is_not_insensitive():
    """Issue 15: the range over scales scored a net that fails everywhere (range 0) as perfectly insensitive."""
    fails_everywhere = [[0.1, 0.1, 0.1]] * 3
    trains_mostly = [[0.6, 0.9, 0.92], [0.62, 0.9, 0.91], [0.58, 0.88, 0.93]]
    plan, results = _results(fails_everywhere, trains_mostly)
    metrics = c10.measure(plan, results)
    old_range = [max(a) - min(a) for a in fails_everywhere]
    assert old_range == [0.0] * 3  # the old measure: BN "insensitive"
    assert c10.decide(metrics).verdict == "refuted"  # the worst case: BN's is far lower
    trained = {r.name: r.effect for r in c10.decide(metrics).secondary}
    assert trained["fraction of init scales trained, BN"] == 0.0


@pytest.mark.parametrize("values, want", [([0.2, 0.3, 0.25, 0.22], "supported"), ([-0.2, -0.3, -0.25, -0.2], "refuted"),
                                          ([0.05, -0.04, 0.01, -0.02], "inconclusive")])
def test_rule_prose_cases(values, want):
    assert c10.decide({"primary": {"hidden layers": values}}).verdict == want


def test_a_diverged_run_scores_the_chance_the_trial_reports():
    assert c10.accuracy({"test_acc": float("nan"), "diverged": True, "chance": 0.1}) == 0.1
    assert c10.accuracy({"test_acc": 0.9, "diverged": True, "chance": 0.25}) == 0.25
    assert c10.accuracy({"test_acc": 0.9, "diverged": False, "chance": 0.25}) == 0.9
