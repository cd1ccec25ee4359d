"""C06 — "BN makes the gradient more predictive (smaller β-smoothness)" (Santurkar et al. 2018, Fig. 4b, c).

On the same runs as C05 (shared trials): at probe times, ‖∇L(w − ηg) − g‖₂ for the K step sizes. Two sections,
each voting per net (VGG and the deep linear net) with the effect log(no BN / BN) over seeds:

* gradient predictiveness — the width of the band of ‖∇L(w − ηg) − g‖ over η (Fig. 4b);
* effective β-smoothness — max over η of ‖∇L(w − ηg) − g‖ / ‖ηg‖ (Fig. 4c).

The claim's verdict combines every section's votes. Sections are a list (`PLANNERS` adds trials, `SECTIONS` turns
results into votes), so another measure — e.g. the Hessian's top eigenvalue over training — is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bnlab.experiments import c05_loss_smoothness as c05
from bnlab.experiments.base import ClaimResult, Figure, KeyNumber, Plan, combine_verdicts, seeds_for
from bnlab.experiments.curvature import config_for, curvature_trials, summarise_curvature
from bnlab.sweeps.trial import Trial

CLAIM_ID = "C06"
TITLE = "BN makes the gradient more predictive (β-smoothness)"


@dataclass
class Section:
    """One measure of C06: its rule (written before the run), votes per setting, and what to show."""

    name: str
    rule: str
    verdicts: dict[str, str]
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    key_number: KeyNumber | None = None


_VOTE = ("per seed and net the measure is averaged over probe times; effect = log(no BN / BN); VGG and DLN each: "
         "95% CI wholly > 0 -> supported, wholly < 0 -> refuted, else inconclusive")


def _measure_section(plan: Plan, results: Mapping[str, dict], name: str, key: str, label: str,
                     figure: Figure) -> Section:
    cmp = c05.compare(plan, results, key)
    vgg, dln = cmp["vgg"]["log_none_over"]["bn"], cmp["dln"]["log_none_over"]["bn"]
    return Section(
        name=name, rule=f"{label}: {_VOTE}.",
        verdicts={f"{name}/vgg": cmp["vgg"]["verdict"], f"{name}/dln": cmp["dln"]["verdict"]},
        summary=(f"log({label} no BN / BN): VGG {vgg['mean']:+.2f} ({cmp['vgg']['verdict']}), DLN {dln['mean']:+.2f} "
                 f"({cmp['dln']['verdict']})."),
        metrics=cmp, figures=[figure],
        key_number=KeyNumber(f"VGG: log({label} no BN / BN)", vgg["mean"], vgg["ci_low"], vgg["ci_high"]),
    )


def predictiveness_section(plan: Plan, results: Mapping[str, dict]) -> Section:
    fig = c05.band_figure("santurkar_fig4b", "Santurkar Fig. 4b: gradient predictiveness",
                          "Left of each pair: min–max over the step sizes of ‖∇L(w − ηg) − g‖ (first seed); right: "
                          "the band's width, mean over seeds with min–max band.",
                          plan, results, "dist_min", "dist_max", "gradient_predictiveness", "‖∇L(w − ηg) − g‖",
                          "gradient predictiveness")
    return _measure_section(plan, results, "gradient_predictiveness", "gradient_predictiveness",
                            "gradient predictiveness", fig)


def beta_section(plan: Plan, results: Mapping[str, dict]) -> Section:
    fig = c05.band_figure("santurkar_fig4c", "Santurkar Fig. 4c: effective β-smoothness",
                          "Left of each pair: min–max over the step sizes of ‖∇L(w − ηg) − g‖ (first seed); right: "
                          "max over η of ‖∇L(w − ηg) − g‖ / ‖ηg‖, mean over seeds with min–max band.",
                          plan, results, "dist_min", "dist_max", "beta_smoothness", "‖∇L(w − ηg) − g‖",
                          "effective β-smoothness")
    fig.data["panels"] = [p for i, p in enumerate(fig.data["panels"]) if i % 2 == 1]  # the bands are in Fig. 4b
    return _measure_section(plan, results, "beta_smoothness", "beta_smoothness", "effective β-smoothness", fig)


def along_gradient_trials(scale: str, seeds: tuple[int, ...]) -> list[Trial]:
    return c05.shared_trials(CLAIM_ID, scale, seeds)


def hessian_trials(scale: str, seeds: tuple[int, ...]) -> list[Trial]:
    """The Hessian top eigenvalue over training (bnlab.experiments.curvature; trials shared with C14)."""
    return curvature_trials(CLAIM_ID, scale, seeds)


def hessian_section(plan: Plan, results: Mapping[str, dict]) -> Section:
    s = summarise_curvature(CLAIM_ID, plan.scale, plan.seeds, results)
    return Section(name=s.name, rule=s.rule, verdicts=s.verdicts, summary=s.summary, metrics=s.metrics,
                   figures=s.figures, caveats=s.caveats, key_number=s.key_number)


# Extend C06 by appending: a planner (scale, seeds) -> trials, and a section (plan, results) -> Section.
PLANNERS: list[Callable[[str, tuple[int, ...]], list[Trial]]] = [along_gradient_trials, hessian_trials]
SECTIONS: list[Callable[[Plan, Mapping[str, dict]], Section]] = [predictiveness_section, beta_section,
                                                                  hessian_section]

RULE_OVERALL = "Verdict: combine_verdicts over every section's votes."


def _curvature_config(scale: str) -> dict[str, Any]:
    return asdict(config_for(scale))


def plan(scale: str, seeds: int) -> Plan:
    seed_list = seeds_for(seeds)
    trials: list[Trial] = []
    seen: set[str] = set()
    for planner in PLANNERS:
        for t in planner(scale, seed_list):
            if t.name not in seen:
                seen.add(t.name)
                trials.append(t)
    config = {"runs": {f: c05.run_settings(f, scale) for f in c05.NORMS},
              "norms": {f: list(n) for f, n in c05.NORMS.items()},
              "eta_ranges": {f: list(c05.ETA_RANGES[f]) for f in c05.NORMS},
              "sections": [s.__name__ for s in SECTIONS],
              "curvature": _curvature_config(scale)}
    return Plan(claim=CLAIM_ID, scale=scale, seeds=seed_list, config=config, trials=tuple(trials))


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    sections = [make(plan, results) for make in SECTIONS]
    votes = {k: v for s in sections for k, v in s.verdicts.items()}
    verdict = combine_verdicts(list(votes.values()))
    caveats = [c for s in sections for c in s.caveats] + c05.scale_caveats(plan)
    caveats.append("Like the loss variation, gradient distances shrink as the loss flattens late in training; the "
                   "β-smoothness divides by ‖ηg‖ and is the less level-dependent of the two.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=" ".join(f"[{s.name}] {s.rule}" for s in sections) + " " + RULE_OVERALL,
        summary=" ".join(s.summary for s in sections), method=c05.method_text(plan),
        key_number=next((s.key_number for s in sections if s.key_number is not None), None),
        metrics={"sections": {s.name: s.metrics for s in sections}, "verdicts": votes},
        figures=[f for s in sections for f in s.figures], caveats=caveats,
    )
