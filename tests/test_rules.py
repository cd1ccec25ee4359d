"""Every claim's rule tested as a rule (no training): simulated nulls and simulated effects.

* Under the null (every setting of the primary endpoint at its threshold, or at the margin of an equivalence test,
  with the per-seed spread the default audit measured) the rule says supported or refuted in at most 5% of 2,000
  simulated audits, plus sampling slack (3 standard errors).
* At the effect and spread the default audit measured (`bnlab/experiments/measured.json`), at the default seed
  count, the rule reaches the measured effect's verdict in >= 80% of simulated audits -- or docs/protocol.md says
  plainly that the claim is underpowered and how many seeds it would need, or (an endpoint no default audit has
  run yet, absent from measured.json) that nothing has been measured.
"""

from __future__ import annotations

import math

import pytest

from bnlab.experiments import power
from bnlab.experiments.base import CLAIM_IDS, DEFAULT_SEEDS
from bnlab.experiments.registry import load_experiment

SLACK = 3 * math.sqrt(0.05 * 0.95 / power.SIMS)
MEASURED = power.load_measured()


def _module(claim: str):
    module = load_experiment(claim)
    assert module is not None, f"{claim} has no experiment module"
    return module


def _statistical() -> list[str]:
    return [c for c in CLAIM_IDS if power.statistical(_module(c))]


def _measured_or_unit(claim: str) -> dict:
    """The default audit's measurements, or (before one is recorded) unit spread at the default seed count."""
    if claim in MEASURED:
        return MEASURED[claim]
    module = _module(claim)
    n = DEFAULT_SEEDS["default"][module.PROTOCOL.cost]
    return {"settings": {s: {"effect": 0.0, "sd": 1.0, "n_seeds": n} for s in module.PROTOCOL.endpoint.settings}}


@pytest.mark.parametrize("claim", _statistical())
def test_rule_rarely_decides_under_the_null(claim: str) -> None:
    module = _module(claim)
    rate = power.false_decisions(module, _measured_or_unit(claim))
    assert rate <= 0.05 + SLACK, f"{claim}: the rule decides {rate:.1%} of null audits"


@pytest.mark.parametrize("claim", _statistical())
def test_every_statistical_claim_states_its_effect_of_interest_and_where_it_comes_from(claim: str) -> None:
    stated = getattr(_module(claim), "INTEREST", None)
    assert stated is not None and stated.effect > 0 and len(stated.source) > 20, claim


@pytest.mark.parametrize("claim", _statistical())
def test_plan_has_power_at_the_effect_of_interest_or_the_page_says_it_is_underpowered(claim: str) -> None:
    """Power is computed at the effect the claim cares about (INTEREST), never at the observed effect."""
    from bnlab.experiments.protocol_page import PROTOCOL_PAGE

    section = PROTOCOL_PAGE.read_text().split(f"## {claim}", 1)[1].split("\n## ", 1)[0]
    if claim not in MEASURED:  # a new endpoint, not yet run by a default audit: the page must say so plainly
        assert "no default audit measured yet" in section, (
            f"{claim}: no measured spread recorded and the protocol page is silent; run `make audit` and "
            "`python -m bnlab.experiments.power runs/audit/results.json`")
        return
    module = _module(claim)
    for setting in MEASURED[claim]["settings"]:
        achieved = power.interest_power(module, MEASURED[claim], setting).supported
        line = next(t for t in section.splitlines() if t.strip().startswith(f"- {setting}:"))
        assert f"{achieved:.0%}" in line, (claim, setting, line)
        assert achieved >= power.POWER_GOAL or ("underpowered" in line and "seeds" in line), (claim, setting)


def test_power_follows_the_effect_of_interest_not_the_data() -> None:
    """The check can fail: a larger effect of interest gives more power, a zero-spread-free setting at its
    threshold none; the measured effect plays no part."""
    module = _module("C05")
    spread = {"settings": {"vgg": {"effect": -9.0, "sd": 1.0, "n_seeds": 5},
                           "dln": {"effect": 123.0, "sd": 1.0, "n_seeds": 8}}}
    same_sd_other_effect = {"settings": {k: {**v, "effect": 0.0} for k, v in spread["settings"].items()}}
    a = power.interest_power(module, spread, "dln").supported
    assert a == power.interest_power(module, same_sd_other_effect, "dln").supported
    wider = {"settings": {k: {**v, "sd": 4.0} for k, v in spread["settings"].items()}}
    assert power.interest_power(module, wider, "dln").supported < a
