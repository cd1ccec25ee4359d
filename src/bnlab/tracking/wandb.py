"""Weights & Biases logging (optional extra `bnlab[wandb]`); offline unless the user configured W&B."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bnlab.errors import BnlabError


class WandbTracker:
    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        try:
            import wandb
        except ImportError:
            raise BnlabError("tracker 'wandb' needs the wandb package: pip install 'bnlab[wandb]'") from None
        self._run = wandb.init(project="bnlab", dir=str(run_dir), config=dict(config), reinit=True)

    def log(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        numbers = {f"{kind}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
        self._run.log(numbers, step=step)

    def truncate(self, step: int) -> None:
        """W&B keeps its own history; a resumed run logs the repeated steps again."""

    def close(self) -> None:
        self._run.finish()
