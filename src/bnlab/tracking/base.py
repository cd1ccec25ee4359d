"""Where a run's metrics go: a `Tracker` receives one record per evaluation / probe call.

`make_trackers(names, run_dir, config)` builds them by name: ``jsonl`` (default, no dependency),
``tensorboard`` and ``wandb`` (optional extras, imported only when asked for).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from bnlab.errors import BnlabError
from bnlab.tracking.jsonl import JsonlTracker
from bnlab.tracking.tensorboard import TensorBoardTracker
from bnlab.tracking.wandb import WandbTracker

TRACKERS: tuple[str, ...] = ("jsonl", "tensorboard", "wandb")


class Tracker(Protocol):
    def log(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        """Record `metrics` of `kind` ("eval", "probe/<name>", "summary") at `step`."""

    def truncate(self, step: int) -> None:
        """Forget records at steps >= `step` (a resumed run repeats them)."""

    def close(self) -> None: ...


def make_trackers(names: Sequence[str], run_dir: Path, config: Mapping[str, Any]) -> list[Tracker]:
    trackers: list[Tracker] = []
    for name in names:
        if name == "jsonl":
            trackers.append(JsonlTracker(run_dir / "metrics.jsonl"))
        elif name == "tensorboard":
            trackers.append(TensorBoardTracker(run_dir / "tensorboard"))
        elif name == "wandb":
            trackers.append(WandbTracker(run_dir, config))
        else:
            raise BnlabError(f"unknown tracker '{name}' (choose from {', '.join(TRACKERS)})")
    return trackers
