"""Fake claim modules for the audit tests: cheap, deterministic trials that exercise every path of the audit.

`install(monkeypatch_like)` registers three fake experiments in place of real ones:

* C07 (`fake_c07`): 2 trials per seed (BN / no BN), a verdict by the house CI rule, a lines and a bars figure;
* C08 (`fake_c08_trial_fails`): one trial raises, so the claim must come out `inconclusive` with the error;
* C09 (`fake_c09_summarize_fails`): its measure() raises, so the claim must come out `inconclusive`;
every other claim is pointed at a module that does not exist, so it must be `not_measured`.

Trial functions must be named inside `bnlab.` (see `bnlab.sweeps.trial.resolve`); the fake names
``bnlab.fake_audit:<fn>`` are served by a patched `resolve` that falls back to the real one.
"""

from __future__ import annotations

import os
import sys
import time
import types
from collections.abc import Mapping
from typing import Any

from bnlab.experiments.base import (
    CLAIM_IDS,
    ClaimProtocol,
    Decision,
    Description,
    Endpoint,
    Figure,
    Plan,
    decide_endpoint,
    seeds_for,
)
from bnlab.sweeps import trial as trial_module
from bnlab.sweeps.trial import Trial

_REAL_RESOLVE = trial_module.resolve
CALLS: list[str] = []  # names of fake trials executed in this process


def accuracy(norm: str, seed: int, sleep: float = 0.0) -> dict[str, Any]:
    """A made-up but deterministic 'training run': BN reaches higher accuracy than no BN for every seed."""
    if os.environ.get("BNLAB_FAKE_INTERRUPT_AT") == f"{norm}/{seed}":
        raise KeyboardInterrupt  # as if Ctrl-C arrived while this trial ran
    CALLS.append(f"{norm}/{seed}")
    if os.environ.get("BNLAB_FAKE_BLOCK_AT") == f"{norm}/{seed}":  # hang until the test interrupts us
        with open(os.environ["BNLAB_FAKE_MARKER"], "a") as handle:
            handle.write("blocked\n")
        time.sleep(120)
    if sleep:
        time.sleep(sleep)
    marker = os.environ.get("BNLAB_FAKE_MARKER")
    if marker:  # lets a subprocess test see when the first trial has finished
        with open(marker, "a") as handle:
            handle.write(f"{norm}/{seed}\n")
    base = 0.9 if norm == "bn" else 0.7
    # the two arms vary differently over seeds, so the paired gaps have a spread (a zero spread decides nothing)
    acc = base + (0.013 * ((seed * 7) % 5) if norm == "bn" else 0.011 * ((seed * 3) % 4))
    curve = [base * (1 - 0.5 ** (i + 1)) + 0.001 * seed for i in range(20)]
    return {"acc": acc, "curve": curve}


def broken(seed: int) -> dict[str, Any]:
    raise RuntimeError(f"trial exploded for seed {seed}")


FAKE_FUNCS = {"bnlab.fake_audit:accuracy": accuracy, "bnlab.fake_audit:broken": broken}


def resolve(fn: str) -> Any:
    return FAKE_FUNCS.get(fn) or _REAL_RESOLVE(fn)


def _c07_plan(scale: str, seeds: int | None, first_seed: int = 0) -> Plan:
    sleep = float(os.environ.get("BNLAB_FAKE_SLEEP", "0"))
    seed_list = seeds_for(scale, seeds, first_seed)
    trials = tuple(
        Trial("C07", f"{norm}/seed={s}", "bnlab.fake_audit:accuracy",
              {"norm": norm, "seed": s, **({"sleep": sleep} if sleep else {})})
        for s in seed_list for norm in ("bn", "none")
    )
    return Plan("C07", scale, seed_list, {"scale": scale, "title": TITLE}, trials)


TITLE = "fake lr sweep"
_PROTOCOL = ClaimProtocol(endpoint=Endpoint("Δacc", "BN − no BN test accuracy", "accuracy", "t", 0.0, "0 = no gain"),
                     cost="cheap", runs="fake trials", paper="none")


def _c07_measure(plan: Plan, results: Mapping[str, dict]) -> dict:
    gaps = [results[f"bn/seed={s}"]["acc"] - results[f"none/seed={s}"]["acc"] for s in plan.seeds]
    return {"primary": {"all": gaps}, "gaps": gaps, "nested": {"a": 1, "b": [1.0, 2.0]},
            "curves": {n: results[f"{n}/seed={plan.seeds[0]}"]["curve"] for n in ("bn", "none")}}


def _c07_decide(metrics: Mapping) -> Decision:
    return decide_endpoint(_PROTOCOL.endpoint, metrics)


def _c07_figures(plan: Plan, results: Mapping[str, dict], metrics: Mapping) -> list[Figure]:
    return [
        Figure("curves", "lines", "Training curves", "seed 0", {"panels": [{
            "title": "accuracy", "xlabel": "step", "ylabel": "acc",
            "series": [{"label": label, "x": list(range(20)), "y": metrics["curves"][norm]}
                       for label, norm in (("BN", "bn"), ("no BN", "none"))]}]}),
        Figure("final", "bars", "Final accuracy", "mean over seeds", {"panels": [{
            "title": "final", "ylabel": "acc", "categories": ["final"],
            "groups": [{"label": "BN", "values": [0.9]}, {"label": "no BN", "values": [0.7]}]}]}),
    ]


def _c07_describe(plan: Plan, metrics: Mapping, decision: Decision) -> Description:
    return Description("BN beats no BN in this fake.", "fake trials", ["this is a fake"])


def _c08_plan(scale: str, seeds: int | None, first_seed: int = 0) -> Plan:
    trials = (Trial("C08", "ok", "bnlab.fake_audit:accuracy", {"norm": "bn", "seed": 100}),
              Trial("C08", "broken", "bnlab.fake_audit:broken", {"seed": 1}))
    return Plan("C08", scale, seeds_for(scale, seeds, first_seed), {}, trials)


def _c08_measure(plan: Plan, results: Mapping[str, dict]) -> dict:  # pragma: no cover - never reached
    raise AssertionError("measure must not be called when a trial failed")


def _c09_plan(scale: str, seeds: int | None, first_seed: int = 0) -> Plan:
    # shares trial bn/seed=0 with C07: the audit must run it once
    trials = (Trial("C09", "shared", "bnlab.fake_audit:accuracy", {"norm": "bn", "seed": 0}),)
    return Plan("C09", scale, seeds_for(scale, seeds, first_seed), {}, trials)


def _c09_measure(plan: Plan, results: Mapping[str, dict]) -> dict:
    raise ZeroDivisionError("summary divided by zero")


def _module(name: str, claim_id: str, plan: Any, measure: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.CLAIM_ID, module.TITLE, module.PROTOCOL = claim_id, TITLE, _PROTOCOL
    module.RULE = "supported if the CI of BN − no BN lies above 0"
    module.plan, module.measure = plan, measure
    module.decide, module.figures, module.describe = _c07_decide, _c07_figures, _c07_describe
    return module


MODULES = {
    "C07": _module("bnlab_fake_c07", "C07", _c07_plan, _c07_measure),
    "C08": _module("bnlab_fake_c08", "C08", _c08_plan, _c08_measure),
    "C09": _module("bnlab_fake_c09", "C09", _c09_plan, _c09_measure),
}


def install(setattr_: Any = None) -> None:
    """Register the fakes. `setattr_` is monkeypatch.setattr / setitem-like; None patches for good (subprocess)."""
    from bnlab.experiments import registry

    for module in MODULES.values():
        sys.modules[module.__name__] = module
    mapping = {cid: (MODULES[cid].__name__ if cid in MODULES else f"bnlab_fake_missing_{cid.lower()}")
               for cid in CLAIM_IDS}
    if setattr_ is None:
        registry.CLAIM_MODULES.update(mapping)
        trial_module.resolve = resolve
    else:
        for cid, name in mapping.items():
            setattr_.setitem(registry.CLAIM_MODULES, cid, name)
        setattr_.setattr(trial_module, "resolve", resolve)
