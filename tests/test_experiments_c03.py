"""C03: per-conv-layer ICS votes and Ioffe's drift, smoke run end to end, the rule on synthetic numbers."""

import math

import pytest

from bnlab.experiments import c03_ics
from bnlab.experiments.probed_training import (
    ics_layer_means,
    ics_means,
    percentile_drift,
    relative_percentile_drift,
)
from experiments_smoke import check_result, run_smoke, smoke_results


def test_smoke_end_to_end():
    plan, result = run_smoke(c03_ics)
    check_result(c03_ics, plan, result)
    assert len(plan.trials) == 3 * 2 * 2  # (mlp, vgg, dln) x (bn, none) x 2 seeds
    settings = [r.setting for r in result.decision.primary]
    assert settings == ["conv:features.2.conv", "conv:features.4.conv", "ioffe"]  # the narrow VGG's layers 2, 3
    assert any("classifier layer head" in r.name for r in result.decision.secondary)
    assert any(r.name.startswith("Ioffe MLP: log(raw percentile drift") for r in result.decision.secondary)
    assert "depends on the definition of ICS" in result.description.summary
    assert "Deep linear net" in result.description.summary
    # the Ioffe vote is the scale-free drift
    drift = result.metrics["percentile_drift"]
    assert result.metrics["primary"]["ioffe"] == pytest.approx(
        [math.log(a / b) for a, b in zip(drift["none"], drift["bn"])])


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
    ioffe = [0.5, 0.6, 0.4, 0.55, 0.45, 0.5, 0.65, 0.52]  # a log ratio, rank-tested: 8 seeds
    metrics = {"primary": {f"conv:{k}": v for k, v in per_layer.items()} | {"ioffe": ioffe}}
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
    ioffe = (ioffe * 3)[:8]  # a log ratio: the exact signed-rank test needs at least 6 seeds to reach p < 0.05
    metrics = {"primary": {"conv:a": conv2, "conv:b": conv4, "ioffe": ioffe}}
    assert c03_ics.decide(metrics).verdict == want


def test_relative_percentile_drift_by_hand():
    # unit 0: percentiles (15, 85) at three times: (0, 2), (1, 3), (0, 4): spreads 2, 2, 4 -> mean 8/3;
    #   ranges 1 and 2 -> 3/8 and 6/8. unit 1: (2, 3) twice, (2, 3): spread 1, ranges 0 -> 0, 0
    series = {"unit_percentiles": [[[0.0, 2.0], [2.0, 3.0]], [[1.0, 3.0], [2.0, 3.0]], [[0.0, 4.0], [2.0, 3.0]]]}
    assert relative_percentile_drift(series) == pytest.approx((3 / 8 + 6 / 8 + 0 + 0) / 4)
    # scale-free: the same distributions in units ten times larger drift the same, shifted ones too
    scaled = {"unit_percentiles": [[[10 * v + 5 for v in u] for u in t] for t in series["unit_percentiles"]]}
    assert relative_percentile_drift(scaled) == pytest.approx(relative_percentile_drift(series))
    assert percentile_drift(scaled) == pytest.approx(10 * percentile_drift(series))  # the raw one is not
    assert math.isnan(relative_percentile_drift({"unit_percentiles": [[[1.0, 1.0]], [[2.0, 2.0]]]}))  # no spread
    assert math.isnan(relative_percentile_drift({"unit_percentiles": [[[0.0, 1.0]]]}))  # one probe time


def test_drift_and_ics_summaries_by_hand():
    series = {"unit_percentiles": [[[0.0, 1.0], [2.0, 2.0]], [[1.0, 3.0], [2.0, 5.0]], [[-1.0, 2.0], [2.0, 4.0]]]}
    # ranges: unit0 p0: 2, unit0 p1: 2, unit1 p0: 0, unit1 p1: 3 -> mean 7/4
    assert percentile_drift(series) == pytest.approx(1.75)
    ics = {"layers": ["a", "b", "c"], "cosine": [[1.0, 0.5, 0.1], [1.0, 0.3, None]],
           "relative_distance": [[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]], "distance": [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]}
    m = ics_means(ics)  # the first layer is left out
    assert m["cosine"] == pytest.approx(0.3) and m["relative_distance"] == pytest.approx(2.5)
    assert ics_layer_means(ics) == {"b": pytest.approx(0.4), "c": pytest.approx(0.1)}


def test_a_diverged_run_does_not_shrink_the_fig3_bands():
    """Issue 26: in the default audit one no-BN deep linear net (seed 6) diverged at step 3, so its ICS series
    held the step-0 probe alone, and the band over seeds (cut to the shortest curve) drew every no-BN seed as one
    point. The diverged run is left out of the band and the caption says so; distances stay > 0 on the log axis."""
    plan, results = smoke_results(c03_ics)
    seed = plan.config["seeds"]["dln"][-1]
    run = results[f"dln/none/seed={seed}"]
    full = len(run["ics"]["step"])
    run["diverged_at_step"] = 3
    run["ics"] = {k: (v[:1] if k != "layers" else v) for k, v in run["ics"].items()}
    metrics = c03_ics.measure(plan, results)
    fig = next(f for f in c03_ics.figures(plan, results, metrics) if f.id == "santurkar_fig3_dln")
    for panel in fig.data["panels"]:
        assert all(len(s["x"]) == full for s in panel["series"])
    assert f"no BN: seed {seed} diverged at step 3 and is left out of the band" in fig.caption
    distance = fig.data["panels"][0]
    assert distance["yscale"] == "log" and all(v is None or v > 0 for s in distance["series"] for v in s["y"])


def test_a_diverged_run_is_the_worst_outcome_for_its_net():
    """Ioffe's drift ratio: ±inf for the net that diverged (a tie when both did); a conv layer's cosine: −1."""
    import copy

    plan, results = smoke_results(c03_ics)
    mlp_seed, vgg_seed = plan.config["seeds"]["mlp"][0], plan.config["seeds"]["vgg"][0]
    for nets, want in ((("none",), math.inf), (("bn",), -math.inf), (("bn", "none"), 0.0)):
        edited = copy.deepcopy(results)
        for net in nets:
            edited[f"mlp/{net}/seed={mlp_seed}"]["diverged_at_step"] = 3
        assert c03_ics.measure(plan, edited)["primary"]["ioffe"][0] == want, nets
    base = c03_ics.measure(plan, results)
    edited = copy.deepcopy(results)
    edited[f"vgg/none/seed={vgg_seed}"]["diverged_at_step"] = 3
    primary = c03_ics.measure(plan, edited)["primary"]
    conv = [k for k in primary if k.startswith("conv:")]
    assert conv and all(math.isfinite(primary[k][0]) for k in conv)  # t-tested: never ±inf
    bn_cos = [base["vgg_cosine"]["bn"][0][base["vgg_layers"].index(k.removeprefix("conv:"))] for k in conv]
    assert all(abs(primary[k][0] - (c + 1.0)) < 1e-12 for k, c in zip(conv, bn_cos))  # BN's cosine − (−1)
