"""Power by design: every claim's rule run on simulated audits, under a null and under the effect the default audit
measured.

A claim's `decide` reads the per-seed values of its primary endpoint from ``metrics["primary"]`` (one list per
setting), so a simulated audit is a dict of normal draws: per setting, `n` values with the setting's mean and
per-seed standard deviation. Two questions, answered by simulation (`SIMS` audits, fixed seeds):

* **false decisions under the null** -- every setting's true effect at its null (the threshold of a directional
  test; the margin, the least favourable point, of an equivalence test): how often does the rule still say
  supported or refuted? It must stay at about 5% or below.
* **power at the measured effect** -- every setting at the effect and spread the default audit measured
  (`measured.json`, written by `update_measured` from a default audit's results.json): how often does the rule reach
  the measured effect's verdict (supported when it is beyond the threshold in the claim's direction)? Where that
  is below 80% at the default seed count, the protocol page says the claim is underpowered and how many seeds
  would reach 80% (`seeds_needed`).

Run ``python -m bnlab.experiments.power runs/audit/results.json`` after a default audit to refresh measured.json.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bnlab.atomic import write_json
from bnlab.errors import BnlabError
from bnlab.experiments import stats
from bnlab.experiments.registry import CLAIM_MODULES, load_experiment

MEASURED_FILE = Path(__file__).with_name("measured.json")
SIMS = 2000
POWER_GOAL = stats.POWER
MAX_SEEDS = 64

Spec = Mapping[str, tuple[float, float, int]]  # setting -> (true mean, per-seed sd, seeds)


def load_measured(path: str | Path = MEASURED_FILE) -> dict[str, Any]:
    """The effects and spreads of the last default audit recorded (empty when none is)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def statistical(module: ModuleType) -> bool:
    """Whether the claim's endpoint is decided by a statistical test (not a verification)."""
    return module.PROTOCOL.endpoint.test != "verification"


def simulate(module: ModuleType, spec: Spec, sims: int = SIMS, seed: int = 0) -> Counter:
    """Verdict counts of `module.decide` over `sims` simulated audits drawn from `spec`."""
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    for _ in range(sims):
        draws = {s: [float(v) for v in rng.normal(mean, sd, n)] for s, (mean, sd, n) in spec.items()}
        counts[module.decide({"primary": draws}).verdict] += 1
    return counts


def null_spec(module: ModuleType, measured: Mapping[str, Any], n: int | None = None) -> dict[str, tuple]:
    """Every setting at its null: the threshold, or the margin of an equivalence test (the least favourable point)."""
    endpoint = module.PROTOCOL.endpoint
    out = {}
    for setting, m in measured["settings"].items():
        test, threshold = endpoint.test_of(setting)
        out[setting] = (float(threshold), _sd(m), n or int(m["n_seeds"]))
    return out


def effect_spec(measured: Mapping[str, Any], n: int | None = None) -> dict[str, tuple]:
    return {s: (float(m["effect"]), _sd(m), n or int(m["n_seeds"])) for s, m in measured["settings"].items()}


def _sd(m: Mapping[str, Any]) -> float:
    sd = m.get("sd")
    return float(sd) if sd is not None and sd > 0 else 1e-12  # zero spread: deterministic draws


def expected_verdict(module: ModuleType, measured: Mapping[str, Any]) -> str:
    """The verdict the measured effects point to: the claim's own `decide` fed many seeds of each measured effect
    with a vanishing spread (so every component is decided by the sign of its effect, whatever the rule's shape)."""
    rng = np.random.default_rng(12345)
    draws = {s: [float(m["effect"]) + v for v in rng.normal(0.0, 1e-9 * (abs(float(m["effect"])) + 1.0), 256)]
             for s, m in measured["settings"].items()}
    return module.decide({"primary": draws}).verdict


def power(module: ModuleType, measured: Mapping[str, Any], n: int | None = None, sims: int = SIMS) -> float:
    """Fraction of simulated audits at the measured effects that reach `expected_verdict`."""
    counts = simulate(module, effect_spec(measured, n), sims)
    return counts[expected_verdict(module, measured)] / sims


def false_decisions(module: ModuleType, measured: Mapping[str, Any], n: int | None = None,
                    sims: int = SIMS) -> float:
    """Fraction of simulated null audits in which the rule says supported or refuted."""
    counts = simulate(module, null_spec(module, measured, n), sims)
    return (counts["supported"] + counts["refuted"]) / sims


def seeds_needed(module: ModuleType, measured: Mapping[str, Any], sims: int = 500) -> int | None:
    """The smallest seed count (every setting) whose simulated power reaches POWER_GOAL; None beyond MAX_SEEDS."""
    if expected_verdict(module, measured) == "mixed":
        return None  # a mixed verdict is two opposite decisions: it is reached, not powered for
    for n in range(2, MAX_SEEDS + 1):
        if power(module, measured, n, sims) >= POWER_GOAL:
            return n
    return None


def setting_power(module: ModuleType, measured: Mapping[str, Any], setting: str, n: int | None = None,
                  sims: int = SIMS) -> tuple[str, float]:
    """(the vote the measured effect points to, the fraction of simulated audits casting it) for one setting of the
    primary endpoint alone: how a claim whose settings point to opposite verdicts (mixed) is powered per setting."""
    from bnlab.experiments.base import setting_result  # base imports stats only; deferred to keep power light

    endpoint = module.PROTOCOL.endpoint
    m = measured["settings"][setting]
    effect, sd, k = float(m["effect"]), _sd(m), n or int(m["n_seeds"])
    rng = np.random.default_rng(0)
    tiny = [effect + v for v in rng.normal(0.0, 1e-9 * (abs(effect) + 1.0), 256)]
    expected = setting_result(endpoint, setting, tiny).vote or "inconclusive"
    hits = sum(setting_result(endpoint, setting, [float(v) for v in rng.normal(effect, sd, k)]).vote == expected
               for _ in range(sims))
    return expected, hits / sims


def setting_seeds_needed(module: ModuleType, measured: Mapping[str, Any], setting: str, sims: int = 500) -> int | None:
    """The smallest seed count at which one setting reaches its expected vote with POWER_GOAL; None beyond
    MAX_SEEDS (or when its expected vote is inconclusive: an effect exactly at the threshold)."""
    for n in range(2, MAX_SEEDS + 1):
        expected, achieved = setting_power(module, measured, setting, n, sims)
        if expected == "inconclusive":
            return None
        if achieved >= POWER_GOAL:
            return n
    return None


def measured_from_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """Per claim with a statistical endpoint: each primary setting's effect, per-seed sd and seed count."""
    out: dict[str, Any] = {}
    for claim in results.get("claims", []):
        votes = claim.get("votes") or []
        endpoint = (claim.get("protocol") or {}).get("endpoint") or {}
        if not votes or endpoint.get("test") == "verification":
            continue
        out[claim["id"]] = {
            "audit": {"scale": results.get("scale"), "created": results.get("created"),
                      "git_commit": results.get("git_commit")},
            "settings": {v["setting"]: {"effect": v["effect"], "sd": v.get("sd"), "n_seeds": v["n_seeds"]}
                         for v in votes if v.get("effect") is not None and v.get("setting")}}
    return out


def update_measured(results_path: str | Path, path: str | Path = MEASURED_FILE) -> dict[str, Any]:
    """Record the effects of a default audit's results.json in measured.json (atomically)."""
    results = json.loads(Path(results_path).read_text())
    if results.get("scale") != "default":
        raise BnlabError(f"measured effects come from a default-scale audit, not {results.get('scale')!r}")
    measured = measured_from_results(results)
    write_json(path, measured)
    return measured


def claim_modules() -> dict[str, ModuleType]:
    return {cid: load_experiment(cid) for cid in CLAIM_MODULES}


if __name__ == "__main__":  # python -m bnlab.experiments.power runs/audit/results.json
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bnlab.experiments.power RESULTS_JSON")
    found = update_measured(sys.argv[1])
    print(f"measured effects of {len(found)} claims written to {MEASURED_FILE}")
