"""The protocol page, docs/protocol.md, generated from the code so it cannot drift from what the audit runs.

For every claim: the primary endpoint (what one seed's value is, its unit, the test, the threshold or margin and
where it comes from, the settings it is evaluated in), the rule in words, the seeds per scale, what runs at the
default scale and how that differs from the paper, why this endpoint, what is reported beside it, and its power:
the false-decision rate under the null and the power at the effect the last default audit measured
(`bnlab.experiments.power`), with the seed count that would reach 80% where the default falls short.

    python -m bnlab.experiments.protocol_page docs/protocol.md     # (re)write the page; `make protocol` does this

A test checks that the committed page equals what this module generates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

from bnlab.atomic import write_text
from bnlab.experiments import power, sequential, stats
from bnlab.experiments.base import CLAIM_IDS, LOOKS, SCALES
from bnlab.experiments.claims import CLAIMS
from bnlab.experiments.registry import load_experiment

PROTOCOL_PAGE = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"  # in a source checkout
_SCHEDULES = sorted({looks for costs in LOOKS.values() for looks in costs.values() if len(looks) > 1})

_TESTS = {
    "t": "one-sample Student t on the per-seed values (paired: both arms share the seed); 95% two-sided interval",
    "sign": "exact two-sided sign test (binomial) on the per-seed values, ties dropped; decides by p < 0.05, "
            "never by an interval (the values are discrete)",
    "permutation": "exact paired sign-flip permutation test of the mean; decides by p < 0.05",
    "tost": "two one-sided t tests (Schuirmann 1987): equivalent when the 90% interval lies inside ±margin; "
            "a difference of at least the margin when the 95% interval lies wholly outside it",
    "signed_rank": "exact Wilcoxon signed-rank test (the sign-flip permutation test of the signed mid-ranks; ties "
                   "and ±inf as they are), effect = Hodges–Lehmann estimate with its exact interval; decides by p",
    "rank_tost": "two one-sided exact signed-rank tests: equivalent when both reject a location beyond ±margin; a "
                 "difference of at least the margin when a one-sided signed-rank test shows it",
    "verification": "an identity checked against a reference computation to a stated tolerance (no statistics)",
}

def _levels_table(schedule: tuple[int, ...]) -> str:
    """The nominal one-sided levels per look of one schedule (a single voting setting)."""
    head = f"Nominal one-sided levels at n = {', '.join(map(str, schedule))} (one voting setting; k settings refute " \
           "at a k-th of the refutation level):\n\n| test | " + " | ".join(f"look {k + 1} (n = {n})"
                                                                           for k, n in enumerate(schedule)) + " |"
    rows = ["|---|" + "---|" * len(schedule)]
    for label, alpha, test in (("t: prediction; t and TOST: refutation", stats.REFUTE_ALPHA, "t"),
                               ("TOST: equivalence", stats.SUPPORT_ALPHA["tost"], "tost"),
                               ("sign, permutation, signed-rank: each direction", stats.REFUTE_ALPHA, "z"),
                               ("rank TOST: equivalence", stats.SUPPORT_ALPHA["rank_tost"], "z")):
        rows.append(f"| {label} | " + " | ".join(f"{a:.4f}" for a in stats.schedule_levels(schedule, alpha, test))
                    + " |")
    return head + "\n" + "\n".join(rows)


def _rates_row(schedule: tuple[int, ...]) -> str:
    r = sequential.error_rates(schedule)
    return (f"| {', '.join(map(str, schedule))} | {r['t']['decided_under_null']:.2%} | "
            f"{r['sign']['decided_under_null']:.2%} | {r['permutation']['decided_under_null']:.2%} | "
            f"{r['signed_rank']['decided_under_null']:.2%} | {r['tost']['equivalent_at_margin']:.2%} | "
            f"{r['rank_tost']['equivalent_at_margin']:.2%} |")


def _power_lines(claim: str, module: ModuleType, measured: dict) -> list[str]:
    if not power.statistical(module):
        return ["- Power: not applicable (a verification, decided by its tolerance)."]
    stated = getattr(module, "INTEREST", None)
    lines = [f"- Effect of interest: {stated.effect:g}"
             + "".join(f"; {s}: {v:g}" for s, v in stated.per_setting.items())
             + f" ({module.PROTOCOL.endpoint.unit}) — {stated.source}."] if stated else \
        ["- Effect of interest: **not stated** (the claim module has no INTEREST)."]
    entry = measured.get(claim)
    if not entry or not entry["settings"] or stated is None:
        return lines + ["- Power: no default audit measured yet (run `make audit`, then "
                        "`python -m bnlab.experiments.power runs/audit/results.json`)."]
    audit = entry.get("audit", {})
    lines.append(f"- Planning spread (default audit {audit.get('created') or '?'}, commit "
                 f"{str(audit.get('git_commit'))[:10]}): " + "; ".join(
                     f"{s}: per-seed sd {stats_fmt(m.get('sd'))}" for s, m in entry["settings"].items()) + ".")
    lines.append(f"- False decisions under the null (fixed n, simulated): {power.false_decisions(module, entry):.1%}.")
    lines.append("- Power of the sequential plan at the effect of interest (simulated, default scale):")
    for setting in entry["settings"]:
        outcome = power.interest_power(module, entry, setting)
        cost = power.setting_cost(module, setting)
        first = LOOKS["default"][cost][0]
        mde = stats.minimum_detectable_effect(power._sd(entry["settings"][setting]), first)
        text = (f"  - {setting}: {outcome.supported:.0%} by the cap of {LOOKS['default'][cost][-1]} seeds "
                f"(mean seeds at stop {outcome.mean_n:.1f}; fixed-n MDE at {first} seeds {stats_fmt(mde)})")
        if outcome.supported >= power.POWER_GOAL:
            lines.append(text + ".")
            continue
        needed = power.fixed_n_needed(module, entry, setting)
        more = f"about {needed} seeds (fixed n) would reach 80%" if needed else \
            f"more than {power.MAX_SEEDS} seeds would be needed for 80%"
        lines.append(text + f": **underpowered at the cap**; {more}. If undecided at the cap, it stays inconclusive; "
                     "what would decide it: more seeds, or a less noisy per-seed measure.")
    return lines


def header() -> str:
    """The page's opening: the decision procedure, the sequential plan, its levels and simulated error rates."""
    return """# The audit's protocol

*Generated by `python -m bnlab.experiments.protocol_page` from the claim modules (`src/bnlab/experiments/`); do not
edit by hand.*

Every claim has **one primary endpoint**, fixed in code before any run: a number computed once per seed (paired:
the arms of a comparison share the seed, so their difference is the per-seed value), in the claim's own units, a
test, and a threshold or margin with its source. **Only the primary endpoint votes.** Everything else a claim
measures is a *secondary result*, reported with its own interval, never changing the verdict; identities checked
to a tolerance are *verifications*, reported apart from the statistical votes.

**The vote of one setting.** A directional endpoint is *supported* when the test finds the effect the claim
predicts beyond the threshold, *refuted* when it finds the opposite, *inconclusive* otherwise. An equivalence
endpoint is *supported* when equivalence within the margin is shown, *refuted* when a difference of at least the
margin is shown. With a fixed seed count (`--seeds N`) the levels are those of a two-sided 5% test (one-sided 2.5%
each way; 5% for each one-sided test of an equivalence); under the sequential plan below they are the nominal
levels of the look. Rules written as "95% interval" state the fixed-n level.

**A claim is a universal statement** ("BN does X"), so its settings combine by one rule, `stats.combine`:
*supported* only when every setting supports it; *refuted* when at least one setting refutes it and none supports
it (one counter-example refutes a universal statement); *mixed* when some settings support it and some refute it;
otherwise *inconclusive*. The report names the refuting settings. Because one refuting setting is enough, each of
k voting settings refutes at a k-th of the refutation level (Bonferroni), so that a claim whose every setting sits
at its null is refuted in at most 2.5% of audits. **Gates** (a manipulation check, a positive control) are not
settings: they must be supported for the settings to vote at all; a gate not passed makes the claim inconclusive,
and the report says so.

**Sequential seeds.** Each statistical setting follows a group-sequential plan fixed before the run: a first look
at the scale's seed count, then, for claims with a setting still undecided, more seeds in stages up to a cap
(trials are cached by key, so a stage runs only the added seeds; a setting decided at a look keeps that vote).
The looks, per scale and cost of the runs (cheap: deep linear net, MLPs, verifications; costly: the VGG runs):
""" + "\n".join(f"- {scale}: " + "; ".join(f"{cost} runs n = {', '.join(map(str, looks))}"
                                          for cost, looks in LOOKS[scale].items()) for scale in SCALES) + f"""

The caps: one look of half the first look's seeds again at the default scale (8 -> 12), within the default
audit's 15-minute budget (docs/audit.md, "Budget"); each cap is large enough for a rank or sign test to decide both
ways at its last look (see "Tests by the type of the values" below). The nominal level of each look comes from
{stats.SPENDING} (Lan & DeMets 1983), fixed by the seed counts alone: for the t-based tests (t, TOST) the
boundaries are found on {stats.BOUNDARY_PATHS // 2:,} simulated audits of t statistics (at 5–16 seeds the z
boundaries of a Brownian motion let a t test overspend), for the sign, permutation and rank tests on
{stats.BOUNDARY_PATHS:,} Brownian paths (these discrete tests spend less than their nominal level). A setting still
undecided at the cap is *inconclusive*, and its claim's section says what would decide it.

**Tests by the type of the values, fixed before the run** (`base.UNIT_TESTS`; an Endpoint declaring another test
for a unit is refused): bounded values (accuracies, shares, cosine differences) are t-tested (equivalence: TOST);
log ratios and decades, unbounded and heavy-tailed (a deep linear net's per-seed log ratio reaches 10⁴), get the
exact signed-rank test (equivalence: rank TOST); grid-valued outcomes (C07) the sign test. **A run or probe that
diverges counts as the worst outcome for the net that diverged, never as a missing seed**, in every claim through
one helper (`bnlab.experiments.outcomes`): on a log-ratio scale it enters as ±inf, ranked beyond every finite value;
on a bounded scale the diverged net scores the bottom of the scale (chance accuracy). The smallest two-sided p a
rank or sign test can reach with n seeds is 2/2ⁿ, so every voting setting's cap must let it decide both ways at the
last look's levels (`sequential.decidable`, checked for every claim and scale in tests): that is why the default
scale's costly runs also look at 8 and 12 seeds.

""" + "\n\n".join(_levels_table(schedule) for schedule in _SCHEDULES) + f"""

**Error control, simulated** ({sequential.SIMS:,} audits of one setting per test type and schedule, normal per-seed
values, `bnlab.experiments.sequential`; tests/test_experiments_sequential.py checks them). The t-based levels are
calibrated to spend exactly 5%, so their rates are 5% up to Monte Carlo error (± 0.2 points):

| schedule | decided under a true null: t | sign | permutation | signed-rank | equivalent at the margin: TOST | \
rank TOST |
|---|---|---|---|---|---|---|
""" + "\n".join(_rates_row(schedule) for schedule in _SCHEDULES) + f"""

**Power.** Each endpoint states the smallest effect it cares about and where that number comes from (its
*effect of interest*). Below, each setting's power is the share of {power.SIMS:,} simulated audits in which the
sequential plan of the default scale decides it in the predicted direction when the true effect is the effect of
interest (an equivalence setting: a true difference of 0), with the per-seed spread the last default audit
measured (a planning value); never the observed effect. The minimum detectable effect (MDE) is the smallest true
effect a fixed-n two-sided 5% t test detects with {stats.POWER:.0%} power at the first look's seed count.

`bnlab audit --seeds N` runs a fixed-n audit (one look, N seeds everywhere); `--first-seed K` runs seeds K, K+1, ...;
`--replicate` runs the same plan again on seeds from 1000 and reports per claim whether the verdict replicated.
"""


def stats_fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def claim_section(claim: str, module: ModuleType, measured: dict) -> str:
    p = module.PROTOCOL
    e = p.endpoint
    settings = ", ".join(e.settings)
    exceptions = "".join(f"; {s}: {t} with threshold {thr:g}" for s, (t, thr) in e.per_setting.items())
    costs = sorted({p.cost, *e.setting_costs.values()})
    seeds = "; ".join(f"{scale} " + ", ".join(f"{'/'.join(map(str, LOOKS[scale][c]))} ({c})" for c in costs)
                      for scale in SCALES)
    lines = [f"## {claim} · {CLAIMS[claim].title}", "",
             f"- Primary endpoint: **{e.name}** ({e.unit}) — {e.measure}.",
             f"- Test: {e.test} — {_TESTS[e.test]}{exceptions}.",
             f"- Threshold: {e.threshold:g} — {e.threshold_source}.",
             f"- Settings: {settings}" + (" (combined by stats.combine)." if len(e.settings) > 1 else "."),
             f"- Rule: {module.RULE}",
             f"- Seeds at each look of the sequential plan (the last is the cap): {seeds}."]
    if p.runs:
        lines.append(f"- What runs at the default scale: {p.runs}.")
    if p.paper:
        lines.append(f"- The paper, and how the default scale differs: {p.paper}")
    if p.why:
        lines.append(f"- Why this endpoint: {p.why}")
    if p.secondary:
        lines.append("- Secondary (reported, never voting): " + "; ".join(p.secondary) + ".")
    if p.verifications:
        lines.append("- Verifications (reported apart): " + "; ".join(p.verifications) + ".")
    lines += _power_lines(claim, module, measured)
    return "\n".join(lines)


def render_protocol(measured: dict | None = None) -> str:
    measured = power.load_measured() if measured is None else measured
    sections = []
    for claim in CLAIM_IDS:
        module = load_experiment(claim)
        if module is None:
            sections.append(f"## {claim}\n\nNo experiment module: not measured.")
            continue
        sections.append(claim_section(claim, module, measured))
    return header() + "\n" + "\n\n".join(sections) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTOCOL_PAGE
    write_text(target, render_protocol())
    print(f"protocol page written to {target}")
