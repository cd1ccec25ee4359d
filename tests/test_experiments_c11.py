"""C11 gradient flow: smoke plan -> every trial -> summarize, plus the rule's pieces."""

import json
import math
from dataclasses import asdict

import pytest

from bnlab.experiments import c11_gradient_flow as c11
from bnlab.experiments.base import VERDICTS
from bnlab.workflows import gradflow
from experiments_smoke import run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c11)
    assert result.id == "C11" and result.verdict in VERDICTS and result.rule
    assert math.isfinite(result.key_number.value) and result.key_number.value > 0
    settings = result.metrics["settings"]
    assert set(settings) == {f"{a}/{r}" for a in ("relu", "tanh", "linear") for r in ("plain", "residual")}
    for entry in settings.values():
        assert entry["verdict"] in VERDICTS
        assert all(math.isfinite(g) and g > 0 for g in entry["bn_growth_per_seed"])
    for rec in (r for n, r in results.items() if n.startswith("grad/")):
        assert len(rec["weight_grad_sq"]) == plan.config["depth"] + 2  # stem + blocks + head
        assert all(math.isfinite(v) and v > 0 for v in rec["weight_grad_sq"] + rec["layer_jac_msv"])
    assert {f.id for f in result.figures} >= {"grad_profile", "growth_factors", "trainability"}
    json.dumps(asdict(result))


def test_relu_bn_gradient_explodes_at_yang_rate():
    rec = gradflow.gradient_profile(dataset="mnist5k", depth=20, width=128, activation="relu", residual=False,
                               norm="bn", batch_size=128, jacobian_probes=1, seed=0)
    assert rec["growth_factor"] == pytest.approx(c11.YANG_RELU, abs=0.08)


def test_band_verdict_and_yang_rates():
    assert c11.band_verdict(0.95, 1.05, 1.1) == "supported"
    assert c11.band_verdict(1.4, 1.5, 1.1) == "refuted"
    assert c11.band_verdict(0.5, 0.8, 1.1) == "refuted"
    assert c11.band_verdict(1.05, 1.2, 1.1) == "inconclusive"
    assert c11.band_verdict(None, None, 1.1) == "inconclusive"
    assert c11.YANG_RELU == pytest.approx(1.4669, abs=1e-4)
    assert c11.yang_linear(64) == pytest.approx(62 / 61)
    with pytest.raises(ValueError, match="batch size"):
        c11.yang_linear(3)
    with pytest.raises(ValueError, match="unknown scale"):
        c11.plan("huge", 2)


@pytest.mark.parametrize("scale, seeds", [("default", 3), ("paper", 5)])
def test_default_and_paper_plans_are_plain_data(scale, seeds):
    plan = c11.plan(scale, seeds)
    json.dumps({"config": plan.config, "trials": [dict(t.params) for t in plan.trials]})
    cfg = plan.config
    assert len(plan.trials) == seeds * (len(cfg["activations"]) * 4 + len(cfg["train_depths"]) * 3)
    if scale == "paper":
        assert cfg["depth"] >= 50 and cfg["width"] >= 256
