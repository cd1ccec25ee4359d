"""C07: divergence from the loss, bisection of the largest stable lr, the sign test; smoke run end to end."""

import math

import pytest

from bnlab.experiments import c07_learning_rate as c07
from bnlab.experiments import lr_grid
from bnlab.trials.lr_search import divergence, largest_stable, lr_search
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end():
    plan, result = run_smoke(c07)
    check_result(c07, plan, result)
    searches = [t for t in plan.trials if t.fn == f"{lr_grid.TRIALS}:lr_search"]
    assert len(searches) == 2 * 2 and all(t.name.startswith("curvature/") for t in plan.trials if t not in searches)
    assert result.decision.primary[0].test == "sign"
    edge = [r for r in result.decision.secondary if r.name.startswith("log(λ_max / (2/η))")]
    assert {r.name.split(", ")[1] for r in edge} == {"BN", "no BN"} and len(edge) == 3  # BN: train, eval modes
    assert all(r.vote is None for r in edge)  # reported, never voting
    assert any("Bjorck" in r.name and r.test == "tost" for r in result.decision.secondary)


def test_a_slow_but_finite_run_is_not_divergent():
    """Issue 15: 'stable' meant 'test accuracy ≥ 0.8 after 800 steps'. A run whose loss falls slowly is stable."""
    slow = [2.30 - 0.0001 * t for t in range(800)]  # still 2.22 at the end: no accuracy to speak of
    assert divergence(slow, None) is None
    assert divergence([2.3, 2.4, 2.5, 2.4], None) == "no decrease"
    assert divergence([2.3, float("nan")], 1) == "non-finite"
    assert divergence([2.3, 2400.0], 1) == "1000x initial"


@pytest.mark.parametrize("stable, want", [
    ([True, True, False, False], (1, 2)), ([True, True, True], (2, None)), ([False, True], (None, 0)),
    ([True, False, True], (0, 1)),  # not monotone: the first unstable lr bounds the search
])
def test_largest_stable_bracket(stable, want):
    assert largest_stable([0.1, 1.0, 10.0, 100.0][:len(stable)], stable) == want


def test_bisection_locates_the_edge_to_a_quarter_grid_step(monkeypatch):
    """A fake run diverges above lr 5: the grid brackets [1, 10]; two bisections give 10**0.5 ≈ 3.16 (stable),
    then 10**0.75 ≈ 5.62 (unstable): the answer is log10 = 0.5, known to 0.25 decade."""
    import bnlab.trials.lr_search as sweep

    monkeypatch.setattr(sweep, "lr_run", lambda *, lr, **kw: {"lr": lr, "divergence": None if lr <= 5 else "x"})
    out = lr_search(lrs=[0.1, 1.0, 10.0, 100.0], bisect=2)
    assert [round(r["lr"], 2) for r in out["bisection"]] == [3.16, 5.62]
    assert out["log10_largest_stable_lr"] == pytest.approx(0.5) and out["resolution_decades"] == 0.25


def test_a_zero_width_interval_never_decides():
    """Every seed at the same grid point (the old C07): the t-interval has zero width; the sign test decides only
    with enough seeds in one direction."""
    assert c07.decide({"primary": {"setting:x": [1.0] * 5}}).verdict == "inconclusive"  # 5 of 5: p = 0.0625
    assert c07.decide({"primary": {"setting:x": [1.0] * 8}}).verdict == "supported"  # 8 of 8: p = 0.0078
    assert c07.decide({"primary": {"setting:x": [-0.5] * 8}}).verdict == "refuted"
    assert c07.decide({"primary": {"setting:x": [1.0, 0.5, 0.0, 0.0, -0.25, 0.5, 0.25, 0.0]}}).verdict == \
        "inconclusive"


def test_every_scale_plans_plain_trials():
    for scale in ("smoke", "default", "paper"):
        plan = c07.plan(scale)
        assert len({t.name for t in plan.trials}) == len(plan.trials)
        assert all(math.isfinite(t.cost) for t in plan.trials)


def test_divergence_is_the_endpoints_own_worst_outcome_and_accuracy_scores_chance():
    """A net unstable at every grid lr scores one grid step below the smallest lr (never missing); the endpoint is
    discrete, so its unit is the grid's and its test the sign test; a diverged run's accuracy is chance."""
    from bnlab.experiments import c07_learning_rate as c07

    endpoint = c07.PROTOCOL.endpoint
    assert (endpoint.unit, endpoint.test) == ("decades of lr (grid)", "sign")
    assert c07.accuracy({"test_acc": float("nan"), "divergence": "non-finite"}) == 0.1
    assert c07.accuracy({"test_acc": 0.95, "divergence": "no decrease"}) == 0.1
    assert c07.accuracy({"test_acc": 0.95, "divergence": None}) == 0.95
