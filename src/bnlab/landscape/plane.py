"""Random planes and lines around a model (Li et al. 2018, Sec. 4), and PCA planes of a trajectory (Sec. 7).

`random_plane` draws two seeded, normalised directions (`bnlab.landscape.directions`), evaluates the loss on the
regular grid ``x, y`` (both containing 0) with `bnlab.landscape.points.evaluate_points` and returns a `Surface`.
Long grids are evaluated a block of rows at a time; with ``out=...`` every finished block is saved atomically, and
a rerun with the same settings resumes after the last saved row. ``rows=(a, b)`` evaluates only rows a..b-1, so a
sweep executor can fan a large grid out by rows; `merge_rows` puts the parts back together.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnlab.config import config_hash
from bnlab.data.batches import Batch, as_batches
from bnlab.errors import BnlabError
from bnlab.landscape.directions import ParamDict, model_origin, pca_directions, random_directions
from bnlab.landscape.grid import plane_points, symmetric_axis
from bnlab.landscape.points import LossFn, data_hash, evaluate_points
from bnlab.landscape.surface import Curve, Surface


def params_hash(params: Mapping[str, torch.Tensor]) -> str:
    """Identity of a parameter set (names, shapes and bytes), first 16 hex digits of sha256."""
    h = hashlib.sha256()
    for name in sorted(params):
        t = params[name].detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _bf16_error(model: nn.Module, loss_fn: LossFn, batches: list[Batch], origin: ParamDict,
                directions: list[ParamDict], coords: np.ndarray, values: np.ndarray, bn_mode: str,
                eval_kwargs: dict[str, Any]) -> float:
    """max |loss_bf16 - loss_fp32| over the given check points."""
    kwargs = {**eval_kwargs, "precision": "fp32"}
    ref = evaluate_points(model, loss_fn, batches, origin, directions, coords, bn_mode, **kwargs)["loss"]
    return float(np.max(np.abs(ref - values)))


def random_plane(model: nn.Module, loss_fn: LossFn, data: Batch | Sequence[Batch], *, radius: float = 1.0,
                 steps: int = 21, seed: int = 0, norm: str = "filter", one_d: str = "zero", orthogonal: bool = False,
                 bn_mode: str = "train", directions: Sequence[ParamDict] | None = None,
                 out: str | os.PathLike | None = None, rows: tuple[int, int] | None = None,
                 rows_per_block: int | None = None, info: Mapping[str, Any] | None = None,
                 progress: Callable[[int, int], None] | None = None, **eval_kwargs: Any) -> Surface:
    """The loss on a ``steps x steps`` grid over ``[-radius, radius]^2`` spanned by two random directions.

    `eval_kwargs` go to `evaluate_points` (recal_data, strategy, chunk, channels_last, linear_first_layer, precision).
    Returns a Surface (partial -- NaN outside `rows` -- when `rows` is given). Writes `out` (.npz) when given.
    """
    batches = as_batches(data)
    origin = model_origin(model)
    if directions is None:
        directions = random_directions(origin, 2, seed, norm=norm, one_d=one_d, orthogonal=orthogonal)
    elif len(directions) != 2:
        raise BnlabError(f"a plane needs 2 directions, got {len(directions)}")
    x = symmetric_axis(radius, steps)
    y = symmetric_axis(radius, steps)
    start_row, stop_row = (0, len(y)) if rows is None else rows
    if not 0 <= start_row < stop_row <= len(y):
        raise BnlabError(f"rows must satisfy 0 <= start < stop <= {len(y)}, got {rows}")
    precision = eval_kwargs.get("precision", "fp32")
    key = config_hash({"data": data_hash(batches), "origin": params_hash(origin),
                       "directions": [params_hash(d) for d in directions], "bn_mode": bn_mode,
                       "x": x.tolist(), "y": y.tolist(), "precision": precision, "rows": [start_row, stop_row],
                       "recal": data_hash(as_batches(eval_kwargs["recal_data"]))
                       if eval_kwargs.get("recal_data") is not None else None})
    surface = Surface(kind="random_plane", x=x, y=y, loss=np.full((len(y), len(x)), np.nan),
                      acc=np.full((len(y), len(x)), np.nan), origin=origin, directions=list(directions),
                      bn_mode=bn_mode, seed=seed, norm=norm, one_d=one_d, orthogonal=orthogonal,
                      data_hash=data_hash(batches), precision=precision,
                      info={**dict(info or {}), "key": key, "rows": [start_row, stop_row], "rows_done": start_row})
    if out is not None and Path(out).exists():
        saved = Surface.load(out)
        if saved.info.get("key") != key:
            raise BnlabError(f"{out} holds a different landscape (other model, data or settings); "
                             "choose another output path or delete it")
        surface = saved
        surface.origin, surface.directions = origin, list(directions)  # bit-identical (the key checked it)
    block = rows_per_block or max(1, min(stop_row - start_row, -(-512 // len(x))))
    row = surface.rows_done
    n_total = (stop_row - start_row) * len(x)
    while row < stop_row:
        end = min(stop_row, row + block)
        pts = plane_points(x, y[row:end])  # ((end-row) * nx, 2)
        done_before = (row - start_row) * len(x)
        cb = None if progress is None else (lambda d, _t, base=done_before: progress(base + d, n_total))
        res = evaluate_points(model, loss_fn, batches, origin, directions, pts, bn_mode, progress=cb, **eval_kwargs)
        surface.loss[row:end] = res["loss"].reshape(end - row, len(x))
        surface.acc[row:end] = res["acc"].reshape(end - row, len(x))
        row = end
        surface.info["rows_done"] = row
        if out is not None:
            surface.save(out)
    surface.info["rows_done"] = stop_row if rows is not None else len(y)
    if precision == "bf16" and surface.bf16_error is None:
        cj = [start_row, stop_row - 1, (start_row + stop_row - 1) // 2]
        ci = [0, len(x) - 1, len(x) // 2]
        pts = np.array([[x[i], y[j]] for j in cj for i in ci])
        vals = np.array([surface.loss[j, i] for j in cj for i in ci])
        surface.bf16_error = _bf16_error(model, loss_fn, batches, origin, list(directions), pts, vals, bn_mode,
                                         dict(eval_kwargs))
        if out is not None:
            surface.save(out)
    return surface


def merge_rows(parts: Sequence[Surface]) -> Surface:
    """One Surface from partial ones that together cover every row (each evaluated with `rows=(a, b)`)."""
    if not parts:
        raise BnlabError("merge_rows needs at least one part")
    first = parts[0]
    loss, acc = np.full_like(first.loss, np.nan), np.full_like(first.acc, np.nan)
    covered = np.zeros(len(first.y), dtype=bool)
    for p in parts:
        if not (np.array_equal(p.x, first.x) and np.array_equal(p.y, first.y)) or p.bn_mode != first.bn_mode:
            raise BnlabError("surfaces to merge have different grids or BN modes")
        a, b = p.info.get("rows", [0, len(p.y)])
        loss[a:b], acc[a:b] = p.loss[a:b], p.acc[a:b]
        covered[a:b] = True
    if not covered.all():
        raise BnlabError(f"merged rows miss row {int(np.flatnonzero(~covered)[0])}")
    info = {k: v for k, v in first.info.items() if k not in ("rows", "rows_done", "key")}
    return Surface(kind=first.kind, x=first.x, y=first.y, loss=loss, acc=acc, origin=first.origin,
                   directions=first.directions, bn_mode=first.bn_mode, seed=first.seed, norm=first.norm,
                   one_d=first.one_d, orthogonal=first.orthogonal, data_hash=first.data_hash,
                   precision=first.precision, bf16_error=first.bf16_error, info=info)


def random_line(model: nn.Module, loss_fn: LossFn, data: Batch | Sequence[Batch], *, radius: float = 1.0,
                steps: int = 51, seed: int = 0, norm: str = "filter", one_d: str = "zero", bn_mode: str = "train",
                direction: ParamDict | None = None, info: Mapping[str, Any] | None = None,
                **eval_kwargs: Any) -> Curve:
    """The loss along one random normalised direction, ``t`` in ``[-radius, radius]`` (0 included)."""
    batches = as_batches(data)
    origin = model_origin(model)
    d = direction if direction is not None else random_directions(origin, 1, seed, norm=norm, one_d=one_d)[0]
    t = symmetric_axis(radius, steps)
    res = evaluate_points(model, loss_fn, batches, origin, [d], t[:, None], bn_mode, **eval_kwargs)
    return Curve(kind="random_line", t=t, loss=res["loss"], acc=res["acc"], origin=origin, directions=[d],
                 bn_mode=bn_mode, seed=seed, norm=norm, one_d=one_d, data_hash=data_hash(batches),
                 precision=eval_kwargs.get("precision", "fp32"), info=dict(info or {}))


def pca_plane(model: nn.Module, loss_fn: LossFn, data: Batch | Sequence[Batch],
              trajectory: Sequence[Mapping[str, torch.Tensor]], *, steps: int = 21, margin: float = 1.25,
              bn_mode: str = "train", info: Mapping[str, Any] | None = None, **eval_kwargs: Any) -> Surface:
    """The loss on the plane of the top-2 PCA directions of `trajectory` (parameter dicts, last = the model's
    current point), with the trajectory projected on it (``Surface.path``, (T, 2))."""
    origin = model_origin(model)
    traj = [{n: t[n].detach().to(origin[n].device) for n in origin} for t in trajectory]
    pca = pca_directions(traj, origin=origin, count=2)
    span = max(float(pca.path.abs().max()) * margin, 1e-8)
    surface = random_plane(model, loss_fn, data, radius=span, steps=steps, seed=None, norm="none", one_d="include",
                           bn_mode=bn_mode, directions=pca.directions,
                           info={**dict(info or {}), "explained": pca.explained}, **eval_kwargs)
    surface.kind = "pca_plane"
    surface.path = pca.path.numpy().astype(np.float64)
    return surface
