"""The statistics every claim verdict uses: per-seed effects, their tests, and the one combination rule.

A claim's effect is measured once per seed; a test turns those per-seed values into an `Estimate` and a verdict rule
turns the estimate into "supported" | "refuted" | "inconclusive" (pre-registered: the rule never looks at the data
twice). Directional rules test the *positive* direction: a claim that predicts a negative effect flips the sign of its
values before testing. All tests are two-sided at `ALPHA`; every number returned is a plain float or None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from bnlab.results import VERDICTS

ALPHA: float = 0.05  # two-sided test level of every directional rule
POWER: float = 0.80  # the power an MDE is computed for


@dataclass(frozen=True)
class Estimate:
    """An effect over seeds, as a verdict rule sees it.

    `level` is the coverage of [ci_low, ci_high]: 0.95 for t/sign/permutation/signed_rank, 1 - 2*alpha (0.90) for
    "tost" and "rank_tost".
    """

    test: str  # "t" | "sign" | "permutation" | "tost" | "signed_rank" | "rank_tost"
    effect: float  # mean of the per-seed values (median for "sign", Hodges–Lehmann for the rank tests); nan if n == 0
    ci_low: float | None
    ci_high: float | None
    n: int  # number of finite per-seed values used
    sd: float | None  # sample standard deviation (ddof=1); None when n < 2
    p: float | None  # two-sided p of H0 "effect == threshold"; for tost the larger one-sided p
    mde: float | None  # minimum detectable effect at this n and sd; for tost the smallest margin shown at POWER
    threshold: float = 0.0  # the null value tested against (the margin for tost)
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; NaN and ±inf become None."""
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _as_float(x: float | None) -> float:
    """x as a float, nan when missing or not a number."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def finite(values: Iterable[float | None]) -> list[float]:
    """The finite values as plain floats (None, nan and ±inf dropped)."""
    return [f for f in map(_as_float, values) if math.isfinite(f)]


def log_ratio(a: float | None, b: float | None) -> float:
    """log(a / b), computed as log a - log b (no overflow); nan unless both are positive and finite."""
    fa, fb = _as_float(a), _as_float(b)
    if not (math.isfinite(fa) and math.isfinite(fb) and fa > 0 and fb > 0):
        return math.nan
    return math.log(fa) - math.log(fb)


def log_mean(values: Iterable[float | None]) -> float:
    """Mean of log x over the positive finite x (the log of their geometric mean); nan if there are none.

    For averaging heavy-tailed, ratio-type measures over probe times, where one large value would dominate a mean.
    """
    logs = [math.log(x) for x in finite(values) if x > 0]
    return math.fsum(logs) / len(logs) if logs else math.nan


def _paired(a: Sequence, b: Sequence, op) -> list[float]:
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return [op(x, y) for x, y in zip(a, b)]


def _difference(x: float | None, y: float | None) -> float:
    fx, fy = _as_float(x), _as_float(y)
    return fx - fy if math.isfinite(fx) and math.isfinite(fy) else math.nan


def paired_differences(a: Sequence, b: Sequence) -> list[float]:
    """a_i - b_i per seed; nan where either is missing or non-finite. ValueError if the lengths differ."""
    return _paired(a, b, _difference)


def paired_log_ratios(a: Sequence, b: Sequence) -> list[float]:
    """log(a_i / b_i) per seed; nan where either is not positive finite. ValueError if the lengths differ."""
    return _paired(a, b, log_ratio)


def _spread(v: list[float]) -> float | None:
    """Sample sd (ddof=1); exactly 0.0 when all values are equal (float means would leave ~1e-17); None if n < 2."""
    if len(v) < 2:
        return None
    return 0.0 if max(v) == min(v) else float(np.std(v, ddof=1))


# The simulated audits of `bnlab.experiments.power` call these thousands of times: the quantiles and binomial tails
# depend only on small integers and are cached; tail probabilities of t use scipy's Student t cdf ufunc
# (`scipy.special.stdtr`, the function `scipy.stats.t` itself evaluates) without the per-call argument checks.
@lru_cache(maxsize=4096)
def _t_quantile(q: float, df: int) -> float:
    return float(stats.t.ppf(q, df))


def _t_upper(x: float, df: int) -> float:
    """P(T > x) for T ~ Student t with df degrees of freedom."""
    return float(special.stdtr(df, -x))


def _t_pvalue(v: list[float], threshold: float, alternative: str = "two-sided") -> float:
    """p of the one-sample t test of H0 mean == threshold (as `scipy.stats.ttest_1samp`); needs sd > 0."""
    n = len(v)
    t = (float(np.mean(v)) - threshold) / (float(np.std(v, ddof=1)) / math.sqrt(n))
    if alternative == "greater":
        return _t_upper(t, n - 1)
    if alternative == "less":
        return _t_upper(-t, n - 1)
    return min(1.0, 2 * _t_upper(abs(t), n - 1))


@lru_cache(maxsize=4096)
def _binom_two_sided(k: int, n: int) -> float:
    return float(stats.binomtest(k, n, 0.5).pvalue)


@lru_cache(maxsize=1024)
def _median_rank(n: int, level: float) -> int:
    tails = stats.binom.cdf(np.arange(n), n, 0.5)  # P(B <= j), j = 0..n-1
    return int(np.sum(tails <= (1 - level) / 2))  # = largest j + 1 with P(B <= j) <= (1 - level)/2


def _t_interval(effect: float, sd: float, n: int, level: float) -> tuple[float, float]:
    """mean ± t_{(1+level)/2, n-1} · sd/√n."""
    half = _t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return effect - half, effect + half


def _t_power(d: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample t test at standardized true mean d = δ/sd (noncentral t, df = n-1).

    P(T > t_c) + P(T < -t_c) with T ~ nct(n-1, d√n); the lower tail is taken as sf(t_c; -d√n), which scipy
    evaluates stably where cdf(-t_c; d√n) returns nan for large noncentrality.
    """
    df, nc = n - 1, d * math.sqrt(n)
    tc = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(tc, df, nc) + stats.nct.sf(tc, df, -nc))


@lru_cache(maxsize=1024)
def _standardized_mde(n: int, alpha: float, power: float) -> float:
    # the normal approximation (z_{1-α/2} + z_power)/√n is a lower bound: start there and double to bracket the root
    lo = 0.0
    hi = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / math.sqrt(n)
    while _t_power(hi, n, alpha) < power:
        lo, hi = hi, 2 * hi
    return float(optimize.brentq(lambda d: _t_power(d, n, alpha) - power, lo, hi, xtol=1e-12))


def minimum_detectable_effect(sd: float | None, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest true mean δ > 0 that a two-sided one-sample t test at level alpha detects with probability power.

    Exact: solves P(|T| > t_{1-α/2, n-1}) = power for T ~ noncentral t(df = n-1, nc = δ√n/sd) by Brent's method
    (Cohen 1988, ch. 2), in the units of the values. None when n < 2 or sd is None; 0.0 when sd == 0.
    """
    if sd is None or n < 2:
        return None
    if not (0 < alpha < power < 1):
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    return 0.0 if sd == 0 else float(sd) * _standardized_mde(int(n), float(alpha), float(power))


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 max_n: int = 10_000) -> int | None:
    """Smallest n >= 2 at which the two-sided one-sample t test has `power` for true mean `effect`, per-seed sd.

    Only |effect| / sd matters. Power grows with n, so a bisection over [2, max_n] finds it; None if effect == 0
    or more than max_n seeds are needed. sd == 0 gives 2 (the MDE is then 0).
    """
    if effect == 0 or max_n < 2:
        return None
    if sd == 0:
        return 2
    d = abs(effect) / sd
    if _t_power(d, max_n, alpha) < power:
        return None
    lo, hi = 1, max_n  # invariant: power(lo) < target (or lo == 1) and power(hi) >= target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _t_power(d, mid, alpha) >= power else (mid, hi)
    return hi


def mean_ci(values: Iterable[float | None], threshold: float = 0.0, level: float = 0.95) -> Estimate:
    """One-sample Student t over the finite values: CI = mean ± t_{(1+level)/2, n-1} sd/√n, p of H0 mean == threshold.

    n == 1: effect = the value, no CI and no p. Zero spread (n >= 2): the zero-width CI [mean, mean] but p None, since
    a zero-width interval carries no evidence about the seed-to-seed noise and must never decide a verdict.
    """
    v = finite(values)
    n, sd = len(v), _spread(v)
    effect = float(np.mean(v)) if v else math.nan
    ci_low = ci_high = p = None
    if sd is not None:
        effect = v[0] if sd == 0 else effect
        ci_low, ci_high = _t_interval(effect, sd, n, level)
        p = None if sd == 0 else _t_pvalue(v, float(threshold))
    return Estimate("t", effect, ci_low, ci_high, n, sd, p, minimum_detectable_effect(sd, n), float(threshold), level)


def _median_ci(v: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """Distribution-free CI for the median: [x_(k), x_(n-k+1)] with coverage 1 - 2·P(B <= k-1), B ~ Bin(n, 1/2).

    k is the largest with coverage >= level (Conover 1999, §3.2); None when even [x_(1), x_(n)] falls short (n <= 5).
    """
    n = len(v)
    if n == 0:
        return None, None
    k = _median_rank(n, float(level))
    if k == 0:
        return None, None
    x = sorted(v)
    return x[k - 1], x[n - k]


def sign_test(values: Iterable[float | None], threshold: float = 0.0) -> Estimate:
    """Exact two-sided binomial sign test (Conover 1999, §3.4) of H0 median == threshold, for discrete outcomes.

    Values equal to the threshold are dropped (the usual treatment of ties); p = binomtest(#above, #untied, 1/2).
    effect = median of all finite values, CI = the order-statistic CI for the median (see `_median_ci`), mde = the
    t-test MDE at this n and sd, as a rough guide only. With 5 seeds the smallest possible p is 2/32 = 0.0625, so a
    sign test needs at least 6 seeds to decide anything.
    """
    v = finite(values)
    untied = [x for x in v if x != threshold]
    above = sum(x > threshold for x in untied)
    p = _binom_two_sided(above, len(untied)) if untied else None
    effect = float(np.median(v)) if v else math.nan
    ci_low, ci_high = _median_ci(v)
    sd = _spread(v)
    return Estimate("sign", effect, ci_low, ci_high, len(v), sd, p, minimum_detectable_effect(sd, len(v)),
                    float(threshold))


def _sign_flip_p(d: np.ndarray, max_exact: int, samples: int) -> float:
    """Two-sided p of the sign-flip test: share of sign vectors s with |Σ s_i d_i| >= |Σ d_i| (Good 2005, §3.1)."""
    n = len(d)
    if n <= max_exact:  # all 2^n sign vectors, as bit patterns of 0..2^n-1
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = 1 - 2 * np.random.default_rng(0).integers(0, 2, size=(samples, n))
    observed = abs(float(d.sum()))
    # a tolerance relative to Σ|d_i| so that sums equal in exact arithmetic but not in floats count as extreme
    extreme = int(np.sum(np.abs(signs @ d) >= observed - 1e-9 * float(np.abs(d).sum())))
    return extreme / 2**n if n <= max_exact else (1 + extreme) / (1 + samples)


def permutation_test(values: Iterable[float | None], threshold: float = 0.0, max_exact: int = 16,
                     samples: int = 20_000) -> Estimate:
    """Paired sign-flip permutation test of H0 mean(values - threshold) == 0 (Fisher 1935; Good 2005).

    Exact over all 2^n sign vectors for n <= max_exact, else `samples` random flips from default_rng(0) with
    p = (1 + #extreme) / (1 + samples). The decision uses p only; the CI is the t interval, descriptive.
    """
    v = finite(values)
    t = mean_ci(v, threshold)
    p = _sign_flip_p(np.asarray(v) - threshold, max_exact, samples) if v else None
    return Estimate("permutation", t.effect, t.ci_low, t.ci_high, t.n, t.sd, p, t.mde, float(threshold))


# ----------------------------------------------------------------------------- rank tests (heavy tails, divergence)


def ranked(values: Iterable[float | None]) -> list[float]:
    """The values a rank test uses: finite ones and ±inf (a diverged run or probe, ranked beyond every finite value:
    the worst outcome for the net that diverged, never a missing seed); None and nan (not measured) dropped."""
    return [f for f in map(_as_float, values) if not math.isnan(f)]


@lru_cache(maxsize=1024)
def _rank_sum_counts(doubled: tuple[int, ...]) -> np.ndarray:
    """counts[s] = #{subsets A of the items : Σ_{i in A} q_i = s} for integer weights q (the doubled mid-ranks), by
    the usual subset-sum recursion. Under the sign-flip null every subset (the positively signed items) is equally
    likely, so counts / 2^n is the exact null law of T+ = Σ of the positive ranks (doubled), ties included."""
    counts = np.zeros(sum(doubled) + 1)
    counts[0] = 1.0
    for q in doubled:
        counts[q:] = counts[q:] + counts[: len(counts) - q].copy()
    return counts


def _signed_rank_tails(d: Sequence[float]) -> tuple[float, float, float]:
    """(P(T+ >= t), P(T+ <= t), t - E T+) of the exact signed-rank statistic of d under the sign-flip null.

    Zeros are dropped (Wilcoxon's treatment of ties at the null value); |d| gets mid-ranks (±inf ranks last); the
    null law is enumerated exactly over all 2^n sign patterns with the ties as they are (`_rank_sum_counts`), so the
    test is exact for any n and any ties (Lehmann 1975, §3.2; Hollander, Wolfe & Chicken 2014, §3.1)."""
    x = np.asarray([v for v in d if v != 0], dtype=float)
    if not len(x):
        return 1.0, 1.0, 0.0
    doubled = np.rint(2 * stats.rankdata(np.abs(x))).astype(int)  # mid-ranks are multiples of 1/2
    t = int(doubled[x > 0].sum())
    counts = _rank_sum_counts(tuple(sorted(int(q) for q in doubled)))
    total = counts.sum()
    return float(counts[t:].sum() / total), float(counts[: t + 1].sum() / total), (t - doubled.sum() / 2) / 2


def _walsh_averages(d: Sequence[float]) -> np.ndarray:
    """(d_i + d_j)/2 for i <= j; +inf with -inf (two seeds where opposite nets diverged) averages to 0."""
    x = np.asarray(d, dtype=float)
    i, j = np.triu_indices(len(x))
    with np.errstate(invalid="ignore"):  # inf + -inf -> nan, replaced by 0 below
        s = x[i] + x[j]
    return np.where(np.isnan(s), 0.0, s / 2)


@lru_cache(maxsize=1024)
def _walsh_rank(n: int, level: float) -> int:
    """k with the signed-rank CI [W_(k), W_(M+1-k)] of coverage >= level (untied law): the largest k with
    P(T+ <= k - 1) <= (1 - level)/2; 0 when no interval reaches the level."""
    cdf = np.cumsum(_rank_sum_counts(tuple(2 * r for r in range(1, n + 1)))[::2]) / 2.0**n  # P(T+ <= c), c integer
    return int(np.sum(cdf <= (1 - level) / 2))


def _hodges_lehmann(v: list[float], level: float) -> tuple[float, float | None, float | None]:
    """(Hodges–Lehmann estimate: the median of the Walsh averages, its distribution-free CI) (Hollander et al. §3.2)."""
    w = np.sort(_walsh_averages(v))
    k = _walsh_rank(len(v), float(level))
    lo, hi = (float(w[k - 1]), float(w[len(w) - k])) if k else (None, None)
    return float(np.median(w)), lo, hi


def signed_rank_test(values: Iterable[float | None], threshold: float = 0.0, level: float = 0.95) -> Estimate:
    """Exact Wilcoxon signed-rank test of H0 "the per-seed values are symmetric about `threshold`" -- the sign-flip
    permutation test of the signed ranks (Wilcoxon 1945; Good 2005, §3.1), for heavy-tailed per-seed log ratios.

    Ranks make it insensitive to how far a value lies out: a log ratio of 10⁴ weighs as one rank, and a diverged run
    (±inf, see `ranked`) counts as the worst outcome for the net that diverged. p = P(|T+ - E T+| >= |t - E T+|)
    exactly (ties and zeros as in `_signed_rank_tails`). effect = the Hodges–Lehmann estimate, CI = its exact
    `level` interval from the Walsh averages (None where fewer than ~6 seeds cannot reach `level`); sd and mde are
    of the finite values (t-based), a planning guide only. The smallest attainable two-sided p is 2/2^n, so a
    setting must have enough seeds at its cap for its levels (`bnlab.experiments.sequential.decidable`)."""
    v = [x - threshold for x in ranked(values)]
    fin = finite(v)
    p = None
    if v:
        upper, lower, _ = _signed_rank_tails(v)
        p = min(1.0, 2 * min(upper, lower))
    effect, lo, hi = _hodges_lehmann(v, level) if v else (math.nan, None, None)
    lo, hi = (None if b is None or not math.isfinite(b) else b + threshold for b in (lo, hi))
    sd = _spread(fin)
    return Estimate("signed_rank", effect + threshold, lo, hi, len(v), sd, p, minimum_detectable_effect(sd, len(fin)),
                    float(threshold), level)


def rank_tost(values: Iterable[float | None], margin: float, level: float = 0.95) -> Estimate:
    """Equivalence |location| < margin by two one-sided exact signed-rank tests (the rank analogue of Schuirmann's
    TOST; Wellek 2010, §5.4): p = max(P of H0 "location <= -margin", P of H0 "location >= +margin"), each the one-sided
    signed-rank p of values ∓ margin. A diverged run (±inf) lies beyond any margin. effect = Hodges–Lehmann, CI = its
    (1 - 2α) interval (α = 1 - level), as tost's; mde = the t-based tost figure of the finite values, a guide."""
    if not margin > 0:
        raise ValueError(f"rank_tost needs margin > 0, got {margin}")
    v = ranked(values)
    alpha = 1 - level
    p = None
    if v:
        p = max(_signed_rank_tails([x + margin for x in v])[0], _signed_rank_tails([x - margin for x in v])[1])
    effect, lo, hi = _hodges_lehmann(v, 1 - 2 * alpha) if v else (math.nan, None, None)
    lo, hi = (None if b is None or not math.isfinite(b) else b for b in (lo, hi))
    t = tost(finite(v), margin, level) if len(finite(v)) >= 2 else None
    return Estimate("rank_tost", effect, lo, hi, len(v), _spread(finite(v)), p, t.mde if t else None, float(margin),
                    1 - 2 * alpha)


def tost(values: Iterable[float | None], margin: float, level: float = 0.95) -> Estimate:
    """Two one-sided t tests of equivalence |mean| < margin (Schuirmann 1987), at alpha = 1 - level.

    p = max(p of H0 mean <= -margin, p of H0 mean >= +margin); p < alpha ⇔ the (1 - 2α) = 90% t interval lies inside
    (-margin, margin), and that interval is the CI reported (Estimate.level = 1 - 2α). mde = the smallest margin shown
    with probability POWER when the true mean is 0: (t_{1-α, n-1} + t_{1-(1-POWER)/2, n-1}) · sd/√n (Chow, Shao &
    Wang 2008, §3.2.3). Zero spread gives p None, like `mean_ci`. ValueError unless margin > 0.
    """
    if not margin > 0:
        raise ValueError(f"tost needs margin > 0, got {margin}")
    v = finite(values)
    n, sd = len(v), _spread(v)
    alpha = 1 - level
    effect = float(np.mean(v)) if v else math.nan
    ci_low = ci_high = p = mde = None
    if sd is not None:
        effect = v[0] if sd == 0 else effect
        ci_low, ci_high = _t_interval(effect, sd, n, 1 - 2 * alpha)
        tq = _t_quantile(1 - alpha, n - 1) + _t_quantile(1 - (1 - POWER) / 2, n - 1)
        mde = float(tq * sd / math.sqrt(n))
        if sd > 0:
            p = max(_t_pvalue(v, -margin, "greater"), _t_pvalue(v, margin, "less"))
    return Estimate("tost", effect, ci_low, ci_high, n, sd, p, mde, float(margin), 1 - 2 * alpha)


def directional_verdict(est: Estimate, threshold: float | None = None) -> str:
    """Did the effect go beyond the threshold in the predicted (positive) direction?

    "t": CI wholly above the threshold -> "supported", wholly below -> "refuted"; no CI or no p (n < 2, zero spread)
    -> "inconclusive". "sign" / "permutation": p < 1 - est.level (= ALPHA) and effect > threshold -> "supported",
    and effect < threshold -> "refuted"; otherwise "inconclusive" (the CI never decides; a sign-test median sitting on
    the threshold is inconclusive). threshold defaults to est.threshold; p-based tests refuse another one, since their
    p was computed against est.threshold. A claim predicting a negative effect flips the sign of its values first.
    """
    thr = est.threshold if threshold is None else float(threshold)
    if est.test == "t":
        if est.ci_low is None or est.ci_high is None or est.p is None:
            return "inconclusive"
        return "supported" if est.ci_low > thr else "refuted" if est.ci_high < thr else "inconclusive"
    if est.test in ("sign", "permutation", "signed_rank"):
        if thr != est.threshold:
            raise ValueError(f"a {est.test} test's p is against {est.threshold}; re-run it for threshold {thr}")
        if est.p is None or not est.p < 1 - est.level:
            return "inconclusive"
        return "supported" if est.effect > thr else "refuted" if est.effect < thr else "inconclusive"
    raise ValueError(f"directional_verdict does not take a {est.test!r} estimate (tost: use equivalence_verdict)")


def equivalence_verdict(est: Estimate) -> str:
    """Verdict of a "tost" Estimate with α = (1 - est.level)/2 (= ALPHA by default).

    "supported" (equivalent) when p < α ⇔ the 90% t interval lies inside ±margin; "refuted" when the 95% t interval,
    recomputed from n, sd and effect, lies wholly outside (-margin, margin), i.e. a difference of at least the margin
    is shown; otherwise "inconclusive". Zero spread never decides.
    """
    if est.test != "tost":
        raise ValueError(f"equivalence_verdict needs a 'tost' estimate, got {est.test!r}")
    alpha = (1 - est.level) / 2
    if est.p is None or est.sd is None or est.sd == 0:
        return "inconclusive"
    if est.p < alpha:
        return "supported"
    low, high = _t_interval(est.effect, est.sd, est.n, 1 - alpha)
    return "refuted" if low >= est.threshold or high <= -est.threshold else "inconclusive"


def combine(verdicts: Iterable[str], gates: Iterable[str] = ()) -> str:
    """THE one rule that combines the votes of a claim's settings: a claim is a universal statement ("BN does X").

    1. "not_measured" entries are ignored; if nothing is left -> "not_measured".
    2. a gate (a manipulation check or a positive control, `gates`: their votes) that is not "supported" -> the
       claim is "inconclusive": the experiment did not show it could detect what it looks for. Gates never vote.
    3. some setting "supported" (or "mixed") and some "refuted" (or "mixed") -> "mixed": holds here, fails there.
    4. every setting "supported" -> "supported" (one undecided setting leaves the universal statement open).
    5. at least one "refuted" and none "supported" -> "refuted": one counter-example refutes a universal statement.
    6. otherwise (no refutation, some setting undecided) -> "inconclusive".
    An unknown verdict string is a ValueError naming it. `combine_reason` says which rule applied.
    """
    return combine_reason(verdicts, gates)[0]


def combine_reason(verdicts: Iterable[str], gates: Iterable[str] = ()) -> tuple[str, str]:
    """(`combine`'s verdict, a plain sentence naming the rule that decided it)."""
    votes, gate_votes = list(verdicts), list(gates)
    for v in votes + gate_votes:
        if v not in VERDICTS:
            raise ValueError(f"unknown verdict {v!r}; expected one of {VERDICTS}")
    seen = [v for v in votes if v != "not_measured"]
    if not seen:
        return "not_measured", "no setting was measured"
    failed = [g for g in gate_votes if g not in ("supported", "not_measured")]
    if failed:
        return "inconclusive", "a gate (manipulation check or positive control) did not pass, so no setting votes"
    pro = any(v in ("supported", "mixed") for v in seen)
    con = any(v in ("refuted", "mixed") for v in seen)
    if pro and con:
        return "mixed", "some settings support the claim and some refute it"
    if all(v == "supported" for v in seen):
        return "supported", "every setting supports the claim"
    if con:
        return "refuted", "at least one setting refutes the claim and none supports it"
    return "inconclusive", "no setting refutes the claim and not every setting supports it"


# ----------------------------------------------------------------------------- group-sequential levels

SPENDING: str = "Lan-DeMets Pocock-type alpha spending, alpha(t) = alpha * ln(1 + (e - 1) t)"
BOUNDARY_PATHS: int = 2**19  # Brownian paths that fix the boundaries (seeded; the levels are rounded to 1e-5)


def pocock_spending(t: float, alpha: float) -> float:
    """Lan & DeMets (1983) Pocock-type spending: the share of one-sided `alpha` spent by information fraction t."""
    return float(alpha * math.log(1 + (math.e - 1) * min(max(t, 0.0), 1.0)))


@lru_cache(maxsize=256)
def sequential_levels(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """Nominal one-sided levels a_1..a_K of a group-sequential test with looks at information `fractions`
    (n_k / n_K, increasing, the last 1), spending one-sided `alpha` by `pocock_spending`.

    Boundary k is the z value c_k with P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) = α(t_k) − α(t_{k−1})
    under H0, Z_k = B(t_k)/√t_k for a standard Brownian motion B (Jennison & Turnbull 2000, §7.2); found on
    `BOUNDARY_PATHS` simulated paths (fixed seed), and a_k = 1 − Φ(c_k). One look gives (alpha,). The levels are
    fixed by the plan alone, before any data; each test then rejects at look k when its own one-sided p < a_k.
    """
    if len(fractions) == 1:
        return (float(alpha),)
    t = np.asarray(fractions, dtype=float)
    if not (np.all(np.diff(t) > 0) and t[0] > 0 and abs(t[-1] - 1.0) < 1e-12):
        raise ValueError(f"information fractions must increase to 1, got {fractions}")
    rng = np.random.default_rng(20261206)
    steps = rng.standard_normal((BOUNDARY_PATHS, len(t))) * np.sqrt(np.diff(t, prepend=0.0))  # (M, K)
    z = np.cumsum(steps, axis=1) / np.sqrt(t)  # (M, K): the standardized statistic at each look
    alive = np.ones(BOUNDARY_PATHS, dtype=bool)
    levels, spent = [], 0.0
    for k in range(len(t)):
        target = pocock_spending(t[k], alpha) - spent  # the share of all paths to stop at look k
        crossing = int(round(target * BOUNDARY_PATHS))
        zk = np.sort(z[alive, k])[::-1]  # the surviving paths, largest first
        c = float(zk[crossing - 1]) if crossing >= 1 else float(zk[0]) + 1e-9
        alive &= z[:, k] < c
        spent = pocock_spending(t[k], alpha)
        levels.append(round(float(stats.norm.sf(c)), 5))
    return tuple(levels)


@lru_cache(maxsize=256)
def t_sequential_levels(schedule: tuple[int, ...], alpha: float) -> tuple[float, ...]:
    """As `sequential_levels`, for one-sample t tests at the seed counts `schedule`: the same spending, with the
    boundaries found on simulated t statistics rather than on a Brownian motion.

    Under H0 with normal per-seed values the joint law of the looks' one-sided t p-values does not depend on the
    mean or sd, so simulating it (`BOUNDARY_PATHS` audits of N(0, 1) values, fixed seed) gives levels a_k with
    P(p_1 >= a_1, ..., p_{k-1} >= a_{k-1}, p_k < a_k) = α(t_k) − α(t_{k−1}). The z boundaries alone let a t test
    at 5 or 8 seeds overspend (5.4% instead of 5% at 5, 8, 10 seeds): the t statistics of nested samples are more
    dependent in their tails than the z statistics. One look gives (alpha,)."""
    if len(schedule) == 1:
        return (float(alpha),)
    n = np.asarray(schedule)
    rng = np.random.default_rng(20261207)
    x = rng.standard_normal((BOUNDARY_PATHS // 2, int(n[-1])))  # (M, n_K)
    alive = np.ones(len(x), dtype=bool)
    levels, spent = [], 0.0
    for nk in n:
        v = x[:, :nk]
        t = v.mean(axis=1) / (v.std(axis=1, ddof=1) / np.sqrt(nk))  # (M,)
        p = special.stdtr(nk - 1, -t)  # one-sided p of "mean > 0"
        target = pocock_spending(nk / n[-1], alpha) - spent
        crossing = int(round(target * len(x)))
        pk = np.sort(p[alive])
        a = float(pk[crossing]) if crossing < len(pk) else 1.0  # the crossing-th smallest p of the survivors
        alive &= p >= a
        spent = pocock_spending(nk / n[-1], alpha)
        levels.append(float(np.floor(a * 1e6) / 1e6))  # rounded down: never spends more than planned
    return tuple(levels)


def schedule_levels(schedule: Sequence[int], alpha: float, test: str = "z") -> tuple[float, ...]:
    """One-sided nominal levels per look of a schedule given as seed counts (n_1 < ... < n_K): calibrated on t
    statistics for the t-based tests ("t", "tost": `t_sequential_levels`), from the Brownian motion otherwise
    (`sequential_levels`; the sign and permutation tests are discrete and spend less than their nominal level)."""
    n = tuple(int(x) for x in schedule)
    if test in ("t", "tost"):
        return t_sequential_levels(n, float(alpha))
    return sequential_levels(tuple(x / n[-1] for x in n), float(alpha))


# ----------------------------------------------------------------------------- a vote at given levels

SUPPORT_ALPHA: dict[str, float] = {"t": ALPHA / 2, "sign": ALPHA / 2, "permutation": ALPHA / 2, "tost": ALPHA,
                                   "signed_rank": ALPHA / 2, "rank_tost": ALPHA}
REFUTE_ALPHA: float = ALPHA / 2  # one-sided, whatever the test; divided by the number of voting settings


def vote_estimate(values: Iterable[float | None], test: str, threshold: float, support: float,
                  refute: float) -> tuple[Estimate, str]:
    """(the estimate, its vote) with one-sided levels `support` (of the claim's prediction: effect beyond the
    threshold, or equivalence within the margin) and `refute` (of the opposite finding).

    t: supported when the one-sided (1 − support) lower bound > threshold, refuted when the one-sided (1 − refute)
    upper bound < threshold (the reported CI is the two-sided 1 − 2·support interval). sign / permutation: their
    two-sided p (symmetric null) < 2·support with the effect above the threshold, or < 2·refute below it. tost:
    equivalent when both one-sided p < support (the 1 − 2·support interval inside ±margin); refuted when the
    1 − 2·refute interval lies wholly outside ±margin. At support = refute = 0.025 (0.05 for tost's support) this is
    `directional_verdict` / `equivalence_verdict` at the 5% level. signed_rank: as sign / permutation, with the
    Hodges–Lehmann effect. rank_tost: `_rank_tost_vote`. The rank tests take ±inf (a diverged run, `ranked`); t and
    tost refuse it (ValueError): an endpoint on a bounded scale scores a diverged net at the bottom of that scale.
    """
    values = list(values)
    if test in ("t", "tost") and any(math.isinf(x) for x in map(_as_float, values)):
        raise ValueError(f"a {test} test got an infinite per-seed value (a diverged run): such an endpoint is "
                         "rank-tested, or scores a diverged net at the bottom of its bounded scale")
    v = finite(values)
    if test == "tost":
        est = tost(v, threshold, level=1 - support)
        if est.p is None or est.sd is None or est.sd == 0:
            return est, "inconclusive"
        if est.p < support:
            return est, "supported"
        low, high = _t_interval(est.effect, est.sd, est.n, 1 - 2 * refute)
        return est, "refuted" if low >= threshold or high <= -threshold else "inconclusive"
    if test == "t":
        est = mean_ci(v, threshold, level=1 - 2 * support)
        if est.p is None or est.sd is None:
            return est, "inconclusive"
        upper = _t_interval(est.effect, est.sd, est.n, 1 - 2 * refute)[1]
        if est.ci_low is not None and est.ci_low > threshold:
            return est, "supported"
        return est, "refuted" if upper < threshold else "inconclusive"
    if test == "rank_tost":
        return _rank_tost_vote(values, threshold, support, refute)
    if test in ("sign", "permutation", "signed_rank"):
        est = _directional_rank_estimate(values, test, threshold, support)
        if est.p is None:
            return est, "inconclusive"
        if est.effect > threshold and est.p < 2 * support:
            return est, "supported"
        return est, "refuted" if est.effect < threshold and est.p < 2 * refute else "inconclusive"
    raise ValueError(f"no statistical test {test!r}")


def _directional_rank_estimate(values: Iterable[float | None], test: str, threshold: float,
                               support: float) -> Estimate:
    if test == "signed_rank":
        return signed_rank_test(values, threshold, level=1 - 2 * support)
    v = finite(values)
    return sign_test(v, threshold) if test == "sign" else permutation_test(v, threshold)


def _rank_tost_vote(values: Iterable[float | None], margin: float, support: float,
                    refute: float) -> tuple[Estimate, str]:
    """rank_tost's vote: equivalent when both one-sided signed-rank p < support; refuted when a location beyond the
    margin is shown: the one-sided signed-rank p of "values - margin > 0" (or of "values + margin < 0") < refute."""
    est = rank_tost(values, margin, level=1 - support)
    if est.p is None:
        return est, "inconclusive"
    if est.p < support:
        return est, "supported"
    v = ranked(values)
    beyond = min(_signed_rank_tails([x - margin for x in v])[0], _signed_rank_tails([x + margin for x in v])[1])
    return est, "refuted" if beyond < refute else "inconclusive"
