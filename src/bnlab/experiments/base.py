"""The contract every claim experiment follows, and the shapes of what it returns.

An experiment module `bnlab.experiments.cNN_<name>` tests one claim of `shared/seed/claims.md`. It reads like a
preregistration -- what is measured, the primary endpoint, the rule, then the code -- and exposes:

    CLAIM_ID = "C05"                                      # its title is CLAIMS[CLAIM_ID].title (claims.py)
    PROTOCOL = ClaimProtocol(endpoint=Endpoint(...), ...)  # fixed in code before any run (docs/protocol.md)
    RULE = "..."                                          # the rule in words, next to `decide`
    def plan(scale: str, seeds: int | None, first_seed: int = 0) -> Plan
    def measure(plan: Plan, results: Mapping[str, dict]) -> dict       # plain data, no verdict
    def decide(metrics: Mapping[str, Any]) -> Decision                  # the rule, as a small pure function
    def figures(plan: Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[Figure]
    def describe(plan: Plan, metrics: Mapping[str, Any], decision: Decision) -> Description

`plan` turns a scale (`smoke` | `default` | `paper`) and a seed count (None: the claim's default for the scale,
`seeds_for`) into a frozen config (plain data) and a list of independent `Trial`s (`bnlab.sweeps.trial`). A trial
names a module-level function on the floor below the claims (`bnlab.trials`, so its cache key does not depend on
report prose) and plain-data keyword arguments; the executors run trials anywhere, cache each result by
`Trial.key()` and hand all results, keyed by `Trial.name`, to `summarize(module, plan, results)` =
`measure` + `decide` + `figures` + `describe`. None of these train; all are deterministic.

`decide` sees only `measure`'s output. Its primary input is ``metrics["primary"]``: for every setting the endpoint
is evaluated in (e.g. ``{"vgg": [...], "dln": [...]}``), the per-seed values of the endpoint, already paired (BN
vs no BN on the same seed) and in the endpoint's units, so a test can feed it synthetic numbers.
Only the primary endpoint votes. Everything else is a secondary `Result` (with its own CI, never changing the
verdict) or a `Verification` (an identity checked to a tolerance, reported apart from the statistical vote).

Figures are *specs* (plain data), drawn later by `bnlab.report.figures`, so a report can be re-rendered from
`results.json` alone. Kinds (every kind holds a list of panels drawn side by side with shared styling):

* ``lines``:    panels: [{title, xlabel, ylabel, xscale?, yscale?, series: [{label, x, y, lo?, hi?}]}]
* ``bars``:     panels: [{title, ylabel, categories: [...], groups: [{label, values, lo?, hi?}]}]
* ``contours``: panels: [{title, x, y, z (len(y) rows of len(x))}], levels?, same_scale: bool (default true)
* ``surface``:  like contours, drawn as 3-D surfaces with one colour scale
* ``heatmap``:  panels: [{title, xlabel, ylabel, x, y, z}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

from bnlab.config import config_hash, plain
from bnlab.errors import BnlabError
from bnlab.experiments import stats
from bnlab.experiments.claims import CLAIMS
from bnlab.results import CLAIM_IDS, VERDICTS  # noqa: F401 - the results vocabulary, re-exported
from bnlab.sweeps.trial import Trial

SCALES: tuple[str, ...] = ("smoke", "default", "paper")
TESTS: tuple[str, ...] = ("t", "sign", "permutation", "tost", "signed_rank", "rank_tost", "verification")
EQUIVALENCE_TESTS: tuple[str, ...] = ("tost", "rank_tost")

# The test of a setting follows from the type of its per-seed values, fixed here before any run (issue 25, item 3):
# unit -> (directional test, equivalence test). Bounded values (accuracies, shares, cosine differences) are
# t-tested: their spread is bounded, so the mean and its t interval are well behaved, and a diverged net scores the
# bottom of the scale (chance accuracy; `bnlab.experiments.outcomes`). Log ratios and decades are unbounded and
# heavy-tailed (a deep linear net's per-seed log ratio reaches 10⁴, sd 15 log units): they get the exact signed-rank
# test, and a diverged run enters as ±inf, the worst rank for the net that diverged, never a missing seed.
# Grid-valued outcomes (C07's largest stable lr) are discrete with many ties: the sign test.
UNIT_TESTS: dict[str, tuple[str, str | None]] = {
    "accuracy": ("t", "tost"),
    "share of BN's advantage": ("t", "tost"),
    "cosine difference": ("t", "tost"),
    "share of the surface's spread": ("t", "tost"),
    "log ratio": ("signed_rank", "rank_tost"),
    "decades": ("signed_rank", "rank_tost"),
    "decades of lr (grid)": ("sign", None),
    "ratio (< 1 passes)": ("verification", None),
}


def fixed_test(unit: str, equivalence: bool = False) -> str:
    """The test `UNIT_TESTS` fixes for values in `unit` (BnlabError for a unit it does not know)."""
    if unit not in UNIT_TESTS:
        raise BnlabError(f"no test is fixed for per-seed values in {unit!r} (add the unit to base.UNIT_TESTS)")
    directional, equivalent = UNIT_TESTS[unit]
    test = equivalent if equivalence else directional
    if test is None:
        raise BnlabError(f"values in {unit!r} have no equivalence test")
    return test
# The accuracy margin of C04 (equivalence), C07 (curves coincide at small lr) and C13 (non-inferiority): half of
# Santurkar's BN advantage on VGG/CIFAR-10, 83% vs 80% test accuracy (App. A).
ACCURACY_MARGIN: float = 0.015

# Seeds per scale, by the cost of a claim's runs: "cheap" (deep linear net, MLPs, verifications) and "costly"
# (the VGG runs): the first look of `LOOKS`. Chosen by the time budget (make audit <= 15 min on 2 CPU cores),
# what a rank test needs to decide at all (`sequential.decidable`) and the power analysis of docs/protocol.md,
# never by the data a rule judges.
DEFAULT_SEEDS: dict[str, dict[str, int]] = {
    "smoke": {"cheap": 2, "costly": 2},
    "default": {"cheap": 8, "costly": 8},
    "paper": {"cheap": 8, "costly": 6},
}

# The pre-registered group-sequential plan: the seed counts at which a setting is looked at, per scale and cost of
# its runs. The first look is DEFAULT_SEEDS; an audit adds the next look's seeds only to claims with a setting still
# undecided, up to the last (the cap). The default scale adds one look of half the seeds again (8 -> 12), which the
# budget allows (docs/audit.md, "Budget"). The VGG runs ("costly") follow the same 8, 12 at the default scale: they
# were 5 -> 7, but their log-ratio settings are rank-tested (UNIT_TESTS), and an exact rank test reaches at best
# p = 2/2^n two-sided, so at 7 seeds a setting of a claim with two voting settings could never be refuted
# (`sequential.decidable`); the judging audit at b5d3223 measured a default VGG run at ~6-15 CPU s, so 3 more seeds
# per claim cost about a minute. Paper scale: 8 -> 12 and, for its much longer VGG runs, 6 -> 10 (decidable with up
# to 11 voting settings, e.g. C03's per-layer settings). The smoke scale checks the machinery, not the verdicts: one
# look. Nominal levels per look: `stats.schedule_levels` (Pocock-type alpha spending), fixed by the counts alone.
LOOKS: dict[str, dict[str, tuple[int, ...]]] = {
    "smoke": {"cheap": (2,), "costly": (2,)},
    "default": {"cheap": (8, 12), "costly": (8, 12)},
    "paper": {"cheap": (8, 12), "costly": (6, 10)},
}


@dataclass(frozen=True)
class Look:
    """Which look of the sequential plan (`LOOKS`) an audit stage plans: cost -> look index (0 = the first look).

    Passed to a claim's ``plan(scale, seeds=Look(...))`` in place of a seed count; the claim hands it on to
    `seeds_for` unchanged, so claim modules need no code for it."""

    index: Mapping[str, int]

    def of(self, cost: str) -> int:
        return int(self.index.get(cost, 0))

    def advanced(self, costs: Sequence[str], scale: str) -> Look | None:
        """The next stage's look: every cost in `costs` one look further (None when all are at their cap)."""
        index = dict(self.index)
        moved = False
        for cost in set(costs):
            if self.of(cost) + 1 < len(LOOKS[scale][cost]):
                index[cost] = self.of(cost) + 1
                moved = True
        return Look(index) if moved else None


def seeds_for(scale: str, seeds: int | Look | None = None, first_seed: int = 0,
              cost: str = "cheap") -> tuple[int, ...]:
    """The seeds first_seed, ..., first_seed + n - 1, with n = `seeds`, the scale's default for `cost` (None), or
    the seed count of a `Look` of the sequential plan (`LOOKS`)."""
    if scale not in SCALES:
        raise BnlabError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    if cost not in DEFAULT_SEEDS[scale]:
        raise BnlabError(f"unknown run cost {cost!r} (choose from {', '.join(DEFAULT_SEEDS[scale])})")
    if isinstance(seeds, Look):
        schedule = LOOKS[scale][cost]
        if not 0 <= seeds.of(cost) < len(schedule):
            raise BnlabError(f"look {seeds.of(cost) + 1} is beyond the {len(schedule)} look(s) of {cost} runs")
        seeds = schedule[seeds.of(cost)]
    n = DEFAULT_SEEDS[scale][cost] if seeds is None else seeds
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BnlabError(f"seeds must be an integer >= 1, got {n!r}")
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or first_seed < 0:
        raise BnlabError(f"first seed must be an integer >= 0, got {first_seed!r}")
    return tuple(range(first_seed, first_seed + n))


def config_for(configs: Mapping[str, Any], scale: str) -> Any:
    """The frozen config of `scale` from a claim's table of configs per scale (BnlabError for an unknown scale)."""
    if scale not in configs:
        raise BnlabError(f"unknown scale {scale!r} (choose from {', '.join(configs)})")
    return configs[scale]


# ----------------------------------------------------------------------------- the pre-registration


@dataclass(frozen=True)
class Endpoint:
    """A claim's primary endpoint, fixed in code before any run.

    The claim predicts ``effect > threshold`` (``direction="greater"``; a module whose claim predicts a decrease
    defines its per-seed values so that the predicted effect is positive), or equivalence within ±margin
    (``test="tost"``, `threshold` is the margin), or an identity to a tolerance (``test="verification"``).
    """

    name: str  # e.g. "log(loss variation without BN / with BN)"
    measure: str  # how one seed's value is computed, in words
    unit: str  # e.g. "log ratio", "accuracy", "decades of lr"
    test: str  # one of TESTS: how per-seed values become a vote (bnlab.experiments.stats)
    threshold: float = 0.0  # the null value the effect is tested against; the margin for "tost"
    threshold_source: str = ""  # where that number comes from (a paper, a definition)
    settings: tuple[str, ...] = ("all",)  # where it is evaluated; votes combined by stats.combine
    direction: str = "greater"
    # settings whose (test, threshold) differ from the endpoint's, e.g. {"noisy_vs_bn": ("tost", 0.015)}
    per_setting: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    # settings that are gates (a manipulation check, a positive control): they must be supported for the others
    # to vote, and never vote themselves (stats.combine)
    gates: tuple[str, ...] = ()
    # the run cost of settings whose runs differ from Protocol.cost ("cheap" | "costly"): which look schedule of
    # LOOKS they follow, e.g. {"dln": "cheap"} in a claim whose VGG runs are costly
    setting_costs: Mapping[str, str] = field(default_factory=dict)
    # settings whose unit differs from `unit` (which then names them all, for the protocol page), e.g.
    # {"conv:*": "cosine difference", "ioffe": "log ratio"}; a key "prefix:*" covers the settings found in the data
    units: Mapping[str, str] = field(default_factory=dict)

    def test_of(self, setting: str) -> tuple[str, float]:
        """(test, threshold or margin) of one setting."""
        return tuple(self.per_setting.get(setting, (self.test, self.threshold)))  # type: ignore[return-value]

    def unit_of(self, setting: str) -> str:
        """The unit a result in `setting` is reported in: its own (`units`, exact or by "prefix:*"), else `unit`."""
        if setting in self.units:
            return self.units[setting]
        for key, unit in self.units.items():
            if key.endswith(":*") and setting.startswith(key[:-1]):
                return unit
        return self.unit

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}, got {self.test!r}")
        if self.test in EQUIVALENCE_TESTS and not self.threshold > 0:
            raise ValueError("a tost endpoint needs a margin > 0 as its threshold")
        if not self.settings:
            raise ValueError("an endpoint is evaluated in at least one setting")
        for setting, (test, threshold) in self.per_setting.items():
            if setting not in self.settings or test not in TESTS or (test in EQUIVALENCE_TESTS and not threshold > 0):
                raise ValueError(f"bad per_setting entry {setting!r}: ({test!r}, {threshold!r})")
        for setting in self.units:
            if setting not in self.settings:
                raise ValueError(f"units names {setting!r}, which is not one of the settings {self.settings}")
        if not set(self.gates) <= set(self.settings) or set(self.gates) == set(self.settings):
            raise ValueError(f"gates {self.gates} must be some, not all, of the settings {self.settings}")
        for setting, cost in self.setting_costs.items():
            if setting not in self.settings or cost not in ("cheap", "costly"):
                raise ValueError(f"bad setting_costs entry {setting!r}: {cost!r}")
        for setting in self.settings:  # the test follows from the values' type, before any run (UNIT_TESTS)
            if self.unit_of(setting) not in UNIT_TESTS:
                raise ValueError(f"setting {setting!r}: no test is fixed for values in {self.unit_of(setting)!r} "
                                 "(add the unit to base.UNIT_TESTS)")
            test = self.test_of(setting)[0]
            fixed = fixed_test(self.unit_of(setting), equivalence=test in EQUIVALENCE_TESTS)
            if test != fixed:
                raise ValueError(f"setting {setting!r} in {self.unit_of(setting)!r} is decided by {fixed!r} "
                                 f"(base.UNIT_TESTS), not {test!r}")


@dataclass(frozen=True)
class Interest:
    """The smallest effect a claim's endpoint cares about, and where that number comes from: the MDE and the power
    on the protocol page are computed at it (never at an observed effect). `per_setting` overrides it for settings
    in other units, e.g. {"noisy_vs_bn": 0.01}."""

    effect: float
    source: str
    per_setting: Mapping[str, float] = field(default_factory=dict)

    def of(self, setting: str) -> float:
        return float(self.per_setting.get(setting, self.effect))

    def __post_init__(self) -> None:
        if not (self.effect > 0 and all(v > 0 for v in self.per_setting.values())):
            raise ValueError("an effect of interest is > 0 (in the direction the claim predicts)")
        if not self.source:
            raise ValueError("an effect of interest says where its number comes from")


@dataclass(frozen=True)
class ClaimProtocol:
    """What the protocol page (docs/protocol.md) prints for a claim; `endpoint` is the only thing that votes."""

    endpoint: Endpoint
    cost: str  # "cheap" | "costly": which default seed count the claim's runs get (DEFAULT_SEEDS)
    secondary: tuple[str, ...] = ()  # what else is reported, never voting
    verifications: tuple[str, ...] = ()  # identities checked to a tolerance, reported apart
    runs: str = ""  # what is run at the default scale
    paper: str = ""  # the paper's protocol, and how the default scale differs from it
    why: str = ""  # why this endpoint and threshold (changes from the starting points, with reasons)


# Where the common effects of interest come from (claims name them in their INTEREST, `Interest.source`).
ONE_POINT = ("one point of accuracy: the resolution at which the cited papers' tables report accuracy; below C04's "
             "margin of 1.5 points (half Santurkar's 3-point BN advantage)")
FACTOR_TWO = ("a factor of 2 between the arms (log 2 = 0.69): the smallest gap a log-scale figure such as Santurkar's "
              "Fig. 4 shows plainly; Santurkar reports up to two orders of magnitude")


# ----------------------------------------------------------------------------- what decide returns


@dataclass
class Result:
    """One endpoint value over seeds: the primary endpoint in one setting, or a secondary result."""

    name: str
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int
    mde: float | None  # minimum detectable effect at this seed count (stats.minimum_detectable_effect)
    test: str
    unit: str = ""
    p: float | None = None
    sd: float | None = None  # the per-seed standard deviation (what the power analysis of docs/protocol.md uses)
    vote: str | None = None  # the verdict this result cast (primary settings only)
    note: str = ""
    setting: str = ""  # the key of metrics["primary"] this vote came from (primary settings only)
    look: int | None = None  # the look of the sequential plan this vote was cast at (1-based; primary only)
    looks: int | None = None  # the looks the plan has (its cap is the last)
    decided_n: int | None = None  # the seed count at which the vote was decided (None: undecided)
    alpha_support: float | None = None  # the one-sided nominal level of this look for the claim's prediction
    alpha_refute: float | None = None  # ... and for the opposite finding (divided among the voting settings)
    history: list[dict[str, Any]] = field(default_factory=list)  # every look: n, effect, p, levels, vote

    @classmethod
    def of(cls, name: str, est: stats.Estimate, unit: str = "", vote: str | None = None, note: str = "",
           setting: str = "") -> Result:
        d = est.to_dict()
        return cls(name, d["effect"], d["ci_low"], d["ci_high"], est.n, d["mde"], est.test, unit, d["p"], d["sd"],
                   vote, note, setting)

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass
class Verification:
    """An identity checked against a reference to a tolerance: passed, and the worst error relative to it."""

    name: str
    passed: bool
    worst_ratio: float  # max over cases of error / tolerance (< 1 passes)
    cases: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass
class Decision:
    """The verdict and what decided it: the primary endpoint in each setting (each with its vote)."""

    verdict: str
    primary: list[Result]  # one per setting of the endpoint, in Endpoint.settings order; [0] is the headline
    secondary: list[Result] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)
    reason: str = ""  # which rule of stats.combine decided the verdict, in words

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.primary:
            raise ValueError("a decision reports its primary endpoint")

    @property
    def votes(self) -> dict[str, str | None]:
        return {r.name: r.vote for r in self.primary}


@dataclass
class Description:
    summary: str  # one or two plain sentences: what was measured and what it shows
    method: str  # what was run at this scale
    caveats: list[str] = field(default_factory=list)


@dataclass
class Figure:
    id: str  # unique within the claim; also the file stem
    kind: str  # lines | bars | contours | surface | heatmap
    title: str
    caption: str
    data: dict[str, Any]


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
class ClaimResult:
    id: str
    title: str
    decision: Decision
    rule: str  # the rule, written before the run, that decided the verdict
    description: Description
    protocol: ClaimProtocol
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.decision.verdict


# ----------------------------------------------------------------------------- the shared rule machinery


def estimate(values: Sequence[float | None], test: str, threshold: float = 0.0) -> stats.Estimate:
    """Per-seed values -> the estimate of `test` (t: mean and t-interval; sign / permutation: exact tests; tost)."""
    if test == "t":
        return stats.mean_ci(values, threshold)
    if test == "sign":
        return stats.sign_test(values, threshold)
    if test == "permutation":
        return stats.permutation_test(values, threshold)
    if test == "tost":
        return stats.tost(values, threshold)
    if test == "signed_rank":
        return stats.signed_rank_test(values, threshold)
    if test == "rank_tost":
        return stats.rank_tost(values, threshold)
    raise ValueError(f"no statistical test {test!r} (verifications are decided by their tolerance)")


def _sequential(metrics: Mapping[str, Any], endpoint: Endpoint, setting: str) -> tuple[Any, int, Any]:
    """(look schedule, look index, frozen vote) of one setting, from ``metrics["sequential"]`` (put there by the
    audit: {"default_cost", "schedules": {cost: [n_1, ...]}, "looks": {cost: index}, "frozen": {setting: result}}),
    or (None, 0, None) for a fixed-n decision."""
    seq = metrics.get("sequential") if isinstance(metrics, Mapping) else None
    if not seq:
        return None, 0, None
    cost = endpoint.setting_costs.get(setting, seq["default_cost"])
    return tuple(seq["schedules"][cost]), int(seq["looks"][cost]), (seq.get("frozen") or {}).get(setting)


def setting_result(endpoint: Endpoint, setting: str, values: Sequence[float | None],
                   metrics: Mapping[str, Any] | None = None, voting: int = 1) -> Result:
    """The endpoint's estimate and vote in one setting, at the nominal levels of its look.

    Fixed n (no ``metrics["sequential"]``): one look at the 5% level. Sequential: the one-sided levels of look k
    of the setting's schedule (`stats.schedule_levels`, Pocock-type spending); a setting decided at an earlier look
    keeps that vote (``frozen``). The refutation level is divided among the `voting` settings (Bonferroni), since one
    refuting setting refutes the claim (`stats.combine`)."""
    schedule, look, frozen = _sequential(metrics or {}, endpoint, setting)
    if frozen is not None:
        return Result(**frozen)
    test, threshold = endpoint.test_of(setting)
    n = len(stats.finite(values))
    schedule = schedule or (max(n, 1),)
    support = stats.schedule_levels(schedule, stats.SUPPORT_ALPHA[test], test)[look]
    refute = stats.schedule_levels(schedule, stats.REFUTE_ALPHA / max(voting, 1), test)[look]
    est, cast = stats.vote_estimate(values, test, threshold, support, refute)
    name = endpoint.name if setting == "all" else f"{endpoint.name} [{setting}]"
    result = Result.of(name, est, endpoint.unit_of(setting), vote=cast, setting=setting)
    result.look, result.looks, result.alpha_support, result.alpha_refute = look + 1, len(schedule), support, refute
    result.decided_n = est.n if cast in ("supported", "refuted") else None
    return result


def endpoint_results(endpoint: Endpoint, per_setting: Mapping[str, Sequence[float | None]],
                     metrics: Mapping[str, Any] | None = None) -> list[Result]:
    """The endpoint's estimate and vote in each of its settings (per-seed values from ``metrics["primary"]``)."""
    missing = [s for s in endpoint.settings if s not in per_setting]
    if missing:
        raise KeyError(f"metrics['primary'] lacks the setting(s) {missing}")
    voting = len(endpoint.settings) - len(endpoint.gates)
    return [setting_result(endpoint, s, per_setting[s], metrics, voting) for s in endpoint.settings]


def combined(endpoint: Endpoint, results: Sequence[Result]) -> tuple[str, str]:
    """(verdict, reason) of `stats.combine` over the results, gates apart; the reason names refuting settings."""
    gates = [r.vote or "inconclusive" for r in results if r.setting in endpoint.gates]
    votes = [r.vote or "inconclusive" for r in results if r.setting not in endpoint.gates]
    verdict, reason = stats.combine_reason(votes, gates)
    refuting = [r.setting for r in results if r.setting not in endpoint.gates and r.vote == "refuted"]
    failed = [r.setting for r in results if r.setting in endpoint.gates and r.vote != "supported"]
    if failed:
        reason += f" (gate not passed: {', '.join(failed)})"
    elif refuting and verdict in ("refuted", "mixed"):
        reason += f" (refuting: {', '.join(refuting)})"
    return verdict, reason


def decide_each(endpoint: Endpoint, metrics: Mapping[str, Any],
                verifications: Sequence[Verification] = ()) -> Decision:
    """As `decide_endpoint`, for an endpoint whose settings are only known from the data (Endpoint.settings holds a
    pattern such as "conv:*"): one vote per key of ``metrics["primary"]``, in order, combined by `stats.combine`."""
    voting = len(metrics["primary"])
    results = [setting_result(endpoint, key, values, metrics, voting) for key, values in metrics["primary"].items()]
    if not results:
        raise ValueError("metrics['primary'] holds no setting")
    verdict, reason = combined(endpoint, results)
    return Decision(verdict, results, secondary_results(metrics), list(verifications), reason)


def secondary_result(name: str, values: Sequence[float | None], unit: str = "", test: str = "t",
                     threshold: float = 0.0, note: str = "") -> Result:
    """A secondary result: the estimate of `values` over seeds, reported with its CI, never voting."""
    return Result.of(name, estimate(values, test, threshold), unit, note=note)


def secondary_results(metrics: Mapping[str, Any]) -> list[Result]:
    """The secondary results `measure` lists under ``metrics["secondary"]``: {name: {"values": per-seed values,
    "unit"?, "test"? (default "t"), "threshold"?, "note"?}}, in that order."""
    return [secondary_result(name, spec["values"], spec.get("unit", ""), spec.get("test", "t"),
                             spec.get("threshold", 0.0), spec.get("note", ""))
            for name, spec in (metrics.get("secondary") or {}).items()]


def decide_endpoint(endpoint: Endpoint, metrics: Mapping[str, Any],
                    verifications: Sequence[Verification] = ()) -> Decision:
    """The house rule for one endpoint: its vote in every setting, combined by `stats.combine` (supported only when
    every setting supports; refuted when one refutes and none supports; both -> mixed; a gate not passed ->
    inconclusive). Secondary results come from ``metrics["secondary"]`` and never vote."""
    results = endpoint_results(endpoint, metrics["primary"], metrics)
    verdict, reason = combined(endpoint, results)
    return Decision(verdict, results, secondary_results(metrics), list(verifications), reason)


def verification(name: str, ratios: Sequence[float], note: str = "") -> Verification:
    """An identity checked in several cases: passes when every error / tolerance ratio is finite and < 1."""
    worst = max(ratios) if ratios else float("nan")
    passed = bool(ratios) and all(r == r and r < 1 for r in ratios)  # r == r: not NaN
    return Verification(name, passed, worst, len(ratios), note)


def decide_verifications(endpoint: Endpoint, metrics: Mapping[str, Any]) -> Decision:
    """The rule of a verification claim: ``metrics["checks"]`` maps each check to its error / tolerance ratios
    (one per seed or case). Supported when every ratio of every check is < 1; refuted when any is >= 1 (an
    identity fails beyond its tolerance); inconclusive when none fails but some check produced no number (NaN).
    The headline is the worst ratio over all checks."""
    checks = [verification(name, [float(r) for r in ratios]) for name, ratios in metrics["checks"].items()]
    if not checks:
        raise ValueError("a verification claim checks at least one identity")
    ratios = [float(r) for rs in metrics["checks"].values() for r in rs]
    failed = any(r >= 1 for r in ratios)
    unknown = any(r != r for r in ratios)  # NaN: the check could not be computed
    verdict = "refuted" if failed else ("inconclusive" if unknown else "supported")
    worst = max((r for r in ratios if r == r), default=float("nan"))
    head = Result(endpoint.name, worst, None, None, len(ratios), None, "verification", endpoint.unit, vote=verdict)
    return Decision(verdict, [head], secondary_results(metrics), checks)


def brief(r: Result, digits: int = 2) -> str:
    """"+1.23 [+0.50, +1.96] (supported)": a result's effect, CI and vote for a summary sentence."""
    if r.effect is None:
        return f"n/a ({r.vote or 'no value'})"
    ci = f" [{r.ci_low:+.{digits}f}, {r.ci_high:+.{digits}f}]" if r.ci_low is not None and r.ci_high is not None else ""
    return f"{r.effect:+.{digits}f}{ci}" + (f" ({r.vote})" if r.vote else "")


def summarize(module: ModuleType, plan: Plan, results: Mapping[str, dict],
              sequential: Mapping[str, Any] | None = None) -> ClaimResult:
    """A claim's result: `measure` -> `decide` -> `figures` -> `describe` of its module (nothing else).

    `sequential` (from the audit's staged run): the look schedules, the current look per cost and the votes frozen
    at earlier looks, handed to `decide` as ``metrics["sequential"]`` (see `setting_result`) and not kept."""
    metrics = module.measure(plan, results)
    if sequential:
        metrics["sequential"] = sequential
    decision = module.decide(metrics)
    metrics.pop("sequential", None)
    return ClaimResult(id=module.CLAIM_ID, title=CLAIMS[module.CLAIM_ID].title, decision=decision, rule=module.RULE,
                       description=module.describe(plan, metrics, decision), protocol=module.PROTOCOL,
                       metrics=plain(metrics), figures=module.figures(plan, results, metrics))
