"""Shared test setup: deterministic seeds and a quiet, non-interactive matplotlib."""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("MPLBACKEND", "Agg")
# The fault-injection trial functions (tests/fault_trials.py) live with the tests, not in the installed package:
# allow their module as a trial function and make it importable by the process and Ray workers too.
_TESTS = os.path.dirname(os.path.abspath(__file__))
os.environ["BNLAB_TRIAL_MODULES"] = "fault_trials"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_TESTS, os.environ.get("PYTHONPATH", "")) if p)

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# tests/models_venv/ needs timm and torchvision: it runs in the models venv (make test-models, which make test calls)
if importlib.util.find_spec("timm") is None:
    collect_ignore = ["models_venv"]
