"""C13: best lr and target chosen on held-out seeds, speed plus non-inferiority; smoke run end to end."""

import pytest

from bnlab.experiments import c07_learning_rate as c07
from bnlab.experiments import c13_convergence as c13
from bnlab.experiments import lr_grid
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end_shares_c07s_trials():
    plan, result = run_smoke(c13)
    check_result(c13, plan, result)
    searches = {t.key() for t in c07.plan("smoke", 2).trials if t.fn == f"{lr_grid.TRIALS}:lr_search"}
    assert {t.key() for t in plan.trials} == searches  # C07's lr searches (its curvature runs are C06's)
    choice = next(iter(result.metrics["choice"].values()))
    assert set(choice["held_out_seeds"]).isdisjoint(choice["scored_seeds"]) and choice["scored_seeds"]


def _run(curve: list[float], final: float) -> dict:
    return {"eval_step": [0, 25, 50, 75, 100], "test_acc_curve": curve, "stopped_at_step": None,
            "divergence": None, "test_acc": final}


def test_the_best_lr_is_chosen_on_held_out_seeds_only():
    """Issue 15: the best lr used to be chosen on the seeds it was scored on."""
    s = lr_grid.LrSetting(label="x", lrs=(0.1, 1.0), steps=100, eval_every=25)
    fast, slow = _run([0.1, 0.5, 0.9, 0.9, 0.9], 0.9), _run([0.1, 0.2, 0.3, 0.5, 0.9], 0.9)
    held_out = [{"grid": [fast, slow]}]  # lr 0.1 is fast on the held-out seed
    choice = c13.choose(s, held_out, held_out)
    assert choice["best"] == {"none": 0, "bn": 0} and choice["target"] == pytest.approx(0.9)
    # the scored seeds never enter: whatever they show, the choice stays


@pytest.mark.parametrize("speed, good, want", [
    ([1.0, 1.2, 0.9, 1.1, 1.0], [0.0, 0.005, -0.004, 0.002, 0.001], "supported"),
    ([1.0, 1.2, 0.9, 1.1, 1.0], [-0.05, -0.06, -0.055, -0.05, -0.045], "mixed"),  # faster, to a worse minimum
    ([1.0, 1.2, 0.9, 1.1, 1.0], [0.0, -0.03, 0.02, -0.02, 0.01], "inconclusive"),  # "good" not shown
    ([-1.0, -1.2, -0.9, -1.1, -1.0], [-0.05, -0.06, -0.055, -0.05, -0.045], "refuted"),
])
def test_rule_prose_cases(speed, good, want):
    assert c13.decide({"primary": {"speed": speed, "good_minimum": good}}).verdict == want
