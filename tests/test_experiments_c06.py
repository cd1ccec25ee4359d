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
    assert set(result.metrics["verdicts"]) == {"gradient_predictiveness/vgg", "gradient_predictiveness/dln",
                                               "beta_smoothness/vgg", "beta_smoothness/dln",
                                               "hessian_top/train", "hessian_top/eval",
                                               "hessian_normalised/train"}
    assert [f.id for f in result.figures] == ["santurkar_fig4b", "santurkar_fig4c", "hessian_top_eigenvalue"]


def test_sections_extend_the_verdict(monkeypatch):
    plan, base = run_smoke(c06)

    def extra(plan, results):
        return c06.Section(name="extra", rule="always refuted", verdicts={"extra": "refuted"}, summary="extra.")

    monkeypatch.setattr(c06, "SECTIONS", [*c06.SECTIONS, extra])
    _, result = run_smoke(c06)
    assert result.metrics["verdicts"]["extra"] == "refuted" and "[extra] always refuted" in result.rule
    if base.verdict in ("supported", "mixed"):
        assert result.verdict == "mixed"
