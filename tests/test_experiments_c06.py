from bnlab.experiments import c05_loss_smoothness as c05
from bnlab.experiments import c06_gradient_predictiveness as c06
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end_and_shared_with_c05():
    plan, result = run_smoke(c06)
    check_result(c06, plan, result)
    c05_keys = {t.key() for t in c05.plan("smoke", 2).trials}
    assert c05_keys <= {t.key() for t in plan.trials}
    # the rest are the curvature trials (bnlab.experiments.curvature, shared with C14)
    assert all(t.name.startswith("curvature/") for t in plan.trials if t.key() not in c05_keys)
    assert [r.setting for r in result.decision.primary] == ["vgg", "dln"]
    names = [r.name for r in result.decision.secondary]
    assert any(n.startswith("log(β-smoothness") for n in names) and any("λ_max" in n for n in names)
    assert [f.id for f in result.figures] == ["santurkar_fig4b", "santurkar_fig4c", "hessian_top_eigenvalue"]


def test_only_the_primary_endpoint_votes():
    """Issue 14: C06 needed all seven measures to agree; now β-smoothness and the Hessian never change the verdict."""
    up = [1.0, 1.3, 0.8, 1.1, 0.9]
    against = {"log(β-smoothness no BN / BN) [vgg]": {"values": [-3.0, -3.1, -2.9, -3.2, -3.0]}}
    decision = c06.decide({"primary": {"vgg": up, "dln": up}, "secondary": against})
    assert decision.verdict == "supported" and decision.secondary[0].effect < 0
