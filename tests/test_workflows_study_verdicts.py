"""The study's rules on simulated per-seed records: a simulated effect is supported and a null inconclusive; a net
that diverged or ended at chance makes every claim measured on trained nets inconclusive with that reason (never
refuted by it), C11 (at initialisation) stays decided; a probe left out or failing makes its claim not measured."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from bnlab.workflows.study import StudyConfig
from bnlab.workflows.study.verdicts import at_chance, claim_entries, net_problems

LAYERS = ["0", "3", "6"]
CHANCE = 0.1


def _record(seed: int, smooth: float, spread: float, acc: float | None, diverged: int | None = None,
            **extra: Any) -> dict[str, Any]:
    """One net's record: loss variation, gradient predictiveness, β-smoothness and roughness ~ exp(smooth + noise)
    (both BN modes' landscapes, as C14 votes on both)."""
    rng = random.Random(seed * 7 + int(smooth * 100) + 1)
    ag = {"step": [0, 5, 10], "loss_variation": [math.exp(smooth + rng.gauss(0, 0.05)) for _ in range(3)],
          "gradient_predictiveness": [math.exp(smooth + rng.gauss(0, 0.05)) for _ in range(3)],
          "beta_smoothness": [math.exp(smooth + rng.gauss(0, 0.05)) for _ in range(3)]}
    ics = {"step": [0, 5, 10], "layers": LAYERS,
           "cosine": [[1.0, 0.9 - smooth / 10 + rng.gauss(0, 0.01), 0.8] for _ in range(3)]}
    grid = [[math.exp(smooth) * (x * x + y * y) for x in range(5)] for y in range(5)]
    def plane() -> dict[str, Any]:  # one BN mode's landscape: roughness ~ exp(smooth), ruggedness ~ 0.3 smooth
        return {"x": [-1, -0.5, 0, 0.5, 1], "y": [-1, -0.5, 0, 0.5, 1], "loss": grid, "t": [0.0], "line_loss": [1.0],
                "roughness_2d": math.exp(smooth + rng.gauss(0, 0.05)), "roughness_1d": 1.0,
                "ruggedness_2d": 0.3 * smooth + rng.gauss(0, 0.01)}
    return {"seed": seed, "trained": True, "lr": 0.05, "diverged_at_step": diverged, "test_acc": acc,
            "train_acc": acc, "layers": LAYERS, "weight_grad_sq_init": [1.0, 1.0, 1.0],
            "gradient_spread": spread + rng.gauss(0, 0.02), "along_gradient": ag, "ics": ics,
            "landscape": {"train": plane(), "eval": plane()}, "hessian_start": {}, "hessian_end": {},
            "history": {"eval_step": [0, 10], "test_acc": [CHANCE, acc]}, "not_measured": {}, "not_selected": [],
            **extra}


def _runs(twin_smooth: float, twin_acc: float | None = 0.9, diverged: int | None = None,
          **extra: Any) -> dict[str, list[dict[str, Any]]]:
    # 8 seeds: log ratios are decided by the exact signed-rank test, which needs at least 6 to reach p < 0.05
    return {"bn": [_record(s, 0.0, 1.0, 0.9) for s in range(8)],
            "twin": [_record(s, twin_smooth, 2.0, twin_acc, diverged, **extra) for s in range(8)]}


def _verdicts(runs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in claim_entries(runs, StudyConfig(seeds=8), CHANCE)}


def test_a_simulated_effect_is_supported_and_a_null_is_not() -> None:
    effect, null = _verdicts(_runs(1.0)), _verdicts(_runs(0.0))
    assert effect["C05"]["verdict"] == effect["C14"]["verdict"] == "supported"
    assert null["C05"]["verdict"] == null["C14"]["verdict"] == "inconclusive"
    assert effect["C11"]["verdict"] == "supported" and not effect["C05"]["caveats"]


@pytest.mark.parametrize("twin_acc, diverged, words", [(0.1, None, "the twin ended at chance (test accuracy 0.10 in "
                                                        "seed 0"),
                                                       (None, 1, "the twin diverged (seed 0 at step 1")])
def test_a_net_that_did_not_train_makes_the_claims_it_touches_inconclusive(twin_acc, diverged, words) -> None:
    runs = _runs(-1.0, twin_acc, diverged)  # the interval alone would refute C05/C14 (the twin looks smoother)
    assert _verdicts(_runs(-1.0))["C05"]["verdict"] == "refuted"
    verdicts = _verdicts(runs)
    for claim in ("C03", "C05", "C06", "C14"):
        assert verdicts[claim]["verdict"] == "inconclusive", claim
        assert words in verdicts[claim]["summary"] and words in verdicts[claim]["caveats"][0]
    assert verdicts["C11"]["verdict"] == "supported" and not verdicts["C11"]["caveats"]  # measured at init
    assert net_problems(runs, CHANCE)[0].startswith(words)


def test_at_chance_only_for_a_trained_classifier_below_the_margin() -> None:
    assert at_chance({"trained": True, "test_acc": 0.18}, CHANCE)
    assert not at_chance({"trained": True, "test_acc": 0.2}, CHANCE)
    assert not at_chance({"trained": False, "test_acc": 0.1}, CHANCE)
    assert not at_chance({"trained": True, "test_acc": None}, math.nan)


def test_a_probe_left_out_or_failing_makes_its_claim_not_measured() -> None:
    failing = _verdicts(_runs(1.0, not_measured={"landscape": "RuntimeError: out of memory"}))
    assert failing["C14"]["verdict"] == "not_measured"
    assert "landscape failed on the twin, seed 0: RuntimeError: out of memory" in failing["C14"]["summary"]
    assert failing["C05"]["verdict"] == "supported"
    left_out = _verdicts(_runs(1.0, not_selected=["ics"]))
    assert left_out["C03"]["verdict"] == "not_measured" and "--probes" in left_out["C03"]["summary"]


def test_c13_when_no_net_reaches_the_target_says_so_and_what_to_change() -> None:
    runs = _runs(0.0)
    nobody = {c["id"]: c for c in claim_entries(runs, StudyConfig(seeds=4, steps=10, target_acc=0.99), CHANCE)}
    assert nobody["C13"]["verdict"] == "inconclusive"
    assert "no net reached the target test accuracy 0.99 within 10 steps" in nobody["C13"]["summary"]
    assert "lower --target-acc or train longer" in nobody["C13"]["caveats"][0]
    assert all(r["effect"] is None for r in nobody["C13"]["secondary"])  # no "44 steps" for "never"
    reached = {c["id"]: c for c in claim_entries(runs, StudyConfig(seeds=4, steps=10, target_acc=0.5), CHANCE)}
    assert not reached["C13"]["caveats"] and reached["C13"]["secondary"][0]["effect"] == 10


def test_a_negative_trace_says_why_its_log_ratio_is_missing() -> None:
    runs = _runs(1.0)
    for r in runs["bn"]:
        r["hessian_start"] = {"train": {"lambda_max": 2.0, "trace": 5.0}, "eval": {"lambda_max": 2.0, "trace": 5.0}}
    for r in runs["twin"]:
        r["hessian_start"] = {"train": {"lambda_max": 3.0, "trace": -1.0 if r["seed"] == 1 else 4.0},
                              "eval": {"lambda_max": 3.0, "trace": 4.0}}
    c06 = _verdicts(runs)["C06"]
    trace = next(r for r in c06["secondary"] if r["name"].startswith("log(Hessian trace") and "mode train" in r["name"])
    assert "the twin's trace is <= 0 in seed(s) 1: no log ratio there" in trace["note"] and trace["n_seeds"] == 7
    lam = next(r for r in c06["secondary"] if r["name"].startswith("log(Hessian lambda_max"))
    assert lam["note"] == "" and lam["effect"] == pytest.approx(math.log(1.5))


def test_a_log_ratio_is_rank_tested_so_four_seeds_cannot_decide_it() -> None:
    """The study decides as the audit does (base.UNIT_TESTS): log ratios by the exact signed-rank test, whose
    smallest two-sided p with 4 seeds is 2/16: a clear effect in 4 seeds stays inconclusive, cosines (t) do not."""
    runs = {arm: recs[:4] for arm, recs in _runs(1.0).items()}
    verdicts = {c["id"]: c for c in claim_entries(runs, StudyConfig(seeds=4), CHANCE)}
    assert verdicts["C05"]["verdict"] == "inconclusive"
    assert verdicts["C05"]["votes"][0]["test"] == "signed_rank"
    assert verdicts["C03"]["votes"][0]["test"] == "t"
