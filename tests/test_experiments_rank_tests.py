"""The rank tests of heavy-tailed endpoints (stats.signed_rank_test, stats.rank_tost) against scipy, brute-force
enumeration of all sign patterns, and test inversion; diverged runs (±inf) as the worst outcome."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from bnlab.experiments import base, stats


def _brute_p(values: list[float]) -> float:
    """Two-sided sign-flip p of the signed mid-ranks, by listing all 2^n sign patterns (zeros dropped)."""
    v = [x for x in values if x != 0]
    r = sps.rankdata(np.abs(v))
    observed = abs(float(np.sign(v) @ r))
    hits = sum(abs(float(np.asarray(s) @ r)) >= observed - 1e-9 for s in itertools.product((1, -1), repeat=len(v)))
    return hits / 2 ** len(v)


def test_signed_rank_p_is_scipys_exact_wilcoxon_without_ties() -> None:
    rng = np.random.default_rng(0)
    for n in (5, 8, 12, 25):
        for _ in range(20):
            x = rng.normal(0.4, 1.0, n)
            assert stats.signed_rank_test(x).p == pytest.approx(sps.wilcoxon(x, method="exact").pvalue, abs=1e-12)


def test_signed_rank_with_ties_zeros_and_infinities_is_the_exact_sign_flip_of_mid_ranks() -> None:
    cases = [[1.0, 1.0, -2.0, math.inf, 3.0, 0.0, -math.inf, 5.0],
             [2.0, 2.0, 2.0, -2.0, math.inf, math.inf, 1.0],
             [-math.inf, -1.0, -1.0, 0.5, 0.0, -3.0]]
    for x in cases:
        assert stats.signed_rank_test(x).p == pytest.approx(_brute_p(x), abs=1e-12), x


def test_a_threshold_shifts_the_values() -> None:
    x = [0.3, 1.2, 0.9, 2.0, -0.1, 1.5, 0.8, 1.1]
    a, b = stats.signed_rank_test(x, threshold=0.5), stats.signed_rank_test([v - 0.5 for v in x])
    assert a.p == pytest.approx(b.p) and a.effect == pytest.approx(b.effect + 0.5)


def test_hodges_lehmann_interval_is_the_set_of_locations_the_test_does_not_reject() -> None:
    """Test inversion, the interval's definition: a location θ lies inside the 95% interval iff the exact test of
    values - θ has p > 5% (checked on a fine grid between the Walsh averages)."""
    rng = np.random.default_rng(3)
    for n in (7, 10, 14):
        x = rng.normal(0.0, 1.0, n)
        est = stats.signed_rank_test(x)
        walsh = np.sort([(x[i] + x[j]) / 2 for i in range(n) for j in range(i, n)])
        assert est.effect == pytest.approx(float(np.median(walsh)))
        mids = (walsh[:-1] + walsh[1:]) / 2  # the p of values - θ is constant between Walsh averages
        inside = [m for m in mids if sps.wilcoxon(x - m, method="exact").pvalue > 0.05]
        assert est.ci_low == pytest.approx(walsh[np.searchsorted(walsh, min(inside)) - 1])
        assert est.ci_high == pytest.approx(walsh[np.searchsorted(walsh, max(inside))])


def test_a_diverged_run_is_the_worst_rank_not_a_missing_seed() -> None:
    """Seven seeds where BN wins by ~2 log units and one where the no-BN net diverged (+inf): the diverged seed
    strengthens the case (rank 8 of 8), where dropping it would leave 7 seeds (p 2/128 at best)."""
    x = [2.0, 2.5, 1.7, 3.1, 2.2, 2.9, 1.8, math.inf]
    est = stats.signed_rank_test(x)
    assert est.n == 8 and est.p == pytest.approx(2 / 256) and est.ci_high is None  # the interval is unbounded above
    assert stats.vote_estimate(x, "signed_rank", 0.0, 0.025, 0.025)[1] == "supported"
    bn_diverged = [2.0, 2.5, 1.7, 3.1, 2.2, 2.9, 1.8, -math.inf]  # the BN net diverged: worst outcome for BN
    assert stats.signed_rank_test(bn_diverged).p == pytest.approx(_brute_p(bn_diverged))
    assert stats.signed_rank_test(bn_diverged).p > est.p
    assert stats.signed_rank_test([None, math.nan, 1.0, 2.0]).n == 2  # not measured (nan, None) is left out


def test_t_tests_refuse_a_diverged_value() -> None:
    """A bounded endpoint scores a diverged net at the bottom of its scale; an infinite value there is a bug."""
    with pytest.raises(ValueError, match="infinite"):
        stats.vote_estimate([0.1, 0.2, math.inf], "t", 0.0, 0.025, 0.025)
    with pytest.raises(ValueError, match="infinite"):
        stats.vote_estimate([0.1, 0.2, -math.inf], "tost", 0.5, 0.05, 0.025)


def test_rank_tost_votes() -> None:
    close = [0.01, -0.02, 0.03, 0.005, 0.01, -0.01, 0.02, 0.015]
    assert stats.vote_estimate(close, "rank_tost", 0.1, 0.05, 0.025)[1] == "supported"
    far = [2.0, 3.0, math.inf, 2.5, 3.0, 2.2, 2.7, 3.1]
    assert stats.vote_estimate(far, "rank_tost", 0.1, 0.05, 0.025)[1] == "refuted"
    assert stats.vote_estimate([-v for v in far], "rank_tost", 0.1, 0.05, 0.025)[1] == "refuted"
    noisy = [0.05, -0.3, 0.2, 0.4, -0.5, 0.1, -0.2, 0.3]
    assert stats.vote_estimate(noisy, "rank_tost", 0.1, 0.05, 0.025)[1] == "inconclusive"
    est = stats.rank_tost(close, 0.1)
    p_low = sps.wilcoxon(np.asarray(close) + 0.1, alternative="greater", method="exact").pvalue
    p_high = sps.wilcoxon(np.asarray(close) - 0.1, alternative="less", method="exact").pvalue
    assert est.p == pytest.approx(max(p_low, p_high))
    with pytest.raises(ValueError):
        stats.rank_tost(close, 0.0)


def test_five_seeds_cannot_decide_a_rank_test() -> None:
    """2/32 > 5%: why the plan's caps give rank-tested settings at least 8 seeds."""
    assert stats.signed_rank_test([1, 2, 3, 4, 5]).p == pytest.approx(2 / 32)
    assert stats.vote_estimate([1, 2, 3, 4, 5], "signed_rank", 0.0, 0.025, 0.025)[1] == "inconclusive"


def test_every_unit_has_one_fixed_test() -> None:
    assert base.fixed_test("log ratio") == "signed_rank" and base.fixed_test("log ratio", True) == "rank_tost"
    assert base.fixed_test("accuracy") == "t" and base.fixed_test("accuracy", True) == "tost"
    assert base.fixed_test("decades of lr (grid)") == "sign"
    with pytest.raises(base.BnlabError, match="no test is fixed"):
        base.fixed_test("furlongs")
