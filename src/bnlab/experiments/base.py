"""The contract every claim experiment follows.

An experiment module `bnlab.experiments.cNN_<name>` tests one claim of `shared/seed/claims.md` and exposes:

    CLAIM_ID = "C07"
    def plan(scale: str, seeds: int) -> Plan
    def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult

`plan` turns a scale (`smoke` | `default` | `paper`) and a number of seeds into a frozen config (plain data) and a
list of independent `Trial`s. A trial names a module-level function and plain-data keyword arguments; the executors
(`local`, `process`, `ray`) run trials anywhere, cache each result by `Trial.key()` and hand all results, keyed by
`Trial.name`, to `summarize`, which computes the verdict by the rule written in the module and returns plain data
(numbers, curves, figure specs). `summarize` must be cheap and deterministic: it never trains.

Figures are *specs* (plain data), drawn later by `bnlab.report.figures`, so a report can be re-rendered from
`results.json` alone. Kinds (every kind holds a list of panels drawn side by side with shared styling):

* ``lines``:    panels: [{title, xlabel, ylabel, xscale?, yscale?, series: [{label, x, y, lo?, hi?}]}]
* ``bars``:     panels: [{title, ylabel, categories: [...], groups: [{label, values, lo?, hi?}]}]
* ``contours``: panels: [{title, x, y, z (len(y) rows of len(x))}], levels?, same_scale: bool (default true)
* ``surface``:  like contours, drawn as 3-D surfaces with one colour scale
* ``heatmap``:  panels: [{title, xlabel, ylabel, x, y, z}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bnlab.config import config_hash
from bnlab.sweeps.trial import Trial

VERDICTS: tuple[str, ...] = ("supported", "refuted", "mixed", "inconclusive", "not_measured")
SCALES: tuple[str, ...] = ("smoke", "default", "paper")
CLAIM_IDS: tuple[str, ...] = tuple(f"C{i:02d}" for i in range(1, 15))


@dataclass(frozen=True)
class Plan:
    claim: str
    scale: str
    seeds: tuple[int, ...]
    config: Mapping[str, Any]  # plain data of the experiment's frozen config
    trials: tuple[Trial, ...]

    def key(self) -> str:
        return config_hash({"claim": self.claim, "config": dict(self.config),
                            "trials": [t.key() for t in self.trials]})


@dataclass
class Figure:
    id: str  # unique within the claim; also the file stem
    kind: str  # lines | bars | contours | surface | heatmap
    title: str
    caption: str
    data: dict[str, Any]


@dataclass
class KeyNumber:
    """The one number the verdict table shows, with its 95% CI over seeds when there is one."""

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = ""


@dataclass
class ClaimResult:
    id: str
    title: str
    verdict: str
    rule: str  # the rule, written before the run, that decided the verdict
    summary: str  # one or two plain sentences: what was measured and what it shows
    method: str = ""  # how it was tested at this scale
    key_number: KeyNumber | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


# ----------------------------------------------------------------------------- statistics for verdict rules

# two-sided 97.5% quantiles of Student's t for df = 1..30 (scipy-free, so summarize stays light)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def mean_ci(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean and the 95% Student-t confidence interval of the mean; (mean, None, None) for one value."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return math.nan, None, None
    mean = sum(xs) / n
    if n == 1:
        return mean, None, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict_from_ci(ci_low: float | None, ci_high: float | None, threshold: float = 0.0) -> str:
    """The house rule for a directional effect: `supported` when the whole 95% CI lies above `threshold`,
    `refuted` when it lies wholly below it, `inconclusive` otherwise (including a missing CI: one seed)."""
    if ci_low is None or ci_high is None or math.isnan(ci_low) or math.isnan(ci_high):
        return "inconclusive"
    if ci_low > threshold:
        return "supported"
    if ci_high < threshold:
        return "refuted"
    return "inconclusive"


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """Overall verdict of several settings: all agree -> that verdict; supported and refuted both present ->
    `mixed`; otherwise (some inconclusive) `inconclusive` unless a majority agrees on one direction with no
    opposite, in which case `mixed`."""
    vs = [v for v in verdicts if v != "not_measured"]
    if not vs:
        return "not_measured"
    if all(v == vs[0] for v in vs):
        return vs[0]
    if "supported" in vs and "refuted" in vs:
        return "mixed"
    if "mixed" in vs:
        return "mixed"
    return "inconclusive"


def seeds_for(n: int) -> tuple[int, ...]:
    if n < 1:
        raise ValueError(f"seeds must be >= 1, got {n}")
    return tuple(range(n))
