"""Checkpoints: everything a run needs to continue bit-identically, in one atomically written file.

Contents of ``<run>/checkpoint.pt`` (read back with ``torch.load(weights_only=True)``, so a checkpoint can never
run code): the format tag, the config (JSON text), the step (updates done), model and optimizer state dicts, all
RNG states, the batch iterator's state, the initial loss, and the history and probe records as JSON text (exact
float round trip). A checkpoint from another config (other than keys in RESUMABLE_CHANGES) is refused.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from bnlab.atomic import write_bytes
from bnlab.config import to_mapping
from bnlab.errors import BnlabError
from bnlab.train.config import RESUMABLE_CHANGES, TrainConfig

FORMAT = "bnlab-checkpoint-v1"
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, *, config: TrainConfig, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, rng: dict[str, Any], batches: dict[str, Any],
                    initial_loss: float | None, history: dict[str, list], probes: dict[str, list]) -> Path:
    state = {
        "format": FORMAT,
        "config": json.dumps(to_mapping(config), sort_keys=True),
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "batches": batches,
        "initial_loss": initial_loss,
        "history": json.dumps(history),
        "probes": json.dumps(probes),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, config: TrainConfig, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`, checked against `config`; history/probes decoded from JSON."""
    try:
        with warnings.catch_warnings():  # a foreign pickle makes torch warn about its protocol: the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unreadable file is bad input here
        # first sentence only: torch's advice to retry with weights_only=False would let the file run code
        first = (str(exc).splitlines() or [""])[0].split(". ")[0]  # an empty file raises an empty message
        raise BnlabError(f"cannot read checkpoint '{path}': {type(exc).__name__}: {first}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BnlabError(f"'{path}' is not a bnlab checkpoint")
    saved = json.loads(state["config"])
    current = to_mapping(config)
    for key in sorted(set(saved) | set(current)):
        if key not in RESUMABLE_CHANGES and saved.get(key) != current.get(key):
            raise BnlabError(f"checkpoint '{path}' was written with {key}={saved.get(key)!r}, not "
                             f"{current.get(key)!r}; use another run folder or the original settings")
    state["history"] = json.loads(state["history"])
    state["probes"] = json.loads(state["probes"])
    return state
