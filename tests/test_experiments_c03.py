"""C03: per-conv-layer ICS votes and Ioffe's drift, smoke run end to end, the rule on synthetic numbers."""

import pytest

from bnlab.experiments import c03_ics
from bnlab.experiments.probed_training import ics_layer_means, ics_means, percentile_drift
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end():
    plan, result = run_smoke(c03_ics)
    check_result(c03_ics, plan, result)
    assert len(plan.trials) == 3 * 2 * 2  # (mlp, vgg, dln) x (bn, none) x 2 seeds
    settings = [r.setting for r in result.decision.primary]
    assert settings == ["conv:features.2.conv", "conv:features.4.conv", "ioffe"]  # the narrow VGG's layers 2, 3
    assert any("classifier layer head" in r.name for r in result.decision.secondary)


def _ics(cos_by_layer: dict[str, float]) -> dict:
    layers = ["features.0.conv", *cos_by_layer]
    return {"layers": layers, "cosine": [[1.0, *cos_by_layer.values()]] * 3}


def test_the_head_alone_cannot_say_bn_reduces_ics():
    """Issue 15: both conv layers change their gradient more with BN, the head far less. Averaging over layers said
    'BN reduces ICS'; one vote per conv layer (the head reported apart) must not."""
    with_bn = _ics({"features.2.conv": 0.917, "features.4.conv": 0.811, "head": 0.95})
    without = _ics({"features.2.conv": 0.996, "features.4.conv": 0.911, "head": 0.088})
    old_average = [sum(ics_layer_means(s).values()) / 3 for s in (with_bn, without)]
    assert old_average[0] > old_average[1]  # the old measure: "BN reduces ICS"
    per_layer = {layer: [ics_layer_means(with_bn)[layer] - ics_layer_means(without)[layer] + d for d in (0, .01, -.01)]
                 for layer in ("features.2.conv", "features.4.conv")}
    metrics = {"primary": {f"conv:{k}": v for k, v in per_layer.items()} | {"ioffe": [0.5, 0.6, 0.4]}}
    decision = c03_ics.decide(metrics)
    assert [r.vote for r in decision.primary[:2]] == ["refuted", "refuted"]
    assert decision.verdict == "mixed"  # Ioffe's drift says reduced, Santurkar's layers say increased


@pytest.mark.parametrize("conv2, conv4, ioffe, want", [
    ([0.1, 0.12, 0.11], [0.2, 0.22, 0.21], [0.5, 0.6, 0.55], "supported"),
    ([-0.1, -0.12, -0.11], [-0.2, -0.22, -0.21], [-0.5, -0.6, -0.55], "refuted"),
    ([0.1, 0.12, 0.11], [0.1, -0.2, 0.05], [0.5, 0.6, 0.55], "inconclusive"),  # one layer undecided
    ([0.1, 0.12, 0.11], [0.2, 0.22, 0.21], [-0.5, -0.6, -0.55], "mixed"),
])
def test_rule_prose_cases(conv2, conv4, ioffe, want):
    metrics = {"primary": {"conv:a": conv2, "conv:b": conv4, "ioffe": ioffe}}
    assert c03_ics.decide(metrics).verdict == want


def test_drift_and_ics_summaries_by_hand():
    series = {"unit_percentiles": [[[0.0, 1.0], [2.0, 2.0]], [[1.0, 3.0], [2.0, 5.0]], [[-1.0, 2.0], [2.0, 4.0]]]}
    # ranges: unit0 p0: 2, unit0 p1: 2, unit1 p0: 0, unit1 p1: 3 -> mean 7/4
    assert percentile_drift(series) == pytest.approx(1.75)
    ics = {"layers": ["a", "b", "c"], "cosine": [[1.0, 0.5, 0.1], [1.0, 0.3, None]],
           "relative_distance": [[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]], "distance": [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]}
    m = ics_means(ics)  # the first layer is left out
    assert m["cosine"] == pytest.approx(0.3) and m["relative_distance"] == pytest.approx(2.5)
    assert ics_layer_means(ics) == {"b": pytest.approx(0.4), "c": pytest.approx(0.1)}
