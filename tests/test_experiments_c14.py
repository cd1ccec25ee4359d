"""C14 at smoke scale: plan -> every trial -> summarize; structure, finiteness, the rule's arithmetic."""

from __future__ import annotations

import math

import pytest

from bnlab.errors import BnlabError
from bnlab.experiments import c14_landscape as c14
from bnlab.experiments.base import VERDICTS, ClaimResult
from bnlab.sweeps.trial import execute_trial


@pytest.fixture(scope="module")
def smoke() -> tuple:
    plan = c14.plan("smoke", 2)
    results = {t.name: execute_trial(t) for t in plan.trials}
    return plan, results


def test_plan_pairs_bn_and_no_bn_with_the_same_budget() -> None:
    plan = c14.plan("default", 3)
    landscape = [t for t in plan.trials if not t.name.startswith("curvature/")]
    assert len(landscape) == 6 and len({t.key() for t in landscape}) == 6
    # the Hessian sharpness trials are C06's (bnlab.experiments.curvature), run once by the audit
    from bnlab.experiments import c06_gradient_predictiveness as c06

    c06_keys = {t.key() for t in c06.plan("default", 3).trials}
    assert {t.key() for t in plan.trials if t.name.startswith("curvature/")} <= c06_keys
    by_name = {t.name: dict(t.params) for t in landscape}
    for s in range(3):
        bn, plain = by_name[f"BN/seed={s}"], by_name[f"no BN/seed={s}"]
        assert (bn["norm"], plain["norm"]) == ("bn", "none")
        assert {k: v for k, v in bn.items() if k != "norm"} == {k: v for k, v in plain.items() if k != "norm"}
    with pytest.raises(BnlabError, match="scale"):
        c14.plan("huge", 2)


def test_smoke_trials_and_summary(smoke) -> None:
    plan, results = smoke
    for name, r in results.items():
        if name.startswith("curvature/"):  # tested in tests/test_experiments_curvature.py
            continue
        assert set(r["modes"]) == {"train", "eval"}, name
        for m in r["modes"].values():
            n = len(m["x"])
            assert n % 2 == 1 and m["x"][n // 2] == 0.0 and len(m["loss"]) == len(m["y"])
            assert all(math.isfinite(v) for row in m["loss"] for v in row)
            assert m["roughness_2d"] >= 0 and math.isfinite(m["roughness_1d"])
    assert results["no BN/seed=0"]["modes"]["eval"] == results["no BN/seed=0"]["modes"]["train"]
    res = c14.summarize(plan, results)
    assert isinstance(res, ClaimResult) and res.id == "C14" and res.verdict in VERDICTS
    assert res.rule and res.key_number is not None and math.isfinite(res.key_number.value)
    assert {f.id for f in res.figures} == {"landscape_2d", "landscape_3d", "landscape_1d", "roughness",
                                           "sharpness_end", "spectral_density"}
    assert set(res.metrics["sharpness"]["verdicts"]) == {"sharpness_top/train", "sharpness_top/eval",
                                                         "sharpness_normalised/train"}
    contours = next(f for f in res.figures if f.kind == "contours")
    shapes = {(len(p["y"]), len(p["x"]), len(p["z"])) for p in contours.data["panels"]}
    assert len(shapes) == 1  # identical axes across panels


def test_rule_arithmetic(smoke) -> None:
    plan, results = smoke
    res = c14.summarize(plan, results)
    eff = res.metrics["effects"]["roughness_2d_train"]
    want = [math.log(results[f"no BN/seed={s}"]["modes"]["train"]["roughness_2d"]
                     / results[f"BN/seed={s}"]["modes"]["train"]["roughness_2d"]) for s in plan.seeds]
    assert eff["values"] == pytest.approx(want)
    assert res.key_number.value == pytest.approx(sum(want) / len(want))
    # a made-up outcome where no BN is 10x rougher in both modes for every seed must be "supported"
    fake = {}
    for name, r in results.items():
        if name.startswith("curvature/"):  # sharpness is reported, not voted: left as measured
            fake[name] = r
            continue
        scale = 10.0 if name.startswith("no BN") else 1.0
        fake[name] = {**r, "modes": {m: {**v, "roughness_2d": scale * (1 + 0.01 * len(name))}
                                     for m, v in r["modes"].items()}}
    assert c14.summarize(plan, fake).verdict == "supported"
