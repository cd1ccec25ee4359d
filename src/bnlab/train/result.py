"""What a run returns: curves, probe records, divergence, the trained model and a final summary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bnlab.config import to_mapping
from bnlab.train.config import TrainConfig

HISTORY_KEYS: tuple[str, ...] = ("step", "train_loss", "eval_step", "test_loss", "test_acc", "train_acc",
                                 "train_eval_loss")


def empty_history() -> dict[str, list]:
    return {key: [] for key in HISTORY_KEYS}


@dataclass
class TrainResult:
    """history: "step", "train_loss" per step (loss of the batch before that step's update); "eval_step",
    "test_loss", "test_acc", "train_acc", "train_eval_loss" per evaluation (accuracies are NaN for regression).
    probes: name -> list of dicts with "step". diverged_at_step: the first step whose train loss was non-finite
    or above diverge_factor x the initial loss (curves end there), else None. final: the last evaluation and
    run facts ("steps_done", "diverged", "seconds", "steps_per_s")."""

    config: TrainConfig
    history: dict[str, list]
    probes: dict[str, list[dict[str, Any]]]
    diverged_at_step: int | None
    model: nn.Module
    final: dict[str, Any]
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human lines: what ran, how it ended, where it was saved."""
        c, f = self.config, self.final
        what = f"{c.model}/{c.norm} on {c.dataset}, {c.optimizer} lr={c.lr:g}, batch {c.batch_size}, seed {c.seed}"
        lines = [what]
        if self.diverged_at_step is not None:
            loss = self.history["train_loss"][-1] if self.history["train_loss"] else math.nan
            lines.append(f"diverged at step {self.diverged_at_step} (train loss {loss:.4g}); curves end there")
        elif math.isnan(f.get("test_acc", math.nan)):  # regression: no accuracy
            lines.append(f"{f['steps_done']} steps: test loss {f.get('test_loss', math.nan):.4g}, train loss "
                         f"{f.get('train_eval_loss', math.nan):.4g}")
        else:
            lines.append(f"{f['steps_done']} steps: test acc {f['test_acc']:.4f}, test loss "
                         f"{f.get('test_loss', math.nan):.4f}, train acc {f.get('train_acc', math.nan):.4f}")
        lines.append(f"{f['seconds']:.1f} s ({f['steps_per_s']:.0f} steps/s)"
                     + (f"; run folder {self.out_dir}" if self.out_dir is not None else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (no model)."""
        return {"config": to_mapping(self.config), "history": self.history, "probes": self.probes,
                "diverged_at_step": self.diverged_at_step, "final": self.final}
