"""C12 regularisation: smoke plan end to end, the noise-free control, precise statistics, the rule's cases."""

import json
import math

import pytest
import torch

from bnlab.errors import BnlabError
from bnlab.experiments import c12_regularisation as c12
from bnlab.trials.regularisation import corrupt_labels, regularisation_run
from experiments_smoke import run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c12)
    assert [r.setting for r in result.decision.primary] == ["regularisation", "dropout control", "batch noise"]
    assert c12.REFERENCE in result.metrics["per_variant"]
    for rec in results.values():
        assert not rec["diverged"] and 0 <= rec["test_acc"] <= 1
        assert rec["loss_gap"] == pytest.approx(rec["test_loss"] - rec["train_loss"])
    assert {s.name for s in result.decision.secondary} >= {"test-loss gap, no BN − BN", c12.GHOST_SLOPE}
    assert all(0 <= rec["noisy_fit"] <= 1 for rec in results.values())  # the smoke scale corrupts labels too


def test_reference_control_trains_and_is_evaluated_with_its_statistics():
    kw = dict(dataset="digits", model="mlp", activation="relu", train_size=200, norm="bn", norm_kwargs={},
              dropout=0.0, steps=60, batch_size=20, lr=0.05, momentum=0.9, seed=0)
    ref = regularisation_run(reference_batch=True, **kw)
    bn = regularisation_run(reference_batch=False, **kw)
    assert ref["train_acc"] > 0.8 and bn["train_acc"] > 0.8  # the control learns: the gradient path is intact
    assert ref != bn


def test_ghost_batch_nets_use_precise_statistics():
    """Running averages from 5-example ghost batches would bias the evaluation; with precise statistics a ghost net
    is evaluated as well as plain BN on the data it fits (train accuracy near its training fit)."""
    kw = dict(dataset="digits", model="mlp", activation="relu", train_size=200, dropout=0.0, steps=200,
              batch_size=20, lr=0.05, momentum=0.9, seed=0, reference_batch=False, norm="bn")
    ghost = regularisation_run(norm_kwargs={"ghost_batch_size": 4}, **kw)
    assert ghost["train_acc"] > 0.95


def _m(reg, noise, control=None):
    control = [0.02, 0.03, 0.025, 0.02, 0.035, 0.03, 0.028, 0.022] if control is None else control
    return {"primary": {"regularisation": reg, "dropout control": control, "batch noise": noise}}


POS = [0.03, 0.025, 0.04, 0.02, 0.035, 0.03, 0.028, 0.033]
NEG = [-v for v in POS]
NOISE = [0.01, -0.02, 0.015, -0.005, 0.0, 0.02, -0.01, 0.004]


def test_rule_cases():
    assert c12.decide(_m(POS, POS)).verdict == "supported"
    assert c12.decide(_m(POS, NEG)).verdict == "mixed"  # BN regularises, but not through its noise
    assert c12.decide(_m(POS, NOISE)).verdict == "inconclusive"
    assert c12.decide(_m(NEG, NEG)).verdict == "refuted"
    assert c12.decide(_m([math.nan, 0.02], POS)).verdict == "inconclusive"


def test_the_mechanism_is_read_only_when_dropout_regularises():
    """The positive control gates the batch-noise vote: where Dropout shows no effect, the mechanism is not read,
    whatever its own test says; the control itself never votes on the claim."""
    gated = c12.decide(_m(POS, NEG, control=NOISE))
    by = {r.setting: r for r in gated.primary}
    assert by["batch noise"].vote == "inconclusive" and "positive control" in by["batch noise"].note
    assert gated.verdict == "inconclusive"
    assert c12.decide(_m(POS, POS, control=NEG)).verdict == "inconclusive"
    assert c12.decide(_m(NEG, POS, control=POS)).verdict == "mixed"  # the control does not vote itself


def test_the_mechanism_needs_half_of_bns_effect_back():
    """Removing the batch noise must bring back at least half of BN's effect: a quarter is refuted even though it
    is positive."""
    effect = [0.04, 0.045, 0.035, 0.04, 0.042, 0.038, 0.04, 0.041]
    quarter = [e / 4 + d for e, d in zip(effect, [0.001, -0.001, 0.0, 0.002, -0.002, 0.001, 0.0, -0.001])]
    three_quarters = [3 * e / 4 + d for e, d in zip(effect, [0.001, -0.001, 0.0, 0.002, -0.002, 0.001, 0.0, -0.001])]
    per_seed = [c12._mechanism(b, e) for b, e in zip(quarter, effect)]
    assert c12.decide(_m(effect, per_seed)).verdict == "mixed"
    per_seed = [c12._mechanism(b, e) for b, e in zip(three_quarters, effect)]
    assert c12.decide(_m(effect, per_seed)).verdict == "supported"
    assert math.isnan(c12._mechanism(math.nan, 0.1))


def test_the_ghost_batch_slope_reads_the_right_way_round():
    """Smaller normalisation batches (more noise) with larger gaps: the reported slope is > 0 = more overfitting."""
    sizes, gaps = [5, 10, 25, 50], [0.14, 0.13, 0.12, 0.11]  # more noise -> more overfitting
    assert -c12.ghost_slope(sizes, gaps) > 0
    assert "> 0 = more noise, more overfitting" in c12.GHOST_SLOPE


def test_labels_are_corrupted_reproducibly_and_never_to_the_true_class():
    y = torch.arange(200) % 10
    noisy, mask = corrupt_labels(y, 0.2, 10, seed=3)
    again, _ = corrupt_labels(y, 0.2, 10, seed=3)
    assert torch.equal(noisy, again) and int(mask.sum()) == 40
    assert bool((noisy[mask] != y[mask]).all()) and torch.equal(noisy[~mask], y[~mask])
    assert int(corrupt_labels(y, 0.0, 10, seed=3)[1].sum()) == 0


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


def test_a_diverged_run_counts_as_the_worst_gap():
    """A diverged net's gap is 1 − chance (every label fitted, the test set at chance): its chance-level train and
    test accuracies would give a gap of ~0 and reward divergence as regularisation."""
    import copy

    from experiments_smoke import smoke_results

    plan, results = smoke_results(c12)
    s = plan.seeds[0]
    gap = {lab: results[f"{lab}/seed={s}"]["gap"] for lab in ("no BN", "BN")}
    for label, want in (("no BN", c12.WORST_GAP - gap["BN"]), ("BN", gap["no BN"] - c12.WORST_GAP)):
        edited = copy.deepcopy(results)
        edited[f"{label}/seed={s}"].update(diverged=True, gap=float("nan"))
        assert abs(c12.measure(plan, edited)["primary"]["regularisation"][0] - want) < 1e-12, label
    assert c12.WORST_GAP == 0.9
