"""TensorBoard scalars (optional extra `bnlab[tensorboard]`); numeric metrics only, tagged ``<kind>/<key>``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bnlab.errors import BnlabError


class TensorBoardTracker:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise BnlabError("tracker 'tensorboard' needs the tensorboard package: "
                             "pip install 'bnlab[tensorboard]'") from None
        self._writer = SummaryWriter(str(log_dir))

    def log(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"{kind}/{key}", value, step)

    def truncate(self, step: int) -> None:
        """TensorBoard shows the latest value per step, so repeated steps after a resume need no cleanup."""

    def close(self) -> None:
        self._writer.close()
