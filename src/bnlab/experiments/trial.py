"""Running one trial: import its function by name and call it with its plain-data parameters.

Only functions inside the `bnlab` package can be named, so a sweep file or a cached plan can never make bnlab
import and run arbitrary code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from bnlab.errors import BnlabError
from bnlab.experiments.base import Trial


def resolve(fn: str) -> Callable[..., dict[str, Any]]:
    module_name, _, attr = fn.partition(":")
    if not module_name.startswith("bnlab.") or not attr or attr.startswith("_"):
        raise BnlabError(f"trial function must be 'bnlab.<module>:<function>', got {fn!r}")
    module = importlib.import_module(module_name)
    func = getattr(module, attr, None)
    if not callable(func):
        raise BnlabError(f"no function {attr!r} in {module_name}")
    return func


def execute_trial(trial: Trial) -> dict[str, Any]:
    """Run `trial` in this process and return its plain-data result."""
    result = resolve(trial.fn)(**dict(trial.params))
    if not isinstance(result, dict):
        raise TypeError(f"trial {trial.claim}/{trial.name} returned {type(result).__name__}, expected dict")
    return result
