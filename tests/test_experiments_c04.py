"""C04: noisy BN vs BN vs no BN, the manipulation check against no BN and the noise-on-no-BN control."""

import math

import numpy as np
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
    assert [r.setting for r in result.decision.primary] == ["noisy_vs_none", "kept_share", "manipulation",
                                                            "control"]
    assert result.decision.primary[1].test == "t" and result.decision.primary[1].unit == "share of BN's advantage"
    tost = result.decision.secondary[0]
    assert tost.test == "tost" and "TOST" in tost.name
    assert "Final test accuracy, noisy BN − BN" in result.description.summary


GOOD = {"noisy_vs_none": [0.10, 0.12, 0.11, 0.13, 0.09], "kept_share": [0.95, 0.9, 1.0, 0.92, 0.97],
        "manipulation": [1.0, 1.2, 0.9, 1.1, 1.0, 1.05, 0.95, 1.15],  # signed-rank: 8 seeds
        "control": [0.2, 0.25, 0.22, 0.3, 0.21]}


def test_manipulation_check_is_against_no_bn():
    """Issue 15: noise that moves the distributions no more than a no-BN net moves on its own tests nothing, even
    when noisy BN's drift is far above BN's (the old check)."""
    metrics = {"primary": {**GOOD, "manipulation": [-0.3, -0.2, -0.4, -0.25, -0.35]},
               "secondary": {"log(activation drift noisy BN / BN)": {"values": [5.0, 5.1, 4.9, 5.2, 5.0]}}}
    assert c04_noisy.decide(metrics).verdict == "inconclusive"


def test_the_control_is_a_gate():
    """Noise that does not hurt a net without BN: the experiment did not show its noise matters, so the claim is
    inconclusive and says so (issue 25: a positive control is a gate, not a setting; it was a voting setting before,
    which made a refuted control give 'mixed')."""
    metrics = {"primary": {**GOOD, "control": [-0.01, 0.02, -0.03, 0.01, 0.0]}}
    assert c04_noisy.decide(metrics).verdict == "inconclusive"
    hurts_bn_only = {**GOOD, "control": [-0.2, -0.25, -0.22, -0.3, -0.21]}
    decision = c04_noisy.decide({"primary": hurts_bn_only})
    assert decision.verdict == "inconclusive" and "gate not passed: control" in decision.reason


@pytest.mark.parametrize("change, want", [
    ({}, "supported"),
    ({"noisy_vs_none": [-0.10, -0.12, -0.11, -0.13, -0.09]}, "mixed"),
    ({"kept_share": [0.2, 0.3, 0.25, 0.15, 0.3]}, "mixed"),  # loses most of BN's advantage: not "as good as BN"
    ({"kept_share": [0.2, 0.9, 0.6, 1.1, 0.3]}, "inconclusive"),  # too noisy to show it keeps more than half
])
def test_rule_prose_cases(change, want):
    assert c04_noisy.decide({"primary": {**GOOD, **change}}).verdict == want


def test_moment_drift_by_hand():
    series = {"unit_mean": [[0.0, 1.0], [1.0, 1.0], [1.0, 3.0]], "unit_std": [[1.0, 1.0], [1.0, 2.0], [2.0, 2.0]]}
    # steps: t0->t1: |1|+0, 0+|1|; t1->t2: 0+|1|, |2|+0 -> (1 + 1 + 1 + 2) / 4
    assert moment_drift(series) == pytest.approx(1.25)


def test_kept_share_by_hand():
    # seed 0: BN +0.10 over no BN, noisy BN +0.09 -> keeps 0.9; seed 1: BN no better than no BN -> no share
    shares = c04_noisy.kept_shares([0.79, 0.70], [0.80, 0.70], [0.70, 0.70])
    assert shares[0] == pytest.approx(0.9) and math.isnan(shares[1])
    assert c04_noisy.kept_shares([0.5], [0.6], [None]) != c04_noisy.kept_shares([0.5], [0.6], [None])  # NaN


def _simulated(kept: float, sd: float, sims: int = 400, n: int = 5) -> dict[str, int]:
    """Verdicts of `decide` over simulated audits: the kept share ~ N(kept, sd) per seed, the other components
    clearly supported (their effect is not what is tested here)."""
    rng = np.random.default_rng(1)
    counts: dict[str, int] = {}
    for _ in range(sims):
        primary = {**GOOD, "kept_share": list(rng.normal(kept, sd, n))}
        verdict = c04_noisy.decide({"primary": primary}).verdict
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def test_relative_margin_under_simulated_null_and_effects():
    """At the null (noisy BN keeps exactly half of BN's advantage) the kept share decides rarely; at the default
    audit's effect (BN +0.129 over no BN, noisy BN −0.011 of BN, per-seed sd ≈ 0.14 of the share) it shows that
    noisy BN keeps more than half; a noisy BN that keeps a fifth is refuted on this component (-> mixed)."""
    null = _simulated(0.5, 0.14)
    assert null.get("supported", 0) + null.get("mixed", 0) <= 0.05 * 400 + 3 * math.sqrt(0.05 * 0.95 * 400)
    assert _simulated(0.91, 0.14).get("supported", 0) >= 0.8 * 400
    assert _simulated(0.2, 0.14).get("mixed", 0) >= 0.8 * 400


def test_a_diverged_run_is_the_worst_outcome_for_its_net():
    """A diverged run scores chance in every accuracy component and ±inf in the manipulation check's drift ratio."""
    import copy

    from experiments_smoke import smoke_results

    plan, results = smoke_results(c04_noisy)
    s = plan.seeds[0]
    base = c04_noisy.measure(plan, results)
    for net, want in (("none", math.inf), ("noisy_bn", -math.inf)):
        edited = copy.deepcopy(results)
        edited[f"vgg/{net}/seed={s}"]["diverged_at_step"] = 3
        m = c04_noisy.measure(plan, edited)
        assert m["primary"]["manipulation"][0] == want
        assert m["mean_test_acc"][net][0] == 0.1 and m["final_test_acc"][net][0] == 0.1
        sign = 1 if net == "none" else -1  # noisy BN − no BN: the net that diverged loses
        assert sign * (m["primary"]["noisy_vs_none"][0] - base["primary"]["noisy_vs_none"][0]) >= 0
    edited = copy.deepcopy(results)
    for net in ("none", "noisy_bn"):
        edited[f"vgg/{net}/seed={s}"]["diverged_at_step"] = 3
    assert c04_noisy.measure(plan, edited)["primary"]["manipulation"][0] == 0.0
