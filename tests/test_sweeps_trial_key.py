"""A trial's cache key covers the code that computes it and the data it reads -- and nothing else.

* Editing a module the trial function imports (directly or not) changes the key; editing prose the trial never
  imports (a claim module's caption, the report) does not.
* A folder-backed data set is bound into the trial with a content fingerprint: other contents, another key.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from bnlab.experiments.base import CLAIM_IDS
from bnlab.experiments.registry import load_experiment
from bnlab.sweeps import trial as trial_module
from bnlab.sweeps.trial import Trial, bind_data, code_fingerprint


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny package shaped like bnlab: a trial module importing an engine; a claim module with a caption that
    imports the trial module (as claims name their trials)."""
    root = tmp_path / "fpdemo"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "engine.py").write_text("def step(x):\n    return x + 1\n")
    (root / "trials.py").write_text("from fpdemo.engine import step\n\n\ndef run(x):\n    return {'y': step(x)}\n")
    (root / "claim.py").write_text("import fpdemo.trials\n\nCAPTION = 'Loss along the gradient'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BNLAB_TRIAL_MODULES", "fault_trials,fpdemo")
    for name in [m for m in sys.modules if m.startswith("fpdemo")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    trial_module._closure.cache_clear()
    trial_module.code_fingerprint.cache_clear()
    yield root
    trial_module._closure.cache_clear()
    trial_module.code_fingerprint.cache_clear()


def _key(fn: str) -> str:
    trial_module._closure.cache_clear()
    trial_module.code_fingerprint.cache_clear()
    return Trial("C00", "t", fn, {"x": 1}).key()


def test_editing_a_caption_keeps_the_key_editing_the_engine_changes_it(package: Path) -> None:
    fn = "fpdemo.trials:run"
    before = _key(fn)
    assert before == _key(fn)  # stable
    (package / "claim.py").write_text("import fpdemo.trials\n\nCAPTION = 'The loss along −g, reworded'\n")
    assert _key(fn) == before  # prose the trial never imports
    (package / "engine.py").write_text("def step(x):\n    return x + 2\n")
    assert _key(fn) != before  # code it imports, indirectly


def test_every_audit_trial_hashes_code_without_claim_prose_or_the_report() -> None:
    """The audit's trial functions live outside the claim modules: none of them imports claim prose."""
    for claim in CLAIM_IDS:
        module = load_experiment(claim)
        plan = module.plan("smoke", 1)
        for fn in sorted({t.fn for t in plan.trials}):
            names = {name for name, _ in trial_module._closure(fn.partition(":")[0])}
            prose = sorted(n for n in names if n.startswith(("bnlab.experiments.c", "bnlab.report"))
                           or n == "bnlab.experiments.claims")
            assert not prose, f"{claim}: trial function {fn} imports {prose}"


def test_data_folder_contents_are_part_of_the_key(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, content in ((a, b"one"), (b, b"one")):
        folder.mkdir()
        (folder / "test_batch").write_bytes(content)
    t = Trial("C00", "t", "bnlab.trials.train_trial:train_trial", {"config": {"dataset": "cifar10"}})
    ka, kb = bind_data(t, a).key(), bind_data(t, b).key()
    assert ka != kb  # another folder
    assert bind_data(t, a).data["fingerprint"] == bind_data(t, b).data["fingerprint"]  # same contents
    (b / "test_batch").write_bytes(b"two")
    assert bind_data(t, b).data["fingerprint"] != bind_data(t, a).data["fingerprint"]
    plain = Trial("C00", "t", "bnlab.trials.train_trial:train_trial", {"config": {"dataset": "digits"}})
    assert bind_data(plain, a) is plain  # reads no folder: unchanged key


def test_code_fingerprint_of_a_real_trial_is_stable() -> None:
    fn = "bnlab.trials.train_trial:train_trial"
    assert code_fingerprint(fn) == code_fingerprint(fn) and len(code_fingerprint(fn)) == 16
    names = {name for name, _ in trial_module._closure("bnlab.trials.train_trial")}
    assert {"bnlab.train.loop", "bnlab.layers.batchnorm"} <= names  # what it trains with is covered
