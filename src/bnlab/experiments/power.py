"""Power by design: every claim's rule run on simulated audits, under a null and at the effect of interest.

A claim's `decide` reads the per-seed values of its primary endpoint from ``metrics["primary"]`` (one list per
setting), so a simulated audit is a dict of normal draws: per setting, `n` values with the setting's mean and
per-seed standard deviation. Two questions, answered by simulation (fixed seeds):

* **false decisions under the null** -- every setting's true effect at its null (the threshold of a directional
  test; the margin, the least favourable point, of an equivalence test): how often does the rule still say
  supported or refuted (at the first look, fixed n)? It must stay at about 5% or below.
* **power at the effect of interest** -- each setting's true effect at the smallest effect its claim cares about
  (the module's ``INTEREST``, with its source; for an equivalence setting a true difference of 0), with the
  per-seed spread the last default audit measured (`measured.json`, a planning value): how often does the
  sequential plan (`base.LOOKS`, `bnlab.experiments.sequential`) decide it in the predicted direction by its cap?
  Where that is below 80%, the protocol page says the setting is underpowered and how many seeds a fixed-n audit
  would need. The observed effect is never used: power at an observed effect only restates its interval.

Run ``python -m bnlab.experiments.power runs/audit/results.json`` after a default audit to refresh measured.json.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bnlab.atomic import write_json
from bnlab.errors import BnlabError
from bnlab.experiments import sequential, stats
from bnlab.experiments.base import LOOKS
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


def false_decisions(module: ModuleType, measured: Mapping[str, Any], n: int | None = None,
                    sims: int = SIMS) -> float:
    """Fraction of simulated null audits (fixed n: the measured seed counts, or `n`) in which the rule says
    supported or refuted."""
    counts = simulate(module, null_spec(module, measured, n), sims)
    return (counts["supported"] + counts["refuted"]) / sims


def _sd(m: Mapping[str, Any]) -> float:
    sd = m.get("sd")
    return float(sd) if sd is not None and sd > 0 else 1e-12  # zero spread: deterministic draws


def setting_cost(module: ModuleType, setting: str) -> str:
    """The run cost whose look schedule a setting follows (Endpoint.setting_costs, else Protocol.cost)."""
    return module.PROTOCOL.endpoint.setting_costs.get(setting, module.PROTOCOL.cost)


def voting_settings(module: ModuleType, settings: Sequence[str]) -> int:
    """How many of `settings` vote (gates do not): the refutation level is divided among them."""
    return max(1, sum(s not in module.PROTOCOL.endpoint.gates for s in settings))


def interest(module: ModuleType, setting: str) -> float:
    """The claim's smallest effect of interest in one setting (its ``INTEREST``); ValueError when it states none."""
    stated = getattr(module, "INTEREST", None)
    if stated is None:
        raise ValueError(f"{module.CLAIM_ID} states no effect of interest (INTEREST = base.Interest(...))")
    return stated.of(setting)


def interest_mean(module: ModuleType, setting: str) -> tuple[str, float, float]:
    """(test, threshold or margin, the true mean the power is computed at): threshold + effect of interest for a
    directional test, 0 (exact equivalence) for tost and rank_tost."""
    test, threshold = module.PROTOCOL.endpoint.test_of(setting)
    equivalence = test in sequential.EQUIVALENCE
    return test, float(threshold), 0.0 if equivalence else float(threshold) + interest(module, setting)


def interest_power(module: ModuleType, measured: Mapping[str, Any], setting: str, scale: str = "default",
                   sims: int = SIMS) -> sequential.Outcome:
    """The sequential plan of `scale` run on `sims` simulated audits of one setting at its effect of interest, with
    the per-seed sd measured by the last default audit; `.supported` is the power."""
    test, threshold, mean = interest_mean(module, setting)
    schedule = LOOKS[scale][setting_cost(module, setting)]
    voting = voting_settings(module, list(measured["settings"]))
    return sequential.simulate(test, schedule, mean, _sd(measured["settings"][setting]), threshold, sims,
                               voting=voting)


def fixed_n_needed(module: ModuleType, measured: Mapping[str, Any], setting: str, sims: int = 1000) -> int | None:
    """The smallest seed count at which a fixed-n audit (one look at 5%) decides the setting at its effect of
    interest with POWER_GOAL; None beyond MAX_SEEDS. The permutation test is approximated by the t test."""
    test, threshold, mean = interest_mean(module, setting)
    test = "t" if test == "permutation" else test
    sd = _sd(measured["settings"][setting])
    voting = voting_settings(module, list(measured["settings"]))
    for n in range(3, MAX_SEEDS + 1):
        if sequential.simulate(test, (n,), mean, sd, threshold, sims, voting=voting).supported >= POWER_GOAL:
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
