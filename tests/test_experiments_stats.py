"""bnlab.experiments.stats against scipy, hand-computed cases and simulated calibration (numpy, fixed seeds)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from bnlab.experiments.stats import (
    ALPHA,
    POWER,
    VERDICTS,
    Estimate,
    combine,
    combine_reason,
    directional_verdict,
    equivalence_verdict,
    finite,
    log_mean,
    log_ratio,
    mean_ci,
    minimum_detectable_effect,
    paired_differences,
    paired_log_ratios,
    permutation_test,
    seeds_needed,
    sign_test,
    tost,
)

VECTORS = [
    [0.3, -0.1, 0.8, 1.2, 0.4],
    [2.0, 2.5, 1.5, 3.0, 2.2, 2.8, 1.9, 2.6],
    [-1.0, 0.5, -0.2, -0.7, 0.1, -1.3, 0.0],
]


def _power(d: float, n: int, alpha: float = ALPHA) -> float:
    """Two-sided one-sample t power at standardized effect d, written out independently of the module."""
    df, nc = n - 1, d * math.sqrt(n)
    tc = sps.t.ppf(1 - alpha / 2, df)
    return sps.nct.sf(tc, df, nc) + sps.nct.cdf(-tc, df, nc)


# --- helpers -------------------------------------------------------------------------------------------------


def test_finite_and_logs() -> None:
    assert finite([1, None, float("nan"), float("inf"), -float("inf"), np.float64(2.5), -3]) == [1.0, 2.5, -3.0]
    assert all(type(x) is float for x in finite([np.float32(1), np.int64(2)]))
    assert log_ratio(math.e, 1.0) == pytest.approx(1.0)
    assert log_ratio(1e300, 1e-300) == pytest.approx(600 * math.log(10))  # a/b would overflow
    for a, b in [(0, 1), (1, 0), (-1, 2), (None, 1), (1, float("nan")), (float("inf"), 1)]:
        assert math.isnan(log_ratio(a, b))
    assert log_mean([1.0, 100.0, None, -5.0, 0.0, float("nan")]) == pytest.approx(math.log(10.0))
    assert math.isnan(log_mean([0.0, -1.0, None]))


def test_paired() -> None:
    d = paired_differences([3.0, None, 1.0, float("inf")], [1.0, 2.0, float("nan"), 0.0])
    assert d[0] == 2.0 and all(math.isnan(x) for x in d[1:])
    r = paired_log_ratios([2.0, 1.0, -1.0], [1.0, 0.0, 1.0])
    assert r[0] == pytest.approx(math.log(2)) and math.isnan(r[1]) and math.isnan(r[2])
    with pytest.raises(ValueError):
        paired_differences([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_log_ratios([1.0, 2.0], [1.0])


# --- t --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VECTORS)
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_mean_ci_against_scipy(values: list[float], threshold: float) -> None:
    est = mean_ci(values + [None, float("nan")], threshold=threshold)
    x = np.asarray(values)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert (est.ci_low, est.ci_high) == pytest.approx((lo, hi), rel=1e-12)
    assert est.p == pytest.approx(sps.ttest_1samp(x, threshold).pvalue, rel=1e-10)
    assert est.effect == pytest.approx(x.mean()) and est.n == len(x) and est.sd == pytest.approx(x.std(ddof=1))
    assert est.threshold == threshold and est.test == "t"
    assert est.mde == pytest.approx(minimum_detectable_effect(x.std(ddof=1), len(x)))


def test_mean_ci_level() -> None:
    x = VECTORS[1]
    est = mean_ci(x, level=0.99)
    lo, hi = sps.t.interval(0.99, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (est.ci_low, est.ci_high) == pytest.approx((lo, hi)) and est.level == 0.99


def test_mean_ci_degenerate() -> None:
    empty = mean_ci([None, float("nan")])
    assert empty.n == 0 and math.isnan(empty.effect)
    assert (empty.ci_low, empty.ci_high, empty.sd, empty.p, empty.mde) == (None,) * 5
    one = mean_ci([2.5])
    assert one.n == 1 and one.effect == 2.5 and (one.ci_low, one.ci_high, one.sd, one.p, one.mde) == (None,) * 5
    flat = mean_ci([0.1] * 5)  # float mean of equal values is not exactly 0.1; the spread must still be exactly 0
    assert flat.sd == 0.0 and flat.ci_low == flat.ci_high == flat.effect == 0.1
    assert flat.p is None and flat.mde == 0.0
    assert directional_verdict(flat) == "inconclusive"


# --- power ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 8, 20, 100])
def test_mde_has_the_stated_power(n: int) -> None:
    for sd in (1.0, 0.37):
        mde = minimum_detectable_effect(sd, n)
        assert _power(mde / sd, n) == pytest.approx(POWER, abs=1e-6)


def test_mde_values() -> None:
    exact = optimize.brentq(lambda d: _power(d, 8) - 0.8, 0.5, 3.0, xtol=1e-14)
    assert minimum_detectable_effect(1.0, 8) == pytest.approx(exact, abs=1e-9)
    assert minimum_detectable_effect(1.0, 8) == pytest.approx(1.156, abs=1e-3)
    normal = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) / math.sqrt(8)  # 0.99, a lower bound
    assert normal < minimum_detectable_effect(1.0, 8)
    assert minimum_detectable_effect(2.0, 8) == pytest.approx(2 * exact, abs=1e-8)  # in the units of the values
    mdes = [minimum_detectable_effect(1.0, n) for n in range(2, 40)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    assert minimum_detectable_effect(1.0, 1) is None and minimum_detectable_effect(None, 8) is None
    assert minimum_detectable_effect(0.0, 8) == 0.0
    assert minimum_detectable_effect(1.0, 8, alpha=0.01) > minimum_detectable_effect(1.0, 8)
    assert minimum_detectable_effect(1.0, 8, power=0.9) > minimum_detectable_effect(1.0, 8)
    with pytest.raises(ValueError):
        minimum_detectable_effect(1.0, 8, alpha=0.9, power=0.8)


@pytest.mark.parametrize("effect,sd", [(1.0, 1.0), (0.3, 1.0), (0.5, 2.0), (-0.8, 1.0), (2.0, 0.4), (0.05, 1.0)])
def test_seeds_needed_matches_mde(effect: float, sd: float) -> None:
    n = seeds_needed(effect, sd)
    assert isinstance(n, int) and n >= 2
    assert minimum_detectable_effect(sd, n) <= abs(effect)
    if n > 2:
        assert abs(effect) < minimum_detectable_effect(sd, n - 1)


def test_seeds_needed_edges() -> None:
    assert seeds_needed(0.0, 1.0) is None
    assert seeds_needed(0.01, 1.0, max_n=100) is None
    assert seeds_needed(5.0, 0.0) == 2
    assert seeds_needed(100.0, 1.0) == 2


# --- sign -----------------------------------------------------------------------------------------------------


def test_sign_test_against_binomtest() -> None:
    values = [0.5, -0.2, 0.0, 1.1, 0.3, 0.0, 0.7, -0.4, 0.9, 0.2]  # two ties at the threshold 0
    est = sign_test(values)
    assert est.p == pytest.approx(sps.binomtest(6, 8, 0.5).pvalue)
    assert est.n == 10 and est.effect == pytest.approx(np.median(values))
    shifted = sign_test(values, threshold=0.3)  # 0.3 is now the tie: 4 above (0.5, 1.1, 0.7, 0.9) of 9
    assert shifted.p == pytest.approx(sps.binomtest(4, 9, 0.5).pvalue) and shifted.threshold == 0.3


def test_sign_test_small_n() -> None:
    eight = sign_test([0.1, 0.4, 0.2, 0.9, 0.3, 0.5, 0.7, 0.6])
    assert eight.p == pytest.approx(2 / 256)
    assert (eight.ci_low, eight.ci_high) == (0.1, 0.9)  # n=8: k=1, coverage 1 - 2/256
    assert directional_verdict(eight) == "supported"
    assert directional_verdict(sign_test([-x for x in [0.1, 0.4, 0.2, 0.9, 0.3, 0.5, 0.7, 0.6]])) == "refuted"
    # with 5 seeds even 5 of 5 gives p = 2/32 = 0.0625: a sign test cannot decide with 5 seeds
    five = sign_test([1, 2, 3, 4, 5])
    assert five.p == pytest.approx(0.0625) and directional_verdict(five) == "inconclusive"
    assert (five.ci_low, five.ci_high) == (None, None)  # best coverage [x_(1), x_(5)] is 1 - 2/32 < 95%
    ties = sign_test([0.0, 0.0, 0.0])
    assert ties.p is None and directional_verdict(ties) == "inconclusive"


def test_sign_test_median_ci_by_hand() -> None:
    # n=9: P(B <= 1) = 10/512 <= 0.025 < P(B <= 2) = 46/512, so k = 2: [x_(2), x_(8)], coverage 1 - 20/512
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5]  # sorted 1 1 2 3 4 5 5 6 9
    est = sign_test(values)
    assert (est.ci_low, est.ci_high) == (1.0, 6.0) and est.effect == 4.0


def test_sign_test_decides_by_p_not_by_mean() -> None:
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, -100]  # 9 of 10 above: p = 22/1024, though the mean is negative
    assert sign_test(values).p == pytest.approx(22 / 1024)
    assert directional_verdict(sign_test(values)) == "supported"
    assert directional_verdict(mean_ci(values)) == "inconclusive"
    # all values equal: the t interval has zero width and never decides; the sign test still does
    assert directional_verdict(mean_ci([1.0] * 8)) == "inconclusive"
    assert directional_verdict(sign_test([1.0] * 8)) == "supported"


# --- permutation ----------------------------------------------------------------------------------------------


def test_permutation_exact_by_hand() -> None:
    assert permutation_test([1, 2, 3, 4]).p == pytest.approx(2 / 16)  # only all-+ and all-- reach |sum| = 10
    # ±1±2±3±1 against observed 5: |sum| >= 5 for 7, 5 (from 6), 5 (from 4), -5 (from -4), -5, -7 (from -6)
    assert permutation_test([1, 2, 3, -1]).p == pytest.approx(6 / 16)
    # same sums in floats (0.1 + 0.2 != 0.3): the tolerance must count the float ties
    assert permutation_test([0.1, 0.2, 0.3, -0.1]).p == pytest.approx(6 / 16)
    # threshold shifts the values: [1.5, 2.5, 3.5, -0.5] - 0.5
    assert permutation_test([1.5, 2.5, 3.5, -0.5], threshold=0.5).p == pytest.approx(6 / 16)
    assert permutation_test([0.0, 0.0, 0.0]).p == 1.0


def test_permutation_against_scipy() -> None:
    x = np.array([0.8, -0.3, 1.2, 0.5, 0.1, 0.9, -0.6, 0.4, 1.5, 0.2])
    ref = sps.permutation_test((x,), lambda s, axis: np.mean(s, axis=axis), permutation_type="samples",
                               n_resamples=np.inf, alternative="two-sided")
    est = permutation_test(x)
    assert est.p == pytest.approx(ref.pvalue, rel=1e-12)
    t = mean_ci(x)
    assert (est.effect, est.ci_low, est.ci_high, est.mde) == (t.effect, t.ci_low, t.ci_high, t.mde)


def test_permutation_monte_carlo_deterministic() -> None:
    x = list(np.random.default_rng(5).normal(0.4, 1.0, 14))
    a = permutation_test(x, max_exact=10, samples=4000)
    b = permutation_test(x, max_exact=10, samples=4000)
    assert a == b
    assert (a.p * 4001 - 1) == pytest.approx(round(a.p * 4001 - 1))  # (1 + #extreme) / (1 + samples)
    exact = permutation_test(x)  # 14 <= 16: exact
    assert a.p == pytest.approx(exact.p, abs=0.03)


# --- tost -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VECTORS)
def test_tost_against_two_one_sided_t(values: list[float]) -> None:
    margin = 1.0
    est = tost(values, margin)
    p_lower = sps.ttest_1samp(values, -margin, alternative="greater").pvalue
    p_upper = sps.ttest_1samp(values, margin, alternative="less").pvalue
    assert est.p == pytest.approx(max(p_lower, p_upper), rel=1e-10)
    n, x = len(values), np.asarray(values)
    lo, hi = sps.t.interval(0.90, n - 1, loc=x.mean(), scale=sps.sem(x))
    assert (est.ci_low, est.ci_high) == pytest.approx((lo, hi)) and est.level == pytest.approx(0.90)
    assert est.threshold == margin and est.test == "tost"
    mde = (sps.t.ppf(0.95, n - 1) + sps.t.ppf(0.90, n - 1)) * x.std(ddof=1) / math.sqrt(n)
    assert est.mde == pytest.approx(mde)
    # equivalence at alpha = 0.05 <=> the 90% interval inside (-margin, margin)
    assert (est.p < ALPHA) == (-margin < est.ci_low and est.ci_high < margin)


def test_tost_rejects_bad_margin() -> None:
    for margin in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            tost([0.1, 0.2, 0.3], margin)


def test_equivalence_verdict_cases() -> None:
    assert equivalence_verdict(tost([0.1, -0.1, 0.05, -0.05, 0.0, 0.02], 1.0)) == "supported"
    assert equivalence_verdict(tost([5.0, 5.1, 4.9, 5.2, 4.8], 1.0)) == "refuted"
    assert equivalence_verdict(tost([-5.0, -5.1, -4.9, -5.2, -4.8], 1.0)) == "refuted"
    assert equivalence_verdict(tost([-2.0, 2.0, -1.0, 1.5, 0.5], 1.0)) == "inconclusive"
    # mean 1.2 beyond the margin but the 95% interval (about 0.6..1.8) still reaches inside: inconclusive
    assert equivalence_verdict(tost([0.8, 1.6, 1.0, 1.4, 1.2], 1.0)) == "inconclusive"
    assert equivalence_verdict(tost([0.0] * 6, 1.0)) == "inconclusive"  # zero spread never decides
    assert equivalence_verdict(tost([0.3], 1.0)) == "inconclusive"
    with pytest.raises(ValueError):
        equivalence_verdict(mean_ci([0.1, 0.2]))
    with pytest.raises(ValueError):
        directional_verdict(tost([0.1, 0.2, 0.3], 1.0))


# --- verdicts -------------------------------------------------------------------------------------------------


def test_directional_verdict_t() -> None:
    assert directional_verdict(mean_ci([2.0, 2.5, 1.5, 3.0])) == "supported"
    assert directional_verdict(mean_ci([-2.0, -2.5, -1.5, -3.0])) == "refuted"
    assert directional_verdict(mean_ci([-1.0, 1.0, 0.5, -0.3])) == "inconclusive"
    assert directional_verdict(mean_ci([2.0, 2.5, 1.5, 3.0]), threshold=5.0) == "refuted"
    assert directional_verdict(mean_ci([2.0, 2.5, 1.5, 3.0], threshold=1.0)) == "supported"
    assert directional_verdict(mean_ci([2.0])) == "inconclusive"
    with pytest.raises(ValueError):
        directional_verdict(sign_test([1.0] * 8), threshold=0.5)  # its p is against 0


def test_combine_rules() -> None:
    """A universal claim: supported only when every setting supports; one refutation (none supporting) refutes."""
    assert combine([]) == "not_measured"
    assert combine(["not_measured", "not_measured"]) == "not_measured"
    assert combine(["supported", "not_measured"]) == "supported"
    assert combine(["refuted", "refuted", "not_measured"]) == "refuted"
    assert combine(["supported", "supported", "inconclusive"]) == "inconclusive"
    assert combine(["refuted", "inconclusive"]) == "refuted"  # C11 at 23663f1: three refute, one undecided
    assert combine(["refuted", "refuted", "refuted", "inconclusive"]) == "refuted"
    assert combine(["supported", "refuted"]) == "mixed"
    assert combine(["supported", "refuted", "inconclusive"]) == "mixed"
    assert combine(["mixed", "not_measured"]) == "mixed"
    assert combine(["supported", "mixed"]) == "mixed"
    assert combine(iter(["supported"])) == "supported"
    assert combine(["supported"], gates=["inconclusive"]) == "inconclusive"
    assert combine(["refuted"], gates=["refuted"]) == "inconclusive"
    assert combine(["refuted"], gates=["supported", "not_measured"]) == "refuted"
    with pytest.raises(ValueError, match="'maybe'"):
        combine(["supported", "maybe"])
    with pytest.raises(ValueError, match="'maybe'"):
        combine(["supported"], gates=["maybe"])


def _expected_combination(votes: tuple[str, ...], gates: tuple[str, ...]) -> str:
    """The rule of issue 25 written out independently of `combine`, for the exhaustive test."""
    left = [v for v in votes if v != "not_measured"]
    if not left:
        return "not_measured"
    if any(g not in ("supported", "not_measured") for g in gates):
        return "inconclusive"
    supports = sum(v in ("supported", "mixed") for v in left)
    refutes = sum(v in ("refuted", "mixed") for v in left)
    if supports and refutes:
        return "mixed"
    if supports == len(left):
        return "supported"
    return "refuted" if refutes else "inconclusive"


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_combine_every_combination_of_votes_and_gates(k: int) -> None:
    """Every combination of k setting votes (all five verdicts) with 0, 1 or 2 gate votes."""
    for vs in itertools.product(VERDICTS, repeat=k):
        for g in range(3 if k <= 3 else 2):
            for gates in itertools.product(VERDICTS, repeat=g):
                assert combine(vs, gates) == _expected_combination(vs, gates), (vs, gates)
                verdict, reason = combine_reason(vs, gates)
                assert verdict == combine(vs, gates) and reason


# --- serialisation --------------------------------------------------------------------------------------------


def test_to_dict_is_json() -> None:
    estimates = [mean_ci([]), mean_ci([1.0]), mean_ci(VECTORS[0]), sign_test(VECTORS[1]), permutation_test([1, 2]),
                 tost(VECTORS[2], 0.5), Estimate("t", float("inf"), -float("inf"), float("nan"), 3, None, None, None)]
    for est in estimates:
        d = est.to_dict()
        json.dumps(d, allow_nan=False)
        assert all(v is None or type(v) in (str, int, float) for v in d.values())
    assert mean_ci([]).to_dict()["effect"] is None


# --- calibration (simulated, fixed seeds) ---------------------------------------------------------------------

N_SIM, N_SEEDS = 2000, 8


def _rate(verdicts: list[str], which: set[str]) -> float:
    return sum(v in which for v in verdicts) / len(verdicts)


def test_t_calibration() -> None:
    null = np.random.default_rng(11).normal(0.0, 1.0, (N_SIM, N_SEEDS))
    assert _rate([directional_verdict(mean_ci(x)) for x in null], {"supported", "refuted"}) <= ALPHA + 0.015
    mde = minimum_detectable_effect(1.0, N_SEEDS)
    shifted = np.random.default_rng(12).normal(mde, 1.0, (N_SIM, N_SEEDS))
    assert _rate([directional_verdict(mean_ci(x)) for x in shifted], {"supported"}) == pytest.approx(POWER, abs=0.04)


def test_tost_calibration() -> None:
    n = N_SEEDS
    margin = (sps.t.ppf(0.95, n - 1) + sps.t.ppf(0.90, n - 1)) / math.sqrt(n)  # the tost mde at sd = 1
    null = np.random.default_rng(13).normal(0.0, 1.0, (N_SIM, n))
    assert _rate([equivalence_verdict(tost(x, margin)) for x in null], {"supported"}) == pytest.approx(POWER, abs=0.04)


def test_sign_calibration() -> None:
    null = np.random.default_rng(14).normal(0.0, 1.0, (N_SIM, N_SEEDS))
    assert _rate([directional_verdict(sign_test(x)) for x in null], {"supported", "refuted"}) <= ALPHA


def test_fast_t_pvalues_equal_scipy_ttest():
    """The cached / ufunc path the power simulations use gives scipy.stats.ttest_1samp's p-values."""
    import numpy as np
    from scipy import stats as sps

    from bnlab.experiments.stats import _t_pvalue

    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 8, 30):
        v = [float(x) for x in rng.normal(0.3, 1.0, n)]
        for alt in ("two-sided", "greater", "less"):
            want = float(sps.ttest_1samp(v, 0.1, alternative=alt).pvalue)
            assert abs(_t_pvalue(v, 0.1, alt) - want) < 1e-12 * max(1.0, want)
