"""The sequential plan's error rates, by simulation: many audits of one setting, vectorised with numpy.

An audit looks at a setting at the seed counts of its schedule (`base.LOOKS`, e.g. 8, 12): at look k it runs
the setting's test at the nominal one-sided levels of `stats.schedule_levels` (Pocock-type alpha spending) and stops
at the first look that decides (supported or refuted); a setting still undecided at the last look (the cap) is
inconclusive. `simulate` runs that procedure on `sims` simulated audits at once (per-seed values drawn from
N(mean, sd²)), for each test type:

* ``t``: supported when the one-sided (1 − a_k) lower bound exceeds the threshold, refuted when the (1 − r_k) upper
  bound is below it (`stats.vote_estimate`);
* ``sign``: the exact binomial sign test; ``permutation``: the exact sign-flip test (all 2^n sign vectors);
* ``tost``: equivalence within ±margin (both one-sided t tests at a_k), refuted when the (1 − 2 r_k) interval lies
  wholly outside the margin.

Two numbers per test type answer the issue's error-control question and are printed on the protocol page: under a
true null (the effect at its threshold) how often is the setting decided at all (≤ 5%), and with the true effect at
an equivalence margin how often is it called equivalent (≤ 5%). `scalar_verdict` runs the same procedure through
`stats.vote_estimate` one audit at a time, the reference the vectorised version is tested against.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special
from scipy import stats as sps

from bnlab.experiments import stats

SIMS: int = 10_000
TESTS: tuple[str, ...] = ("t", "sign", "permutation", "tost", "signed_rank", "rank_tost")


@dataclass(frozen=True)
class Outcome:
    """Verdict shares over simulated audits of one setting, and when the decided ones stopped."""

    supported: float
    refuted: float
    inconclusive: float
    mean_n: float  # mean seed count at which an audit stopped (decided, or at the cap)
    decided_at_look: tuple[float, ...]  # share of audits decided at each look

    @property
    def decided(self) -> float:
        return self.supported + self.refuted


def levels(test: str, schedule: Sequence[int], voting: int = 1) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(support levels, refute levels) per look: one-sided nominal levels fixed by the schedule alone."""
    return (stats.schedule_levels(schedule, stats.SUPPORT_ALPHA[test], test),
            stats.schedule_levels(schedule, stats.REFUTE_ALPHA / max(voting, 1), test))


def _t_votes(x: np.ndarray, threshold: float, a_s: float, a_r: float) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[1]  # x: (sims, n)
    mean, sd = x.mean(axis=1), x.std(axis=1, ddof=1)  # (sims,)
    se = sd / np.sqrt(n)
    return mean - sps.t.ppf(1 - a_s, n - 1) * se > threshold, mean + sps.t.ppf(1 - a_r, n - 1) * se < threshold


def _sign_votes(x: np.ndarray, threshold: float, a_s: float, a_r: float) -> tuple[np.ndarray, np.ndarray]:
    d = x - threshold  # (sims, n); continuous draws: no ties
    untied = np.count_nonzero(d, axis=1)
    above = np.sum(d > 0, axis=1)
    # two-sided binomial p (symmetric null: twice the smaller tail, capped at 1), as scipy's binomtest
    p = np.minimum(1.0, 2 * np.minimum(sps.binom.cdf(above, untied, 0.5), sps.binom.sf(above - 1, untied, 0.5)))
    median = np.median(x, axis=1)
    return (median > threshold) & (p < 2 * a_s), (median < threshold) & (p < 2 * a_r)


@lru_cache(maxsize=32)
def _sign_vectors(n: int) -> np.ndarray:
    return (1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)).astype(float)  # (2^n, n)


def _extreme_counts(d: np.ndarray) -> np.ndarray:
    """Per row of d (sims, n): #{sign vectors s : |Σ s_i d_i| >= |Σ d_i|} over all 2^n, by meet in the middle.

    Split the n values into halves with partial sums a (2^h of them) and b (2^(n-h)); by the symmetry s -> -s the
    count is 2·#{(a, b): a + b >= c} with c = |Σ d|, and #{b >= c - a} is one binary search per a. All rows are
    searched at once by shifting row r by 4r after scaling each row by Σ|d| (so every sum lies in [-1, 1]). The
    tolerance 1e-9 (relative to Σ|d|, as `stats._sign_flip_p`) counts sums equal in exact arithmetic as extreme."""
    sims, n = d.shape
    scale = np.abs(d).sum(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    u = d / scale  # (sims, n), Σ|u| = 1
    h = n // 2
    a = u[:, :h] @ _sign_vectors(h).T if h else np.zeros((sims, 1))  # (sims, 2^h)
    b = np.sort(u[:, h:] @ _sign_vectors(n - h).T, axis=1)  # (sims, 2^(n-h)), sorted per row
    c = np.abs(u.sum(axis=1, keepdims=True))  # (sims, 1)
    offset = 4.0 * np.arange(sims)[:, None]  # rows apart: every value of row r lies in [4r - 1, 4r + 1]
    flat = (b + offset).ravel()
    queries = (c - a - 1e-9 + offset).ravel()  # (sims * 2^h,)
    below = np.searchsorted(flat, queries, side="left").reshape(sims, -1)  # entries < query, rows before included
    at_least = (np.arange(1, sims + 1)[:, None] * b.shape[1]) - below  # b >= c - a - tol within the row
    return 2 * at_least.sum(axis=1)


def _permutation_votes(x: np.ndarray, threshold: float, a_s: float, a_r: float) -> tuple[np.ndarray, np.ndarray]:
    d = x - threshold  # (sims, n)
    p = np.minimum(1.0, _extreme_counts(d) / 2.0 ** d.shape[1])
    mean = x.mean(axis=1)
    return (mean > threshold) & (p < 2 * a_s), (mean < threshold) & (p < 2 * a_r)


def _tost_votes(x: np.ndarray, margin: float, a_s: float, a_r: float) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[1]
    mean, se = x.mean(axis=1), x.std(axis=1, ddof=1) / np.sqrt(n)  # (sims,)
    # p < a_s for both one-sided tests <=> each t statistic beyond t_{1-a_s}; special.stdtrit is the t quantile
    q_s, q_r = special.stdtrit(n - 1, 1 - a_s), special.stdtrit(n - 1, 1 - a_r)
    equivalent = ((mean + margin) / se > q_s) & ((margin - mean) / se > q_s)
    outside = (mean - q_r * se >= margin) | (mean + q_r * se <= -margin)
    return equivalent, outside & ~equivalent


@lru_cache(maxsize=64)
def _signed_rank_law(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P(T+ >= t), P(T+ <= t)) for t = 0..n(n+1)/2: the exact untied null law of the signed-rank statistic."""
    pmf = stats._rank_sum_counts(tuple(2 * r for r in range(1, n + 1)))[::2] / 2.0**n
    return np.cumsum(pmf[::-1])[::-1], np.cumsum(pmf)


def _rank_tails(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of d (sims, n) of continuous draws (no ties, no zeros): P(T+ >= t) and P(T+ <= t) of its T+."""
    ranks = np.argsort(np.argsort(np.abs(d), axis=1), axis=1) + 1  # (sims, n): ranks of |d| per row
    t = np.sum(np.where(d > 0, ranks, 0), axis=1)  # (sims,)
    upper, lower = _signed_rank_law(d.shape[1])
    return upper[t], lower[t]


def _signed_rank_votes(x: np.ndarray, threshold: float, a_s: float, a_r: float) -> tuple[np.ndarray, np.ndarray]:
    upper, lower = _rank_tails(x - threshold)  # (sims,) each
    p = np.minimum(1.0, 2 * np.minimum(upper, lower))
    n = x.shape[1]
    i, j = np.triu_indices(n)
    hl = np.median((x[:, i] + x[:, j]) / 2, axis=1)  # Hodges–Lehmann estimate per audit
    return (hl > threshold) & (p < 2 * a_s), (hl < threshold) & (p < 2 * a_r)


def _rank_tost_votes(x: np.ndarray, margin: float, a_s: float, a_r: float) -> tuple[np.ndarray, np.ndarray]:
    above_low, below_low = _rank_tails(x + margin)  # H0 location <= -margin: P(T+ >= t) is its one-sided p
    above_high, below_high = _rank_tails(x - margin)  # H0 location >= +margin: P(T+ <= t)
    equivalent = (above_low < a_s) & (below_high < a_s)
    outside = (above_high < a_r) | (below_low < a_r)
    return equivalent, outside & ~equivalent


_VOTES = {"t": _t_votes, "sign": _sign_votes, "permutation": _permutation_votes, "tost": _tost_votes,
          "signed_rank": _signed_rank_votes, "rank_tost": _rank_tost_votes}
EQUIVALENCE: tuple[str, ...] = ("tost", "rank_tost")


def min_one_sided_p(test: str, n: int) -> float:
    """The smallest one-sided p the test can reach with n seeds: 1/2^n for the sign and rank tests (every seed on
    one side), 0 for the t-based tests (a continuous statistic)."""
    return 0.0 if test in ("t", "tost") else 0.5**n


def decidable(test: str, schedule: Sequence[int], voting: int = 1) -> tuple[bool, bool]:
    """(can support, can refute) at the cap of `schedule`: whether the cap's seed count lets the test reach the last
    look's one-sided levels at all. A plan where either is False has a rule that cannot decide that way (for a rank
    test: too few seeds at the cap); `tests/test_experiments_sequential.py` checks every claim's settings."""
    a_s, a_r = levels(test, schedule, voting)
    floor = min_one_sided_p(test, int(schedule[-1]))
    return floor < a_s[-1], floor < a_r[-1]


def simulate(test: str, schedule: Sequence[int], mean: float, sd: float = 1.0, threshold: float = 0.0,
             sims: int = SIMS, seed: int = 0, voting: int = 1) -> Outcome:
    """Verdict shares of the sequential procedure over `sims` audits of one setting (true effect `mean`)."""
    if test not in _VOTES:
        raise ValueError(f"no sequential simulation for test {test!r} (choose from {', '.join(TESTS)})")
    schedule = [int(n) for n in schedule]
    a_s, a_r = levels(test, schedule, voting)
    x = np.random.default_rng(seed).normal(mean, sd, size=(sims, schedule[-1]))  # (sims, cap)
    verdict = np.zeros(sims, dtype=int)  # 0 undecided, 1 supported, -1 refuted
    stopped_n = np.full(sims, schedule[-1])
    at_look = []
    for k, n in enumerate(schedule):
        open_ = verdict == 0
        sup, ref = _VOTES[test](x[open_, :n], threshold, a_s[k], a_r[k])
        idx = np.flatnonzero(open_)
        verdict[idx[sup]], verdict[idx[ref & ~sup]] = 1, -1
        stopped_n[idx[sup | ref]] = n
        at_look.append(float(np.sum(sup | ref)) / sims)
    return Outcome(float(np.mean(verdict == 1)), float(np.mean(verdict == -1)), float(np.mean(verdict == 0)),
                   float(stopped_n.mean()), tuple(at_look))


def scalar_verdict(test: str, schedule: Sequence[int], values: Sequence[float], threshold: float = 0.0,
                   voting: int = 1) -> tuple[str, int | None]:
    """(verdict, look decided at, 1-based or None) of one audit through `stats.vote_estimate` itself."""
    a_s, a_r = levels(test, schedule, voting)
    for k, n in enumerate(schedule):
        _, vote = stats.vote_estimate(list(values[:n]), test, threshold, a_s[k], a_r[k])
        if vote in ("supported", "refuted"):
            return vote, k + 1
    return "inconclusive", None


@lru_cache(maxsize=16)
def error_rates(schedule: tuple[int, ...], sims: int = SIMS) -> dict[str, dict[str, float]]:
    """Per test type: the share of null audits decided (effect at its threshold) and, for tost, the share called
    equivalent with the true effect at the margin (the least favourable point). Fixed seeds: the same numbers on
    every run, so the protocol page can print them."""
    out: dict[str, dict[str, float]] = {}
    for i, test in enumerate(TESTS):
        if test in EQUIVALENCE:
            at_margin = simulate(test, schedule, mean=1.0, threshold=1.0, sims=sims, seed=100 + i)
            out[test] = {"equivalent_at_margin": at_margin.supported, "mean_n": at_margin.mean_n}
        else:
            null = simulate(test, schedule, mean=0.0, sims=sims, seed=100 + i)
            out[test] = {"decided_under_null": null.decided, "supported": null.supported,
                         "refuted": null.refuted, "mean_n": null.mean_n}
    return out


def decided_looks(outcome: Outcome) -> Counter:
    """{look (1-based): share of audits decided there} of an outcome, for reports."""
    return Counter({k + 1: s for k, s in enumerate(outcome.decided_at_look) if s})
