"""The one loader of a run folder written by `bnlab train --out` (config.json + checkpoint.pt).

    run = load_run("runs/bn")            # LoadedRun(config, model, dataset)
    run = load_run("runs/bn", dataset)   # reuse a data set already in memory (it must be the run's own)

The checkpoint is read with ``weights_only=True`` (`bnlab.train.checkpoint.load_checkpoint`); the model is rebuilt
from the saved `TrainConfig` by name, so nothing named in the folder is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bnlab.config import from_mapping
from bnlab.data.dataset import Dataset
from bnlab.errors import BnlabError
from bnlab.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from bnlab.train.config import TrainConfig
from bnlab.train.loop import build_for_config, load_for_config


@dataclass
class LoadedRun:
    config: TrainConfig
    model: nn.Module  # the trained weights, on the CPU
    dataset: Dataset
    state: dict[str, Any]  # the whole checkpoint (step, optimizer, history, ...)


def load_run(folder: str | Path, dataset: Dataset | None = None) -> LoadedRun:
    """Load the run in `folder`; BnlabError naming the problem for a folder that is not a run, unreadable JSON, a
    bad config or a checkpoint that does not fit it, or a `dataset` that is not the run's."""
    path = Path(folder)
    if not (path / "config.json").is_file() or not (path / CHECKPOINT_NAME).is_file():
        raise BnlabError(f"'{folder}' is not a run folder (needs config.json and {CHECKPOINT_NAME})")
    try:
        saved = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BnlabError(f"'{path / 'config.json'}' is not valid JSON ({exc})") from None
    config = from_mapping(TrainConfig, saved, where=f"{folder}: ")
    if dataset is not None and dataset.name != config.dataset:
        raise BnlabError(f"run '{folder}' was trained on {config.dataset}, not {dataset.name}; pass --dataset "
                         f"{config.dataset}")
    state = load_checkpoint(path / CHECKPOINT_NAME, config)
    data = dataset if dataset is not None else load_for_config(config)
    model = build_for_config(config, data)
    model.load_state_dict(state["model"])
    return LoadedRun(config, model, data, state)
