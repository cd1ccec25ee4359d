"""Every trial the audit plans, at every scale, names a module-level function on the trials floor.

A claim names its trial function by string (``f"{TRIALS}:fn"``); a typo or a function moved away would only show
when that trial runs. Here every planned trial of every claim at every scale is resolved without running it.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from bnlab.experiments.base import SCALES
from bnlab.experiments.registry import CLAIM_MODULES, load_experiment


def _resolve(fn: str):  # noqa: ANN202
    module, _, name = fn.partition(":")
    return importlib.import_module(module), name


@pytest.mark.parametrize("scale", SCALES)
def test_every_planned_trial_resolves_on_the_trials_floor(scale: str) -> None:
    seen: set[str] = set()
    for claim_id in CLAIM_MODULES:
        plan = load_experiment(claim_id).plan(scale, None)
        for trial in plan.trials:
            module, name = _resolve(trial.fn)
            assert module.__name__.startswith("bnlab.trials."), f"{claim_id} {trial.name}: {trial.fn}"
            target = getattr(module, name, None)
            assert inspect.isfunction(target), f"{claim_id} {trial.name}: {trial.fn} is not a function"
            assert target.__module__ == module.__name__, f"{trial.fn} is re-exported, not defined there"
            params = inspect.signature(target).parameters
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            unknown = set(trial.params) - set(params)
            assert accepts_any or not unknown, f"{trial.fn} takes no {sorted(unknown)}"
            seen.add(trial.fn)
    assert len(seen) >= 15  # every family of trial is planned at every scale


def test_claim_modules_spell_their_trial_module_one_way() -> None:
    """A claim module that plans trials names their module once, as ``TRIALS``; no other spelling is left."""
    from pathlib import Path

    import bnlab.experiments as experiments

    for path in sorted(Path(experiments.__file__).parent.glob("*.py")):
        source = path.read_text()
        for old in ("_MODULE = ", "TRIAL_FN", "_FN = "):
            assert old not in source, f"{path.name}: {old.strip()}"
        if '"bnlab.trials.' in source:
            assert 'TRIALS = "bnlab.trials.' in source, path.name
            assert source.count('"bnlab.trials.') == 1, f"{path.name} spells a trial module more than once"
