"""The sequential plan: nominal levels fixed in advance, error control by simulation (10,000 audits per test type),
the vectorised simulation against the scalar rule, and the audit's stages on fake claims."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

import audit_fakes
from bnlab.experiments import base, sequential, stats
from bnlab.experiments.audit import run_audit
from bnlab.sweeps.trial import Trial

# every multi-look schedule of the plan, and a three-look one to show the machinery beyond two looks
SCHEDULES = sorted({s for costs in base.LOOKS.values() for s in costs.values() if len(s) > 1} | {(8, 12, 16)})
CHEAP = base.LOOKS["default"]["cheap"]


# ----------------------------------------------------------------------------- levels


def test_one_look_is_the_fixed_n_rule() -> None:
    assert stats.schedule_levels((8,), 0.025) == (0.025,)
    assert stats.schedule_levels((8,), 0.025, "t") == (0.025,)
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = list(rng.normal(rng.uniform(-1, 1), 1.0, 6))
        assert stats.vote_estimate(v, "t", 0.0, 0.025, 0.025)[1] == stats.directional_verdict(stats.mean_ci(v))
        assert stats.vote_estimate(v, "sign", 0.0, 0.025, 0.025)[1] == stats.directional_verdict(stats.sign_test(v))
        assert stats.vote_estimate(v, "tost", 0.5, 0.05, 0.025)[1] == stats.equivalence_verdict(stats.tost(v, 0.5))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_levels_are_below_the_fixed_level_and_spend_alpha(schedule: tuple[int, ...]) -> None:
    for test in ("z", "t"):
        levels = stats.schedule_levels(schedule, 0.025, test)
        assert len(levels) == len(schedule) and all(0 < a < 0.025 for a in levels)
    with pytest.raises(ValueError):
        stats.sequential_levels((0.5, 0.4, 1.0), 0.025)


def test_pocock_spending_spends_all_alpha_by_the_last_look() -> None:
    assert stats.pocock_spending(0.0, 0.05) == 0.0
    assert math.isclose(stats.pocock_spending(1.0, 0.05), 0.05)
    assert stats.pocock_spending(0.5, 0.05) > 0.025  # Pocock-type: front-loaded compared with a straight line


# ----------------------------------------------------------------------------- error control by simulation


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("test", ["t", "sign", "permutation", "signed_rank"])
def test_a_true_null_is_decided_in_at_most_5_percent_of_10000_audits(schedule: tuple[int, ...], test: str) -> None:
    """The t test's levels are calibrated to spend exactly 5% (as a fixed-n t test does), so its simulated rate
    is 5% up to Monte Carlo error (3 standard errors of 10,000 audits: 0.65 points); the discrete tests spend
    less. A 200,000-audit run of the t test pins its rate to within 0.15 points."""
    rates = sequential.error_rates(schedule)[test]
    assert rates["decided_under_null"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sequential.SIMS), (test, rates)
    assert rates["supported"] <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / sequential.SIMS)
    if test == "t":
        big = sequential.simulate("t", schedule, 0.0, sims=200_000, seed=99)
        assert big.decided <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200_000), big


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("test", sequential.EQUIVALENCE)
def test_an_equivalence_endpoint_at_its_margin_is_called_equivalent_in_at_most_5_percent(
        schedule: tuple[int, ...], test: str) -> None:
    rate = sequential.error_rates(schedule)[test]["equivalent_at_margin"]
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sequential.SIMS)
    if test == "tost":  # calibrated to spend exactly 5%: pin it with 200,000 audits
        big = sequential.simulate("tost", schedule, 1.0, threshold=1.0, sims=200_000, seed=98)
        assert big.supported <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200_000), big


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_rank_tests_hold_their_level_under_heavy_tails(schedule: tuple[int, ...]) -> None:
    """The reason log ratios are rank-tested: per-seed values with Cauchy tails (a deep linear net's log ratios
    reach 10⁴) symmetric about the null. The signed-rank test stays at <= 5% decided over 10,000 audits; the t
    test's level holds too but it loses its power (next test)."""
    x = np.random.default_rng(5).standard_cauchy(size=(sequential.SIMS, schedule[-1]))
    a_s, a_r = sequential.levels("signed_rank", schedule)
    decided = np.zeros(len(x), dtype=bool)
    for k, n in enumerate(schedule):
        sup, ref = sequential._VOTES["signed_rank"](x[~decided, :n], 0.0, a_s[k], a_r[k])
        idx = np.flatnonzero(~decided)
        decided[idx[sup | ref]] = True
    assert decided.mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sequential.SIMS)


def test_rank_test_keeps_its_power_where_heavy_tails_sink_the_t_test() -> None:
    """A shift of one sd with 15% of the seeds wild (sd 30, as a deep linear net's log ratios; 8, 12 seeds): the
    signed-rank test decides 42% of the audits, the t test 24% (its interval widens with every wild seed)."""
    rng = np.random.default_rng(6)
    x = 1.0 + rng.normal(size=(2000, 12)) + (rng.random((2000, 12)) < 0.15) * rng.normal(0, 30, (2000, 12))
    power = {}
    for test in ("t", "signed_rank"):
        a_s, a_r = sequential.levels(test, (8, 12))
        supported = np.zeros(len(x), dtype=bool)
        for k, n in enumerate((8, 12)):
            sup, _ = sequential._VOTES[test](x[~supported, :n], 0.0, a_s[k], a_r[k])
            supported[np.flatnonzero(~supported)[sup]] = True
        power[test] = supported.mean()
    assert power["signed_rank"] > 0.35 and power["signed_rank"] > power["t"] + 0.12, power


def test_decidable_knows_the_rank_tests_floor() -> None:
    """2/2^n is the smallest two-sided p of an exact rank or sign test: 5 seeds can never decide at 5%."""
    assert sequential.decidable("signed_rank", (5,)) == (False, False)
    assert sequential.decidable("signed_rank", (8,)) == (True, True)
    assert sequential.decidable("signed_rank", (5, 7), voting=2) == (True, False)  # the old VGG cap
    assert sequential.decidable("t", (3,), voting=50) == (True, True)


@pytest.mark.parametrize("scale", ["default", "paper"])
def test_every_claims_settings_can_be_decided_both_ways_at_their_cap(scale: str) -> None:
    """A rule that cannot fail is a defect (C09 last round): every voting setting and gate of every statistical claim
    must be able to reach support and refutation at its cap. Settings known only from the data ("conv:*") count as
    many as a VGG has conv layers at that scale (at most 10)."""
    from bnlab.experiments.registry import CLAIM_MODULES, load_experiment
    for cid in CLAIM_MODULES:
        endpoint = load_experiment(cid).PROTOCOL.endpoint
        if endpoint.test == "verification":
            continue
        cost = load_experiment(cid).PROTOCOL.cost
        patterns = sum(s.endswith(":*") for s in endpoint.settings)
        voting = len(endpoint.settings) - len(endpoint.gates) + 9 * patterns
        for setting in endpoint.settings:
            test = endpoint.test_of(setting)[0]
            schedule = base.LOOKS[scale][endpoint.setting_costs.get(setting, cost)]
            assert sequential.decidable(test, schedule, voting) == (True, True), (cid, setting, test, schedule)


def test_the_sequential_plan_decides_real_effects_and_stops_early() -> None:
    """The check that can fail the other way: at a real effect most audits decide, many at the first look."""
    outcome = sequential.simulate("t", (8, 12, 16), mean=1.0, sims=sequential.SIMS)
    assert outcome.supported > 0.9 and outcome.refuted == 0.0
    assert outcome.decided_at_look[0] > 0.5 and outcome.mean_n < 12
    refuting = sequential.simulate("sign", (8, 12, 16), mean=-1.5, sims=2000)
    assert refuting.refuted > 0.8


def test_bonferroni_refutation_keeps_a_four_setting_claim_at_5_percent() -> None:
    """One refuting setting refutes a claim, so each of k settings refutes at r/k: P(any refutes) <= 2.5%."""
    outcomes = [sequential.simulate("t", (8, 12, 16), 0.0, sims=sequential.SIMS, seed=s, voting=4) for s in range(4)]
    assert 1 - math.prod(1 - o.refuted for o in outcomes) <= 0.025 + 3 * math.sqrt(0.025 / sequential.SIMS)


@pytest.mark.parametrize("test", sequential.TESTS)
def test_vectorised_simulation_agrees_with_the_scalar_rule(test: str) -> None:
    """The same draws through `stats.vote_estimate` one audit at a time give the same verdicts and looks."""
    schedule = (5, 8, 10)
    threshold = 1.0 if test in sequential.EQUIVALENCE else 0.0
    for mean in (0.0, 0.8, -0.8, 1.0):
        rng = np.random.default_rng(7)
        x = rng.normal(mean, 1.0, size=(120, schedule[-1]))
        a_s, a_r = sequential.levels(test, schedule)
        verdict = np.zeros(len(x), dtype=int)
        for k, n in enumerate(schedule):
            open_ = verdict == 0
            sup, ref = sequential._VOTES[test](x[open_, :n], threshold, a_s[k], a_r[k])
            idx = np.flatnonzero(open_)
            verdict[idx[sup]], verdict[idx[ref & ~sup]] = 1, -1
        scalar = [sequential.scalar_verdict(test, schedule, list(row), threshold)[0] for row in x]
        expected = {"supported": 1, "refuted": -1, "inconclusive": 0}
        assert [expected[v] for v in scalar] == list(verdict), (test, mean)


def test_meet_in_the_middle_matches_the_exact_sign_flip_p() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 8, 13):
        d = rng.normal(size=(40, n))
        d[0], d[1] = np.round(d[0]), 0.0  # ties and an all-zero row
        got = np.minimum(1.0, sequential._extreme_counts(d) / 2.0**n)
        assert np.allclose(got, [stats._sign_flip_p(row, 16, 1) for row in d])


# ----------------------------------------------------------------------------- the audit's stages


def _value(setting: str, seed: int) -> dict:
    """Per-seed endpoint values: 'clear' is far above 0; 'slow' is undecided at the first look, decided later."""
    rng = np.random.default_rng(3000 + seed)
    if setting == "clear":
        return {"x": 5.0 + float(rng.normal(0, 0.5))}
    return {"x": 0.9 + float(rng.normal(0, 1.0))}


ENDPOINT = base.Endpoint("effect", "a fake per-seed value", "accuracy", "t", 0.0, "0 = nothing", ("clear", "slow"))


def _fake_module(claim: str) -> types.ModuleType:
    module = types.ModuleType(f"bnlab_fake_seq_{claim.lower()}")

    def plan(scale: str, seeds: int | base.Look | None, first_seed: int = 0) -> base.Plan:
        seed_list = base.seeds_for(scale, seeds, first_seed)
        trials = tuple(Trial(claim, f"{s}/seed={k}", "bnlab.fake_audit:value", {"setting": s, "seed": k})
                       for k in seed_list for s in ENDPOINT.settings)
        return base.Plan(claim, scale, seed_list, {}, trials)

    def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict:
        return {"primary": {s: [results[f"{s}/seed={k}"]["x"] for k in plan.seeds] for s in ENDPOINT.settings}}

    module.CLAIM_ID, module.TITLE, module.RULE = claim, "fake sequential claim", "fake rule"
    module.PROTOCOL = base.ClaimProtocol(ENDPOINT, cost="cheap", runs="fake", paper="none")
    module.plan, module.measure = plan, measure
    module.decide = lambda metrics: base.decide_endpoint(ENDPOINT, metrics)
    module.figures = lambda plan, results, metrics: []
    module.describe = lambda plan, metrics, decision: base.Description("fake", "fake")
    return module


@pytest.fixture
def sequential_fake(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    audit_fakes.install(monkeypatch)
    module = _fake_module("C07")
    monkeypatch.setitem(audit_fakes.FAKE_FUNCS, "bnlab.fake_audit:value", _value)
    monkeypatch.setitem(__import__("sys").modules, module.__name__, module)
    from bnlab.experiments import registry

    monkeypatch.setitem(registry.CLAIM_MODULES, "C07", module.__name__)
    return module


def _reference_looks(setting: str, first_seed: int = 0) -> tuple[str, int | None]:
    values = [_value(setting, first_seed + k)["x"] for k in range(CHEAP[-1])]
    return sequential.scalar_verdict("t", CHEAP, values, voting=2)


def test_audit_adds_seeds_only_until_each_setting_is_decided(sequential_fake: types.ModuleType,
                                                             tmp_path: Path) -> None:
    result = run_audit("default", None, "C07", tmp_path / "a", "local", log=None)
    claim = next(c for c in result.results["claims"] if c["id"] == "C07")
    votes = {v["setting"]: v for v in claim["votes"]}
    clear, slow = votes["clear"], votes["slow"]
    assert clear["vote"] == "supported" and clear["decided_n"] == CHEAP[0] and clear["look"] == 1
    assert clear["looks"] == len(CHEAP) and [h["n"] for h in clear["history"]] == [CHEAP[0]]
    expected, look = _reference_looks("slow")
    assert look is not None and look > 1, "the fake 'slow' setting must need more than the first look"
    assert slow["vote"] == expected and slow["look"] == look and slow["decided_n"] == CHEAP[look - 1]
    assert [h["n"] for h in slow["history"]] == list(CHEAP[:look])
    assert result.results["stages"] == look and claim["seeds"] == list(range(CHEAP[look - 1]))
    assert claim["sequential"]["plan"] == "sequential" and claim["sequential"]["capped"] == []
    assert claim["verdict"] == stats.combine([clear["vote"], slow["vote"]])
    assert len(list((tmp_path / "a" / "trials").glob("*.json"))) == 2 * CHEAP[look - 1]


def test_fixed_seeds_run_one_look(sequential_fake: types.ModuleType, tmp_path: Path) -> None:
    result = run_audit("default", 8, "C07", tmp_path / "b", "local", log=None)
    claim = next(c for c in result.results["claims"] if c["id"] == "C07")
    assert result.results["stages"] == 1 and claim["sequential"] == {"plan": "fixed", "capped": []}
    assert {v["setting"]: (v["look"], v["looks"]) for v in claim["votes"]} == {"clear": (1, 1), "slow": (1, 1)}


def test_a_setting_undecided_at_its_cap_is_named(monkeypatch: pytest.MonkeyPatch,
                                                 sequential_fake: types.ModuleType, tmp_path: Path) -> None:
    monkeypatch.setitem(audit_fakes.FAKE_FUNCS, "bnlab.fake_audit:value",
                        lambda setting, seed: {"x": 5.0 + 0.1 * (seed % 3) if setting == "clear"
                                                          else (-1) ** seed * (1 + seed)})
    result = run_audit("default", None, "C07", tmp_path / "c", "local", log=None)
    claim = next(c for c in result.results["claims"] if c["id"] == "C07")
    assert claim["sequential"]["capped"] == ["slow"] and result.results["stages"] == len(CHEAP)
    assert claim["verdict"] == "inconclusive" and claim["seeds"] == list(range(CHEAP[-1]))
