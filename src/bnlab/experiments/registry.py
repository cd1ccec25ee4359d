"""Which module tests which claim.

A claim whose module does not exist yet is reported as `not_measured` (never guessed). The lookup only treats a
missing *experiment module* as "not measured": an import error inside an existing module propagates.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bnlab.experiments.base import CLAIM_IDS

CLAIM_MODULES: dict[str, str] = {
    "C01": "bnlab.experiments.c01_mechanics",
    "C02": "bnlab.experiments.c02_affine",
    "C03": "bnlab.experiments.c03_ics",
    "C04": "bnlab.experiments.c04_noisy",
    "C05": "bnlab.experiments.c05_loss_smoothness",
    "C06": "bnlab.experiments.c06_gradient_predictiveness",
    "C07": "bnlab.experiments.c07_learning_rate",
    "C08": "bnlab.experiments.c08_jacobian",
    "C09": "bnlab.experiments.c09_scale_invariance",
    "C10": "bnlab.experiments.c10_initialisation",
    "C11": "bnlab.experiments.c11_gradient_flow",
    "C12": "bnlab.experiments.c12_regularisation",
    "C13": "bnlab.experiments.c13_convergence",
    "C14": "bnlab.experiments.c14_landscape",
}
assert tuple(CLAIM_MODULES) == CLAIM_IDS


def load_experiment(claim_id: str) -> ModuleType | None:
    """The experiment module of `claim_id`, or None when that claim has no experiment yet."""
    name = CLAIM_MODULES[claim_id]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise
