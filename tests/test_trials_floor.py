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


def test_planning_builds_no_model(monkeypatch) -> None:
    """Planning C03–C06 names the watched module without building a model: the trial names the last nonlinearity
    on the model it trains (`bnlab.trials.probed_run.LAST`)."""
    import torch

    from bnlab.experiments import probed_training
    from bnlab.experiments.registry import load_experiment
    from bnlab.trials import probed_run

    def refuse(*args, **kwargs):
        raise AssertionError("planning built a model")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)  # any model, layer or container
    assert probed_training.LAST_ACTIVATION == probed_run.LAST
    for claim in ("C03", "C04", "C05", "C06"):
        for scale in ("smoke", "default", "paper"):
            plan = load_experiment(claim).plan(scale, 2)
            watched = {t.params.get("activation_module") for t in plan.trials if t.fn.endswith(":probed_run")}
            assert watched == {probed_run.LAST}, (claim, scale)


@pytest.mark.parametrize("name, kwargs, in_shape, want", [
    ("mlp", {"hidden": [32, 32]}, (1, 8, 8), "blocks.1.act"),
    ("dln", {"depth": 3}, (10,), "blocks.1.act"),
    ("vgg", {"config": "narrow"}, (1, 8, 8), "features.4.act"),
])
def test_last_activation_names_the_last_nonlinearity(name, kwargs, in_shape, want) -> None:
    from bnlab.models import build_model
    from bnlab.probes.activations import activation_modules
    from bnlab.trials.probed_run import last_activation

    model = build_model(name, in_shape=in_shape, **kwargs)
    names = activation_modules(model) or [n for n, _ in model.named_modules() if n.endswith(".act")]
    assert last_activation(model) == names[-1] == want
