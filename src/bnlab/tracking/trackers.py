"""Where a run's metrics go: a `Tracker` receives one record per evaluation / probe call.

`make_trackers(names, run_dir, config)` builds them by name: ``jsonl`` (default, no dependency),
``tensorboard`` and ``wandb`` (optional extras, imported only when asked for).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from bnlab.errors import BnlabError
from bnlab.tracking.jsonl import JsonlTracker
from bnlab.tracking.tensorboard import TensorBoardTracker
from bnlab.tracking.wandb import WandbTracker


class Tracker(Protocol):
    def log(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        """Record `metrics` of `kind` ("eval", "probe/<name>", "summary") at `step`."""

    def truncate(self, step: int) -> None:
        """Forget records at steps >= `step` (a resumed run repeats them)."""

    def close(self) -> None: ...


# name -> builder from (run folder, run config); the optional ones import their package only when built
_BUILDERS: dict[str, Callable[[Path, Mapping[str, Any]], Tracker]] = {
    "jsonl": lambda run_dir, config: JsonlTracker(run_dir / "metrics.jsonl"),
    "tensorboard": lambda run_dir, config: TensorBoardTracker(run_dir / "tensorboard"),
    "wandb": lambda run_dir, config: WandbTracker(run_dir, config),
}
TRACKERS: tuple[str, ...] = tuple(_BUILDERS)


def make_trackers(names: Sequence[str], run_dir: Path, config: Mapping[str, Any]) -> list[Tracker]:
    """One tracker per name, in order; an unknown name raises BnlabError naming the known ones."""
    trackers: list[Tracker] = []
    for name in names:
        if name not in _BUILDERS:
            raise BnlabError(f"unknown tracker '{name}' (choose from {', '.join(TRACKERS)})")
        trackers.append(_BUILDERS[name](run_dir, config))
    return trackers
