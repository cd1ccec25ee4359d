"""A diverged run or probe is the worst outcome for the net that diverged, never a missing seed (issue 25, item 3):
the helpers, and every claim's vote moved by divergence the right way."""

from __future__ import annotations

import math

import pytest

from bnlab.experiments import outcomes
from bnlab.experiments.base import TESTS
from bnlab.experiments.registry import load_experiment

INF = math.inf


def test_paired_worst_ranks_the_failed_net_last():
    assert outcomes.paired_worst(0.3, False, False) == 0.3
    assert outcomes.paired_worst(0.3, False, True) == INF  # only the no-BN net failed: the claim's side
    assert outcomes.paired_worst(0.3, True, False) == -INF
    assert outcomes.paired_worst(math.nan, True, True) == 0.0  # both: a tie
    assert math.isnan(outcomes.paired_worst(None, False, False))  # missing for another reason: stays missing
    assert outcomes.paired_worst_values([1.0, 2.0, 3.0], [False, True, True], [True, False, True]) == [INF, -INF, 0.0]
    with pytest.raises(ValueError):
        outcomes.paired_worst_values([1.0], [False, False], [False])


def test_single_worst_lies_on_the_documented_side():
    assert outcomes.single_worst(0.1, False) == 0.1
    assert outcomes.single_worst(0.1, True) == INF and outcomes.single_worst(None, True, -1.0) == -INF
    with pytest.raises(ValueError):
        outcomes.single_worst(0.1, True, 0.5)


def test_failed_and_scored():
    assert not outcomes.failed(False, 1.0, 2.0)
    assert outcomes.failed(True, 1.0) and outcomes.failed(False, None) and outcomes.failed(False, INF)
    assert outcomes.failed(False, math.nan) and not outcomes.failed(False, 0.0)
    assert outcomes.failed(False, 0.0, positive=True) and outcomes.failed(False, -1.0, positive=True)
    assert outcomes.any_failed([1.0, None]) and not outcomes.any_failed([1.0, 2.0])
    assert outcomes.scored(0.7, False, -1.0) == 0.7 and outcomes.scored(0.7, True, -1.0) == -1.0
    assert outcomes.scored(math.nan, False, 1.0) == 1.0 and outcomes.scored(None, False, 1.0) == 1.0
    with pytest.raises(ValueError):
        outcomes.scored(0.7, True, -INF)  # a t-tested endpoint must stay finite


def test_scored_accuracy_is_chance_never_zero_or_missing():
    assert outcomes.scored_accuracy(0.93, False) == 0.93
    assert outcomes.scored_accuracy(0.93, True) == outcomes.TEN_CLASS_CHANCE == 0.1
    assert outcomes.scored_accuracy(math.nan, False, chance=0.5) == 0.5
    assert outcomes.scored_accuracy(None, None) == 0.1


# ----------------------------------------------------------------------------- every claim's vote

MIXED = [0.10, -0.20, 0.30, -0.10, 0.20, -0.30, 0.15, -0.05]  # undecided: symmetric about 0


def _rank_settings() -> list[tuple[str, str]]:
    """(claim, setting) of every primary setting tested by a rank test (its per-seed values may be ±inf)."""
    out = []
    for claim in [f"C{i:02d}" for i in range(2, 15)]:
        endpoint = load_experiment(claim).PROTOCOL.endpoint
        out += [(claim, s) for s in endpoint.settings if endpoint.test_of(s)[0] in ("signed_rank", "rank_tost")]
    return out


def test_rank_tests_exist_and_the_claims_use_them():
    assert {"signed_rank", "rank_tost"} <= set(TESTS)
    claims = {c for c, _ in _rank_settings()}
    assert claims == {"C03", "C04", "C05", "C06", "C09", "C11", "C13", "C14"}


@pytest.mark.parametrize("claim,setting", _rank_settings())
def test_divergence_moves_every_rank_setting_the_right_way(claim: str, setting: str):
    """In an undecided setting, the seeds where the no-BN net failed (+inf) make a directional setting supported
    and the seeds where the BN net failed (−inf) refuted; an equivalence setting (one net vs a prediction) whose
    runs fail is refuted, never equivalent."""
    endpoint = load_experiment(claim).PROTOCOL.endpoint
    test, threshold = endpoint.test_of(setting)
    from bnlab.experiments import base

    def vote(values: list[float]) -> str:
        return base.setting_result(endpoint, setting, values).vote

    if test == "rank_tost":
        near = [threshold / 4 * (1 if i % 2 else -1) for i in range(8)]  # well inside the margin
        assert vote(near) == "supported"
        assert vote([INF if i % 2 else v for i, v in enumerate(near)]) != "supported"
        assert vote([INF] * 8) == "refuted" and vote([-INF] * 8) == "refuted"
        return
    mixed = [v + threshold for v in MIXED]
    assert vote(mixed) == "inconclusive"
    assert vote([INF if v < threshold else v for v in mixed]) == "supported"  # the no-BN nets failed
    assert vote([-INF if v > threshold else v for v in mixed]) == "refuted"  # the BN nets failed


@pytest.mark.parametrize("claim", [f"C{i:02d}" for i in range(1, 15)])
def test_every_setting_declares_the_test_its_unit_fixes(claim: str):
    """base.UNIT_TESTS: bounded units -> t (tost), log ratios and decades -> signed_rank (rank_tost), grid values ->
    sign; a setting whose declared test differs from its unit's would break the pre-registration."""
    from bnlab.experiments import base

    endpoint = load_experiment(claim).PROTOCOL.endpoint
    settings = [s for s in endpoint.settings if not s.endswith(":*")] + [s for s in endpoint.units if s.endswith(":*")]
    for setting in settings:
        test, _ = endpoint.test_of(setting)
        want = base.fixed_test(endpoint.unit_of(setting), equivalence=test in base.EQUIVALENCE_TESTS)
        assert test == want, (claim, setting, endpoint.unit_of(setting), test)
