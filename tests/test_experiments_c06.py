import numpy as np

from bnlab.experiments import c05_loss_smoothness as c05
from bnlab.experiments import c06_gradient_predictiveness as c06
from experiments_smoke import check_result, run_smoke, smoke_results


def test_smoke_end_to_end_and_shared_with_c05():
    plan, result = run_smoke(c06)
    check_result(c06, plan, result)
    c05_keys = {t.key() for t in c05.plan("smoke", 2).trials}
    assert c05_keys <= {t.key() for t in plan.trials}
    # the rest are the curvature trials (bnlab.experiments.curvature, shared with C14)
    assert all(t.name.startswith("curvature/") for t in plan.trials if t.key() not in c05_keys)
    assert [r.setting for r in result.decision.primary] == ["vgg", "dln"]
    names = [r.name for r in result.decision.secondary]
    assert any(n.startswith("log(gradient predictiveness") for n in names) and any("λ_max" in n for n in names)
    # the vote is the claim's own quantity, the effective β (Fig. 4c); the band of Fig. 4b is beside it
    _, results = smoke_results(c06)
    beta = c05.log_means(plan, results, "beta_smoothness")
    assert result.metrics["primary"]["vgg"] == c05.effects(beta, "vgg", "bn")
    assert "effective β-smoothness" in result.description.summary and "×100" in result.description.summary
    assert [f.id for f in result.figures] == ["santurkar_fig4b", "santurkar_fig4c", "hessian_top_eigenvalue"]


def test_only_the_primary_endpoint_votes():
    """The gradient-predictiveness band and the Hessian never change the verdict."""
    up = [1.0, 1.3, 0.8, 1.1, 0.9, 1.2, 0.7, 1.05]  # 8 seeds: the signed-rank test needs 6 to reach p < 0.05
    against = {"log(gradient predictiveness no BN / BN) [vgg]": {"values": [-3.0, -3.1, -2.9, -3.2, -3.0]}}
    decision = c06.decide({"primary": {"vgg": up, "dln": up}, "secondary": against})
    assert decision.verdict == "supported" and decision.secondary[0].effect < 0


def test_beta_rule_under_simulated_null_and_effect():
    """β's log ratio at 0 in both nets: rarely decided; at a clear effect in both nets (×1.65, log 0.5, per-seed
    sd 0.2, 8 seeds): supported in most simulated audits; smaller β without BN in both nets: refuted."""
    rng = np.random.default_rng(3)

    def verdicts(mean: float, sd: float, sims: int = 300) -> list[str]:
        return [c06.decide({"primary": {f: list(rng.normal(mean, sd, 8)) for f in ("vgg", "dln")}}).verdict
                for _ in range(sims)]

    null = verdicts(0.0, 0.2)
    assert sum(v in ("supported", "refuted") for v in null) <= 0.05 * 300 + 12
    assert verdicts(0.5, 0.2).count("supported") >= 0.8 * 300
    assert verdicts(-0.5, 0.2).count("refuted") >= 0.8 * 300


def test_a_diverged_run_is_the_worst_outcome_as_in_c05():
    import copy
    import math

    plan, results = smoke_results(c06)
    s = plan.config["seeds"]["dln"][0]
    for nets, want in ((("none",), math.inf), (("bn",), -math.inf), (("bn", "none"), 0.0)):
        edited = copy.deepcopy(results)
        for net in nets:
            edited[f"dln/{net}/seed={s}"]["diverged_at_step"] = 7
        m = c06.measure(plan, edited)
        assert m["primary"]["dln"][0] == want, nets
        assert math.isfinite(m["secondary"]["log(gradient predictiveness no BN / BN) [dln]"]["values"][0])
