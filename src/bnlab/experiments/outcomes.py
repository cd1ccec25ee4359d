"""How a run or probe that diverged enters a claim's primary per-seed values: as the worst outcome for the net that
diverged, never as a missing seed (issue 25, item 3), in every claim alike.

Why. A seed whose net diverged is the seed on which the two nets differ most. Dropping it (a NaN that the tests
skip) removes exactly that evidence and leaves a sample of the seeds where both nets happened to train: it biases
the effect towards the net that diverged, and lets two claims treat the same event differently (C05 dropped the
seed whose no-BN deep linear net diverged; C06 kept it). Counted as the worst outcome, divergence is one more
outcome of the comparison, ranked rather than measured:

* **Unbounded paired contrasts** (log ratios, decades: tested by the rank tests ``signed_rank`` / ``rank_tost``).
  Per-seed values are defined so that positive = the claim's prediction (the BN net better). `paired_worst`: only
  the no-BN net failed -> +inf; only the BN net -> -inf (ranked beyond every finite value on its side); both ->
  0.0, a tie, which the signed-rank test drops; neither -> the measured value. A one-net endpoint measured against
  a prediction (C09's angular update, C11's Jacobian gain) uses `single_worst`: a failed run is infinitely far from
  the prediction, on the side its module documents.
* **Bounded endpoints** (accuracies, shares, cosines: tested by t, which must never see ±inf). `scored`: a failed
  net scores the worst value of the bounded scale that the endpoint documents; for accuracies (`scored_accuracy`)
  that is chance -- what a net whose outputs are NaN or constant predicts -- never 0 and never a missing seed.

A net *failed* on a seed (`failed`) when its run diverged, or when a number its endpoint needs came out missing or
non-finite (a probe that diverged), or not positive where a logarithm needs it (a gradient that vanished to 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# chance accuracy of the claims' classification data sets (mnist5k, sklearn digits, MNIST-1D, CIFAR-10: 10 classes)
TEN_CLASS_CHANCE: float = 0.1


def _bad(x: float | None, positive: bool) -> bool:
    if x is None:
        return True
    v = float(x)
    return not math.isfinite(v) or (positive and not v > 0)


def failed(diverged: bool | None, *numbers: float | None, positive: bool = False) -> bool:
    """True when a net failed on a seed: its run diverged, or one of the `numbers` its endpoint needs is missing or
    non-finite (with ``positive=True``: also not > 0, as a number whose logarithm is taken must be)."""
    return bool(diverged) or any(_bad(x, positive) for x in numbers)


def any_failed(numbers: Iterable[float | None], diverged: bool | None = False, positive: bool = False) -> bool:
    """`failed` for a sequence of numbers (e.g. one per layer)."""
    return failed(diverged, *numbers, positive=positive)


def paired_worst(value: float | None, bn_failed: bool, none_failed: bool) -> float:
    """One seed's value of a paired contrast whose positive sign is the claim's prediction (BN better), with a
    failed net as the worst outcome for that net: only the no-BN net failed -> +inf; only the BN net -> -inf;
    both -> 0.0 (a tie: the rank tests drop it); neither -> `value` (NaN if it is missing for a reason that is no
    net's failure, e.g. a trial that recorded nothing)."""
    if bn_failed and none_failed:
        return 0.0
    if none_failed:
        return math.inf
    if bn_failed:
        return -math.inf
    return math.nan if value is None else float(value)


def paired_worst_values(values: Iterable[float | None], bn_failed: Iterable[bool],
                        none_failed: Iterable[bool]) -> list[float]:
    """`paired_worst` per seed over three parallel sequences."""
    return [paired_worst(v, b, n) for v, b, n in zip(values, bn_failed, none_failed, strict=True)]


def single_worst(value: float | None, net_failed: bool, side: float = 1.0) -> float:
    """One seed's value of a one-net endpoint against a prediction: a failed run is infinitely far from the
    prediction on the side `side` (+1 or -1) its module documents; otherwise `value`."""
    if side not in (1.0, -1.0):
        raise ValueError(f"side is +1 or -1, got {side!r}")
    if net_failed:
        return side * math.inf
    return math.nan if value is None else float(value)


def scored(value: float | None, net_failed: bool, worst: float) -> float:
    """A bounded endpoint's value for one net and seed: `worst` (the documented worst value of the bounded scale)
    when the net failed or its value is missing or non-finite, else the value. Always finite, so t may test it."""
    if not math.isfinite(worst):
        raise ValueError(f"a bounded endpoint's worst value is finite, got {worst!r}")
    return worst if net_failed or _bad(value, positive=False) else float(value)  # type: ignore[arg-type]


def scored_accuracy(acc: float | None, diverged: bool | None, chance: float = TEN_CLASS_CHANCE) -> float:
    """An accuracy for one net and seed: chance when its run diverged or its accuracy is missing or non-finite
    (the worst outcome a net can score: a diverged net's NaN or constant outputs predict at chance), else `acc`."""
    return scored(acc, bool(diverged), chance)
