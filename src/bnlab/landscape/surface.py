"""`Surface` (a 2-D landscape) and `Curve` (a 1-D one): values plus everything needed to recompute any point.

Both hold the coordinates, the loss and accuracy values, the origin and the directions (parameter name -> tensor),
the seed, the normalisation, the 1-D parameter policy, the BN mode and the data's identity (`data_hash`). They are
saved as one ``.npz`` (written atomically; tensors under ``origin::<name>`` / ``dir<i>::<name>``, metadata as JSON)
and loaded with ``allow_pickle=False``. A partial surface (saved while a long grid runs, see
`bnlab.landscape.plane.random_plane`) records its finished rows in ``info["rows_done"]``; the rest is NaN.

Layout: ``loss[j, i]`` is the value at ``(x[i], y[j])``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnlab.atomic import write_bytes
from bnlab.errors import BnlabError
from bnlab.landscape.directions import ParamDict

_META_FIELDS = ("kind", "bn_mode", "seed", "norm", "one_d", "orthogonal", "data_hash", "precision", "bf16_error",
                "info")


def _tensors_to_arrays(prefix: str, params: ParamDict) -> dict[str, np.ndarray]:
    return {f"{prefix}::{k}": v.detach().cpu().contiguous().numpy() for k, v in params.items()}


def _arrays_to_tensors(data: Any, prefix: str) -> ParamDict:
    keys = [k for k in data.files if k.startswith(prefix + "::")]
    return {k[len(prefix) + 2:]: torch.from_numpy(np.array(data[k])) for k in keys}


@dataclass
class _Landscape:
    kind: str
    loss: np.ndarray
    acc: np.ndarray
    origin: ParamDict
    directions: list[ParamDict]
    bn_mode: str
    seed: int | None
    norm: str
    one_d: str
    data_hash: str
    orthogonal: bool = False
    precision: str = "fp32"
    bf16_error: float | None = None  # max |loss_bf16 - loss_fp32| on check points, when precision is bf16
    info: dict[str, Any] = field(default_factory=dict)  # free JSON-able notes (model, dataset, timings)

    def _meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _META_FIELDS}

    def _arrays(self) -> dict[str, np.ndarray]:
        """Coordinate arrays of the subclass (none here)."""
        return {}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the landscape atomically as .npz."""
        arrays = {**self._arrays(), "loss": self.loss, "acc": self.acc,
                  "meta_json": np.array(json.dumps(self._meta(), default=float))}
        arrays.update(_tensors_to_arrays("origin", self.origin))
        for i, d in enumerate(self.directions):
            arrays.update(_tensors_to_arrays(f"dir{i}", d))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return write_bytes(path, buffer.getvalue())


def _load_common(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise BnlabError(f"no landscape file at {path}")
    try:
        data = np.load(path, allow_pickle=False)
        meta = json.loads(str(data["meta_json"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise BnlabError(f"{path} is not a bnlab landscape file ({exc})") from None
    return data, meta


def _load_fields(path: str | os.PathLike, key: str, holds_instead: str) -> tuple[Any, dict[str, Any]]:
    """The arrays of the landscape file at `path` and the fields every landscape has (loss, acc, origin,
    directions, metadata); BnlabError "`path` holds `holds_instead`" when it lacks the coordinate array `key`."""
    data, meta = _load_common(path)
    if key not in data.files:
        raise BnlabError(f"{path} holds {holds_instead}")
    return data, {"loss": np.array(data["loss"]), "acc": np.array(data["acc"]),
                  "origin": _arrays_to_tensors(data, "origin"), "directions": _directions(data), **meta}


def _directions(data: Any) -> list[ParamDict]:
    out = []
    i = 0
    while any(k.startswith(f"dir{i}::") for k in data.files):
        out.append(_arrays_to_tensors(data, f"dir{i}"))
        i += 1
    return out


@dataclass
class Surface(_Landscape):
    """A 2-D landscape: ``loss[j, i]`` at ``origin + x[i] d_0 + y[j] d_1``; `path` optional (T, 2) projected
    trajectory (PCA planes)."""

    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    path: np.ndarray | None = None

    @property
    def rows_done(self) -> int:
        """Rows evaluated so far (all of them unless this is a partial grid saved for resume)."""
        return int(self.info.get("rows_done", len(self.y)))

    @property
    def complete(self) -> bool:
        return self.rows_done == len(self.y)

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"x": self.x, "y": self.y}
        if self.path is not None:
            out["path"] = self.path
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> Surface:
        data, common = _load_fields(path, "y", "a 1-D curve, not a surface")
        return cls(x=np.array(data["x"]), y=np.array(data["y"]),
                   path=np.array(data["path"]) if "path" in data.files else None, **common)


@dataclass
class Curve(_Landscape):
    """A 1-D landscape: ``loss[i]`` at ``origin + t[i] d_0`` (for an interpolation, t = 0 start, 1 end)."""

    t: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"t": self.t}

    @classmethod
    def load(cls, path: str | os.PathLike) -> Curve:
        data, common = _load_fields(path, "t", "a surface, not a 1-D curve")
        return cls(t=np.array(data["t"]), **common)
