"""C14 at smoke scale: plan -> every trial -> summarize; train mode decides, eval mode is a finding."""

from __future__ import annotations

import math

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
    assert [r.setting for r in result.decision.primary] == ["train"]
    finding = result.decision.secondary[0]
    assert finding.name.endswith("BN mode eval") and finding.note.startswith("finding")
    assert "eval mode" in result.description.summary and finding.effect is not None
    for label in c14.NORMS:
        for s in plan.seeds:
            rec = results[f"{label}/seed={s}"]
            for mode in c14.MODES:
                m = rec["modes"][mode]
                assert len(m["loss"]) == plan.config["grid"] and len(m["line_loss"]) == plan.config["line"]
                assert math.isfinite(m["roughness_2d"]) and m["roughness_2d"] >= 0
    assert {f.id for f in result.figures} >= {"landscape_2d", "roughness", "sharpness_end"}


def _m(train, evalmode):
    return {"primary": {"train": train},
            "secondary": {"log(2-D roughness no BN / BN), BN mode eval": {"values": evalmode, "note": "finding"}}}


def test_eval_mode_reversal_is_a_finding_not_a_buried_vote() -> None:
    """The old rule combined both modes: train supported + eval refuted gave 'mixed'/'inconclusive'. Now train mode
    decides and the eval-mode reversal is reported with its CI."""
    train = [0.8, 1.1, 0.9, 1.3, 0.7]
    rougher_in_eval = [-1.3, -1.9, -0.8, -1.5, -1.1]
    d = c14.decide(_m(train, rougher_in_eval))
    assert d.verdict == "supported"
    assert d.secondary[0].ci_high < 0 and d.secondary[0].vote is None
    assert c14.decide(_m([-v for v in train], train)).verdict == "refuted"
    assert c14.decide(_m([0.5, -0.4, 0.1, -0.2, 0.0], train)).verdict == "inconclusive"
    assert c14.decide(_m([math.nan, 1.0], train)).verdict == "inconclusive"


def test_log_roughness_ratios() -> None:
    bn = [{"modes": {"train": {"r": 2.0}}}, {"modes": {"train": {"r": 0.0}}}]
    plain = [{"modes": {"train": {"r": 20.0}}}, {"modes": {"train": {"r": 1.0}}}]
    got = c14.log_roughness_ratios(bn, plain, "r", "train")
    assert got[0] == pytest.approx(math.log(10)) and math.isnan(got[1])
