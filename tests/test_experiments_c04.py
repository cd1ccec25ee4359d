import pytest

from bnlab.experiments import c04_noisy
from bnlab.experiments.probed_training import moment_drift
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end():
    plan, result = run_smoke(c04_noisy)
    check_result(c04_noisy, plan, result)
    assert {t.params["config"]["norm"] for t in plan.trials} == set(c04_noisy.NORMS)
    drift = result.metrics["activation_drift"]
    # the injected noise moves the pre-activation distributions far more than BN's (β, γ) do
    assert min(drift["noisy_bn"]) > max(drift["bn"])
    assert set(result.metrics["verdicts"]) == {"noisy_beats_none", "noisy_as_good_as_bn", "noise_moves_distributions"}


def test_moment_drift_by_hand():
    series = {"unit_mean": [[0.0, 1.0], [1.0, 1.0], [1.0, 3.0]], "unit_std": [[1.0, 1.0], [1.0, 2.0], [2.0, 2.0]]}
    # steps: t0->t1: |1|+0, 0+|1|; t1->t2: 0+|1|, |2|+0 -> (1 + 1 + 1 + 2) / 4
    assert moment_drift(series) == pytest.approx(1.25)
