"""C14 at smoke scale: plan -> every trial -> summarize; train mode decides, eval mode is a finding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnlab.errors import BnlabError
from bnlab.experiments import c06_gradient_predictiveness as c06
from bnlab.experiments import c14_landscape as c14
from experiments_smoke import run_and_check


def test_plan_pairs_bn_and_no_bn_and_shares_the_curvature_runs() -> None:
    plan = c14.plan("default", 3)
    landscape = [t for t in plan.trials if not t.name.startswith("curvature/")]
    assert len(landscape) == 6 and len({t.key() for t in landscape}) == 6
    assert all(t.fn == "bnlab.trials.surface_roughness:roughness_run" for t in landscape)
    c06_keys = {t.key() for t in c06.plan("default", 3).trials}
    assert {t.key() for t in plan.trials if t.name.startswith("curvature/")} <= c06_keys
    assert list(c14.plan("default").seeds) == c06.plan("default").config["seeds"]["vgg"]  # defaults share them too
    with pytest.raises(BnlabError, match="unknown scale"):
        c14.plan("huge")


def test_smoke_trials_and_summary() -> None:
    plan, results, result = run_and_check(c14)
    assert [r.setting for r in result.decision.primary] == list(c14.SETTINGS)
    assert "eval mode" in result.description.summary and "ruggedness" in result.description.summary
    for label in c14.NORMS:
        for s in plan.seeds:
            rec = results[f"{label}/seed={s}"]
            for mode in c14.MODES:
                m = rec["modes"][mode]
                assert len(m["loss"]) == plan.config["grid"] and len(m["line_loss"]) == plan.config["line"]
                assert math.isfinite(m["roughness_2d"]) and m["roughness_2d"] >= 0
                assert 0 <= m["ruggedness_2d"] <= 1
    assert {f.id for f in result.figures} >= {"landscape_2d", "roughness", "sharpness_end"}


def _m(rough_train, rough_eval, rugged_train, rugged_eval):
    return {"primary": {"roughness:train": rough_train, "roughness:eval": rough_eval,
                        "ruggedness:train": rugged_train, "ruggedness:eval": rugged_eval}}


UP = [0.8, 1.1, 0.9, 1.3, 0.7, 1.0, 1.2, 0.85]  # 8 seeds: roughness is rank-tested, which needs 6
DOWN = [-1.3, -1.9, -0.8, -1.5, -1.1, -1.2, -1.6, -0.9]
FLAT = [0.5, -0.4, 0.1, -0.2, 0.0, 0.3, -0.35, 0.05]


@pytest.mark.parametrize("votes, want", [
    ((UP, UP, UP, UP), "supported"),
    ((DOWN, DOWN, DOWN, DOWN), "refuted"),
    ((UP, DOWN, UP, UP), "mixed"),  # the default audit's roughness: train mode supports, eval mode refutes
    ((UP, UP, FLAT, UP), "inconclusive"),  # rough but not shown rugged: not the claim's cliffs and ravines
    (([math.nan, 1.0], UP, UP, UP), "inconclusive"),
])
def test_both_modes_and_ruggedness_vote(votes, want) -> None:
    """Both BN modes are settings (eval mode is how the visualisation tools draw a BN net), and ruggedness votes
    beside roughness: supported only when all four agree."""
    assert c14.decide(_m(*votes)).verdict == want


def test_rule_under_simulated_nulls_and_effects() -> None:
    rng = np.random.default_rng(5)

    def verdicts(means: tuple[float, ...], sims: int = 300) -> list[str]:
        return [c14.decide(_m(*(list(rng.normal(m, 0.3, 8)) for m in means))).verdict for _ in range(sims)]

    null = verdicts((0.0, 0.0, 0.0, 0.0))
    assert sum(v != "inconclusive" for v in null) <= 0.05 * 300 + 12
    assert verdicts((1.0, 1.0, 1.0, 1.0)).count("supported") >= 0.8 * 300
    assert verdicts((0.52, -1.18, 1.0, 1.0)).count("mixed") >= 0.8 * 300
    assert verdicts((1.0, 1.0, 0.0, 1.0)).count("supported") <= 0.05 * 300 + 12


def test_log_roughness_ratios() -> None:
    bn = [{"modes": {"train": {"r": 2.0}}}, {"modes": {"train": {"r": 0.0}}}]
    plain = [{"modes": {"train": {"r": 20.0}}}, {"modes": {"train": {"r": 1.0}}}]
    got = c14.log_roughness_ratios(bn, plain, "r", "train")
    assert got[0] == pytest.approx(math.log(10)) and math.isnan(got[1])


def test_a_diverged_run_is_the_worst_outcome_for_its_net() -> None:
    import copy

    from experiments_smoke import smoke_results

    plan, results = smoke_results(c14)
    s = plan.seeds[0]
    for nets, want in ((("no BN",), math.inf), (("BN",), -math.inf), (("BN", "no BN"), 0.0)):
        edited = copy.deepcopy(results)
        for net in nets:
            edited[f"{net}/seed={s}"]["diverged"] = True
        m = c14.measure(plan, edited)
        assert m["primary"]["roughness:train"][0] == want and m["primary"]["roughness:eval"][0] == want, nets
        if len(nets) == 1:
            other = "BN" if nets[0] == "no BN" else "no BN"
            u = results[f"{other}/seed={s}"]["modes"]["train"]["ruggedness_2d"]
            sign = 1 if nets[0] == "no BN" else -1
            assert abs(m["primary"]["ruggedness:train"][0] - sign * (c14.WORST_RUGGEDNESS - u)) < 1e-12
        assert math.isfinite(m["secondary"]["log(1-D roughness no BN / BN), BN mode train"]["values"][0])
