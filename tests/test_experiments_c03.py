import pytest

from bnlab.experiments import c03_ics
from bnlab.experiments.probed_training import ics_means, percentile_drift
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end():
    plan, result = run_smoke(c03_ics)
    check_result(c03_ics, plan, result)
    assert len(plan.trials) == 3 * 2 * 2  # (mlp, vgg, dln) x (bn, none) x 2 seeds
    assert set(result.metrics["verdicts"]) == {"distributional", "gradient", "overall"}
    assert result.metrics["verdicts"]["overall"] == result.verdict
    vgg = result.metrics["gradient"]["vgg"]["mean_cosine"]
    assert all(-1 <= c <= 1 for n in ("bn", "none") for c in vgg[n])


@pytest.mark.parametrize("dist, grad, want", [
    ("supported", "supported", "supported"), ("refuted", "refuted", "refuted"),
    ("supported", "refuted", "mixed"), ("supported", "inconclusive", "mixed"), ("refuted", "supported", "mixed"),
    ("refuted", "inconclusive", "inconclusive"), ("inconclusive", "mixed", "mixed"),
])
def test_overall_rule(dist, grad, want):
    assert c03_ics.overall_verdict(dist, grad) == want


def test_drift_and_ics_summaries_by_hand():
    series = {"unit_percentiles": [[[0.0, 1.0], [2.0, 2.0]], [[1.0, 3.0], [2.0, 5.0]], [[-1.0, 2.0], [2.0, 4.0]]]}
    # ranges: unit0 p0: 2, unit0 p1: 2, unit1 p0: 0, unit1 p1: 3 -> mean 7/4
    assert percentile_drift(series) == pytest.approx(1.75)
    ics = {"cosine": [[1.0, 0.5, 0.1], [1.0, 0.3, None]], "relative_distance": [[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]],
           "distance": [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]}
    m = ics_means(ics)  # the first layer is left out
    assert m["cosine"] == pytest.approx(0.3) and m["relative_distance"] == pytest.approx(2.5)
