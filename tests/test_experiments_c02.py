"""C02 affine parameters: identity recovery, smoke plan -> every trial -> summary, the rule on synthetic numbers."""

import json

from bnlab.experiments import c02_affine as c02
from bnlab.trials.affine import identity_recovery
from experiments_smoke import run_and_check


def test_identity_recovery_is_exact_to_rounding():
    errors = identity_recovery(batch=32, seed=3)["relative_error"]
    assert set(errors) == {"float64/32x8", "float64/32x4x3x3", "float32/32x8", "float32/32x4x3x3"}
    assert all(v <= 1e-14 for k, v in errors.items() if k.startswith("float64"))
    assert all(v <= 1e-6 for k, v in errors.items() if k.startswith("float32"))


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c02)
    for name, rec in results.items():
        if name.startswith("train/"):
            assert rec["steps"][0] == 0 and rec["steps"][-1] == plan.config["steps"]
            assert all(0.0 <= f <= 1.0 for f in rec["band_fraction"])
            assert len(rec["band_fraction_per_layer_final"]) == 3  # Ioffe's 3 sigmoid layers
    assert [v.name for v in result.decision.verifications] == ["identity recovery, float64",
                                                                 "identity recovery, float32"]
    assert all(v.passed for v in result.decision.verifications)
    # BN without affine at step 0 normalises to ~N(0, 1) per unit: about 68% of inputs in |x| < 1
    no_affine = [results[f"train/BN without γ, β/seed={s}"]["band_fraction"][0] for s in plan.seeds]
    assert all(abs(f - 0.683) < 0.05 for f in no_affine)


def test_rule_prose_cases():
    """RULE: accuracy with − without γ, β; t-interval above 0 supported, below refuted; identities never vote."""
    assert c02.decide({"primary": {"all": [0.02, 0.03, 0.025, 0.018]}}).verdict == "supported"
    assert c02.decide({"primary": {"all": [-0.02, -0.03, -0.025, -0.018]}}).verdict == "refuted"
    assert c02.decide({"primary": {"all": [0.01, -0.01, 0.002, -0.004]}}).verdict == "inconclusive"
    failing_identity = {"primary": {"all": [0.02, 0.03, 0.025]}, "checks": {"identity recovery, float64": [5.0]}}
    decision = c02.decide(failing_identity)
    assert decision.verdict == "supported" and not decision.verifications[0].passed


def test_default_and_paper_plans_are_plain_data():
    for scale, seeds, first in (("default", None, 0), ("paper", 5, 10)):
        plan = c02.plan(scale, seeds, first)
        json.dumps({"config": plan.config, "trials": [dict(t.params) for t in plan.trials]})
        assert plan.seeds == (tuple(range(8)) if seeds is None else tuple(range(first, first + seeds)))
        assert len({t.name for t in plan.trials}) == len(plan.trials)


def test_a_diverged_run_scores_chance_never_a_missing_seed():
    from experiments_smoke import smoke_results

    plan, results = smoke_results(c02)
    s = plan.seeds[0]
    acc = {label: results[f"train/{label}/seed={s}"]["test_acc"] for label in ("BN with γ, β", "BN without γ, β")}
    for label, want in (("BN without γ, β", acc["BN with γ, β"] - 0.1), ("BN with γ, β", 0.1 - acc["BN without γ, β"])):
        edited = json.loads(json.dumps(results))
        edited[f"train/{label}/seed={s}"].update(diverged=True, test_acc=float("nan"))
        assert abs(c02.measure(plan, edited)["primary"]["all"][0] - want) < 1e-12, label
