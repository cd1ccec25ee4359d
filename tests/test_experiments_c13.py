"""C13: best lr and target chosen on held-out seeds, speed plus non-inferiority; smoke run end to end."""

import math

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
    assert choice["best"] == {"none": 0, "bn": 0} and choice["target"] == pytest.approx(c13.FRACTION * 0.9)
    assert choice["no_bn_best"] == pytest.approx(0.9) and choice["horizon"] == 100
    # the scored seeds never enter: whatever they show, the choice stays


def test_restricted_time_is_exact_for_reached_and_unreached_runs():
    """A run that misses the target contributes its horizon (its restricted time), never horizon + eval_every."""
    reached, missed = _run([0.1, 0.5, 0.9, 0.9, 0.9], 0.9), _run([0.1, 0.2, 0.3, 0.5, 0.6], 0.6)
    assert lr_grid.censored_steps_to_target(reached, 0.85, 100) == (50, True)
    assert lr_grid.censored_steps_to_target(missed, 0.85, 100) == (100, False)
    assert lr_grid.censored_steps_to_target(_run([0.9] * 5, 0.9), 0.85, 100) == (1, True)  # step 0 counts as 1


def test_speed_is_tested_against_the_smallest_speed_up_of_interest():
    """A clear but small speed-up (1.2×) is refuted as a speed-up of interest; 2× is supported."""
    good = [0.0, 0.005, -0.004, 0.002, 0.001]
    spread = (0.0, 0.02, -0.02, 0.01, -0.01, 0.015, -0.015, 0.005)  # 8 seeds: a signed-rank test needs 6
    small = [math.log(1.2) + d for d in spread]
    big = [math.log(2.0) + d for d in spread]
    assert c13.decide({"primary": {"speed": small, "good_minimum": good}}).primary[0].vote == "refuted"
    assert c13.decide({"primary": {"speed": big, "good_minimum": good}}).verdict == "supported"
    assert c13.PROTOCOL.endpoint.threshold == pytest.approx(math.log(c13.MIN_SPEEDUP))


@pytest.mark.parametrize("speed, good, want", [
    ([1.0, 1.2, 0.9, 1.1, 1.0], [0.0, 0.005, -0.004, 0.002, 0.001], "supported"),
    ([1.0, 1.2, 0.9, 1.1, 1.0], [-0.05, -0.06, -0.055, -0.05, -0.045], "mixed"),  # faster, to a worse minimum
    ([1.0, 1.2, 0.9, 1.1, 1.0], [0.0, -0.03, 0.02, -0.02, 0.01], "inconclusive"),  # "good" not shown
    ([0.3, 0.5, 0.4, 0.6, 0.2], [0.0, 0.005, -0.004, 0.002, 0.001], "inconclusive"),  # faster, maybe not 1.5×
    ([-1.0, -1.2, -0.9, -1.1, -1.0], [-0.05, -0.06, -0.055, -0.05, -0.045], "refuted"),
])
def test_rule_prose_cases(speed, good, want):
    speed = [v + d for v in speed for d in (0.0, 0.01)][:8]  # 8 seeds: the signed-rank test needs 6
    assert c13.decide({"primary": {"speed": speed, "good_minimum": good}}).verdict == want


def test_a_diverged_run_is_ranked_beyond_a_run_censored_at_the_horizon():
    import copy

    from experiments_smoke import smoke_results

    plan, results = smoke_results(c13)
    scored = plan.seeds[plan.config["select"]]
    label = lr_grid.settings_of(plan.config)[0].label
    base = c13.measure(plan, results)
    assert all(math.isfinite(v) for v in base["primary"]["speed"])
    for nets, want in ((("none",), math.inf), (("bn",), -math.inf), (("bn", "none"), 0.0)):
        edited = copy.deepcopy(results)
        for net in nets:
            for grid_run in edited[f"{label}/{net}/search/seed={scored}"]["grid"]:
                grid_run["divergence"] = "non-finite"
        m = c13.measure(plan, edited)
        assert m["primary"]["speed"][0] == want, nets
        if len(nets) == 2:  # both scored chance in the final accuracy
            assert m["primary"]["good_minimum"][0] == 0.0
        else:  # the net that diverged scores chance, so it cannot come out ahead by more than the other's accuracy
            assert math.isfinite(m["primary"]["good_minimum"][0])
            good = m["primary"]["good_minimum"][0]
            assert good <= 0.9 if nets == ("bn",) else good >= -0.1
