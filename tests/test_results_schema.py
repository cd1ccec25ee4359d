"""bnlab.results: the one vocabulary of results.json (verdicts, figure kinds, the claim entry, provenance), and the
unit each endpoint setting reports in (no `decide` patches units any more)."""

from __future__ import annotations

import math
import re

import pytest

from bnlab import results
from bnlab.experiments import base
from bnlab.experiments.registry import load_experiment
from bnlab.report import figures
from bnlab.report.view import VERDICT_MEANING, VERDICT_TEXT


def test_every_floor_uses_the_one_vocabulary() -> None:
    assert base.VERDICTS is results.VERDICTS and base.CLAIM_IDS is results.CLAIM_IDS
    assert figures.KINDS is results.FIGURE_KINDS
    assert set(VERDICT_TEXT) == set(VERDICT_MEANING) == set(results.VERDICTS)
    assert VERDICT_TEXT["not_measured"] == "not measured"


def test_claim_entry_has_every_key_and_repeats_the_headline_as_key_number() -> None:
    head = {"name": "effect", "effect": 0.5, "ci_low": 0.1, "ci_high": 0.9, "unit": "log ratio", "n": 5}
    entry = results.claim_entry("C05", "t", "supported", "s", primary=head, votes=[head])
    assert tuple(entry) == results.ENTRY_KEYS
    assert entry["key_number"] == {"name": "effect", "value": 0.5, "ci_low": 0.1, "ci_high": 0.9,
                                   "unit": "log ratio"}
    bare = results.claim_entry("C01", "t", "not_measured", "s")
    assert bare["key_number"] is None and bare["primary"] is None and bare["votes"] == []
    with pytest.raises(ValueError, match="verdict"):
        results.claim_entry("C01", "t", "probably", "s")
    with pytest.raises(ValueError, match="claim id"):
        results.claim_entry("C15", "t", "supported", "s")


def test_figure_entry_refuses_an_unknown_kind() -> None:
    fig = base.Figure("f", "lines", "T", "c", {"panels": []})
    assert results.figure_entry(fig) == {"id": "f", "kind": "lines", "title": "T", "caption": "c",
                                         "data": {"panels": []}}
    with pytest.raises(ValueError, match="pie"):
        results.figure_entry(base.Figure("f", "pie", "T", "c", {}))


def test_finite_or_none_and_provenance() -> None:
    assert results.finite_or_none(1) == 1.0 and isinstance(results.finite_or_none(1), float)
    assert [results.finite_or_none(x) for x in (math.nan, math.inf, -math.inf, None)] == [None] * 4
    found = results.provenance()
    assert {"python", "torch", "bnlab"} <= set(found["versions"])
    assert found["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", found["git_commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", results.created_now())


@pytest.mark.parametrize("claim, primary, want", [
    ("C03", {"conv:features.3": [0.1, 0.2, 0.15], "ioffe": [0.5, 0.6, 0.4]},
     {"conv:features.3": "cosine difference", "ioffe": "log ratio"}),
    ("C04", {"noisy_vs_none": [0.1] * 3, "kept_share": [0.9] * 3, "manipulation": [1.0] * 3, "control": [0.1] * 3},
     {"noisy_vs_none": "accuracy", "kept_share": "share of BN's advantage", "manipulation": "log ratio",
      "control": "accuracy"}),
    ("C13", {"speed": [0.5, 0.6, 0.4], "good_minimum": [0.0, 0.01, -0.01]},
     {"speed": "log ratio", "good_minimum": "accuracy"}),
])
def test_each_setting_reports_in_its_own_unit(claim: str, primary: dict, want: dict) -> None:
    """The endpoint carries its unit per setting; `decide` is pure and patches nothing."""
    module = load_experiment(claim)
    decision = module.decide({"primary": primary, "secondary": {}})
    assert {r.setting: r.unit for r in decision.primary} == want


def test_endpoint_units_name_only_its_settings() -> None:
    with pytest.raises(ValueError, match="units"):
        base.Endpoint("e", "m", "u", "t", settings=("a",), units={"b": "accuracy"})
    e = base.Endpoint("e", "m", "accuracy", "t", settings=("conv:*", "x"), units={"conv:*": "cosine difference"})
    assert (e.unit_of("conv:layer1"), e.unit_of("x")) == ("cosine difference", "accuracy")


def test_an_endpoint_declares_the_test_its_units_fix() -> None:
    """The test follows from the values' type before the run (base.UNIT_TESTS): t on a log ratio is refused."""
    with pytest.raises(ValueError, match="signed_rank"):
        base.Endpoint("e", "m", "log ratio", "t")
    with pytest.raises(ValueError, match="rank_tost"):
        base.Endpoint("e", "m", "decades", "tost", threshold=1.0)
    with pytest.raises(ValueError, match="no test is fixed"):
        base.Endpoint("e", "m", "furlongs", "t")
    with pytest.raises(ValueError, match="'t'"):
        base.Endpoint("e", "m", "accuracy; log ratio", "t", settings=("a", "b"), units={"a": "accuracy",
                                                                                       "b": "log ratio"})
    assert base.Endpoint("e", "m", "log ratio", "signed_rank").test == "signed_rank"
