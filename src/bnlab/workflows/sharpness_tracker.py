"""A sharpness tracker for your own training loop: λ_max, batch sharpness and every eigenvalue above 2/η, as JSONL.

    tracker = SharpnessTracker("runs/mine", loss_fn, lr=0.1, every=10, bn_modes=("train", "eval"))
    for step, (x, y) in enumerate(loader):
        ...  # your SGD step
        tracker.step(model, (x, y))   # measures every `every` calls, leaves the model exactly as it was
    tracker.close()                   # writes runs/mine/sharpness.png

Per measured step and BN mode, one JSONL record (``OUT/sharpness.jsonl``, `bnlab.tracking.jsonl`):
``{"kind": "sharpness", "step", "bn_mode", "lambda_max", "batch_sharpness", "above_threshold": [...],
"threshold", "bn_batch_size", "products"}`` (plus ``"full_batch_lambda_max", "full_batch_bn_batch_size"`` when
the tracker is given ``full_batch=(x, y)``, and ``"spherical"`` for a BN net):

* ``batch_sharpness``: g_Bᵀ H_B g_B / ‖g_B‖² on the batch you pass (your SGD batch), so its mean over steps is the
  batch sharpness of Andreyev & Beneventano (2024), the quantity that settles at 2/η under SGD;
* ``above_threshold``: every Hessian eigenvalue of that batch's loss above ``threshold`` (2/η by default), by the
  warm-started, growing LOBPCG of `bnlab.probes.hessian.tracked_spectrum` (each call starts from the previous
  call's block in the same mode, extrapolated one probe ahead where the recent calls drifted steadily: rarely under
  SGD, whose batch Hessians jump); ``lambda_max``: the largest of them, or Lanczos's top eigenvalue when none is;
* ``bn_batch_size``: the examples behind each BN statistic (the batch's size in mode train, None in mode eval or
  without BN);
* ``spherical`` (when the tracker's ``spherical`` flag is on: by default, when the model has BN layers): one entry
  per scale-invariant weight W (one whose output feeds a BN layer directly, found by
  `bnlab.probes.hessian.scale.scale_invariant_weights` on the batch), ``{"param", "top_eigenvalue",
  "weight_norm_sq", "invariant", "products", "converged", "bn_mode"}``: λ_max of the Hessian block H_WW of that
  batch's loss, ‖W‖² and the spherical sharpness λ_max(H_WW)·‖W‖² (Lyu, Li & Arora 2022), which rescaling W does
  not change (exactly in BN mode train; see `bnlab.probes.hessian.scale`). Under SGD ‖W‖ grows, so the raw λ_max
  of a BN net can fall while nothing about the function changed; this number does not. An empty list when the
  model has no such weight; the field is absent when the flag is off;
* ``full_batch_lambda_max`` (only with ``full_batch=(x, y)``: e.g. the whole training set or a fixed evaluation
  subset): λ_max of the loss on that data, in the record's BN mode, by Lanczos to the tracker's ``tol`` (not
  warm-started); ``full_batch_bn_batch_size``: the examples behind its BN statistics (len(x) in mode train, None in
  mode eval or without BN). Under SGD the batch sharpness settles at 2/η while this full-batch λ_max stays below
  it (Andreyev & Beneventano 2024); in BN mode train it is also a different function (statistics over len(x)
  examples, not over the SGD batch);
* ``products``: the Hessian-vector products the record cost, all of the above included.

`close()` draws, per BN mode, λ_max of the batch, the full-batch λ_max (when recorded), the running mean of the
batch sharpness and 2/η in one panel, and, when any record holds spherical entries, the spherical sharpness per
weight in a second panel (the 6 weights with the largest last value when there are more; a log axis when they
span more than a factor 10); `sharpness_figure` builds that figure's spec from the records.

One run per folder: a folder whose ``sharpness.jsonl`` already holds records is refused (appending would draw two
runs as one line). No state is left behind: the measurement runs inside `bnlab.state.preserved_state`
(parameters, buffers, ``.grad``, ``requires_grad``, modes, BN settings, hooks and the global RNG streams are
restored).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.hessian.batch_sharpness import rayleigh_along_gradient
from bnlab.probes.hessian.lanczos import lanczos_eigenpairs
from bnlab.probes.hessian.operator import LossFn, hessian_operator
from bnlab.probes.hessian.scale import invariant_sharpness, scale_invariant_weights
from bnlab.probes.hessian.tracked_spectrum import AboveThreshold, eigenvalues_above
from bnlab.state import BN_MODES, batchnorm_layers, preserved_state
from bnlab.tracking.jsonl import JsonlTracker, read_jsonl


class SharpnessTracker:
    """See the module doc. `lr` sets the threshold 2/η unless `threshold` is given. `spherical`: record the
    spherical sharpness per scale-invariant weight (None: when the model has BN layers). `full_batch`: ``(x, y)``
    on which each record also measures the full-batch λ_max (kept by reference, not copied)."""

    def __init__(self, out: str | Path, loss_fn: LossFn, *, lr: float, every: int = 1,
                 bn_modes: Sequence[str] = ("train",), threshold: float | None = None, tol: float = 1e-3,
                 max_k: int = 32, seed: int = 0, fmt: str = "png", spherical: bool | None = None,
                 full_batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise BnlabError(f"lr must be a finite number > 0, got {lr!r}")
        if every < 1:
            raise BnlabError(f"every must be >= 1, got {every}")
        if not bn_modes or any(m not in BN_MODES for m in bn_modes):
            raise BnlabError(f"bn_modes must be a non-empty subset of {', '.join(BN_MODES)}, got {list(bn_modes)}")
        if spherical not in (None, True, False):
            raise BnlabError(f"spherical must be True, False or None (on when the model has BN), got {spherical!r}")
        if fmt not in ("png", "svg"):
            raise BnlabError(f"format must be png or svg, got {fmt!r}")
        self.full_batch = _checked_full_batch(full_batch)
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise BnlabError(f"output path {self.out} exists and is not a folder")
        if read_jsonl(self.out / "sharpness.jsonl"):  # appending would draw two runs as one line in the figure
            raise BnlabError(f"{self.out / 'sharpness.jsonl'} already holds a run's records; give the tracker a new "
                             "folder (or delete that file)")
        self.loss_fn, self.lr, self.every, self.bn_modes = loss_fn, float(lr), every, tuple(bn_modes)
        self.threshold = float(threshold) if threshold is not None else 2.0 / self.lr
        self._default_threshold = threshold is None
        self.tol, self.max_k, self.seed, self.fmt, self.spherical = tol, max_k, seed, fmt, spherical
        self.calls = 0
        self._previous: dict[str, AboveThreshold] = {}
        self._log = JsonlTracker(self.out / "sharpness.jsonl")

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> list[dict[str, Any]] | None:
        """Measure at this call if it is due (calls 0, every, 2·every, …): the records written, else None."""
        step = self.calls
        self.calls += 1
        if step % self.every:
            return None
        records = []
        with preserved_state(model, params=False):
            has_bn = bool(batchnorm_layers(model))
            spherical = has_bn if self.spherical is None else self.spherical
            # which weights feed a BN layer: one forward pass, per call (the user's model may change)
            weights = scale_invariant_weights(model, batch[0]) if spherical else None
            for mode in self.bn_modes if has_bn else self.bn_modes[:1]:
                rec = self._measure(model, batch, mode, step)
                if self.full_batch is not None:
                    top, bn_size, products = self._full_batch_lambda_max(model, mode, step)
                    rec.update(full_batch_lambda_max=top, full_batch_bn_batch_size=bn_size)
                    rec["products"] += products
                if weights is not None:
                    rec["spherical"] = invariant_sharpness(model, self.loss_fn, batch, weights=weights,
                                                           bn_mode=mode, tol=self.tol, seed=self.seed + step)
                    rec["products"] += sum(e["products"] for e in rec["spherical"])
                records.append(rec)
        for rec in records:
            self._log.log("sharpness", step, rec)
        return records

    def _measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], mode: str,
                 step: int) -> dict[str, Any]:
        with hessian_operator(model, self.loss_fn, batch, bn_mode=mode) as op:
            above = eigenvalues_above(op, self.threshold, start=self._previous.get(mode), tol=self.tol,
                                      max_k=self.max_k, seed=self.seed + step)
            self._previous[mode] = above
            products = above.products
            if above.eigenvalues:
                top = above.eigenvalues[0]
            else:  # nothing above the threshold: λ_max by Lanczos, to the same tolerance
                res = lanczos_eigenpairs(op, k=1, tol=self.tol, seed=self.seed + step)
                top, products = res.eigenvalues[0], products + res.products
            bn_batch_size = op.bn_batch_size
        quotient, used = rayleigh_along_gradient(model, self.loss_fn, batch, bn_mode=mode)
        return {"bn_mode": mode, "lambda_max": top, "batch_sharpness": quotient if math.isfinite(quotient) else None,
                "above_threshold": above.eigenvalues, "threshold": self.threshold, "converged": above.converged,
                "bn_batch_size": bn_batch_size, "products": products + used}

    def _full_batch_lambda_max(self, model: nn.Module, mode: str, step: int) -> tuple[float, Any, int]:
        """λ_max of the loss on `full_batch` in BN mode `mode` (Lanczos to `tol`), its operator's BN batch size and
        the products it cost."""
        with hessian_operator(model, self.loss_fn, self.full_batch, bn_mode=mode) as op:
            res = lanczos_eigenpairs(op, k=1, tol=self.tol, seed=self.seed + step)
            return res.eigenvalues[0], op.bn_batch_size, res.products

    def close(self) -> Path:
        """Close the JSONL file and draw the records (`sharpness_figure`); the figure's path."""
        from bnlab.report.figures import save_figure

        self._log.close()
        records = [r for r in read_jsonl(self.out / "sharpness.jsonl") if r.get("kind") == "sharpness"]
        figure = sharpness_figure(records, self.bn_modes, self.threshold,
                                  limit="2/η" if self._default_threshold else "threshold")
        path = self.out / f"sharpness.{self.fmt}"
        save_figure(figure, path)
        return path


def _checked_full_batch(full_batch: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`full_batch` as a pair of tensors with ≥ 2 examples (BN mode train needs two for its statistics), or None."""
    if full_batch is None:
        return None
    if not (isinstance(full_batch, (tuple, list)) and len(full_batch) == 2
            and all(isinstance(t, torch.Tensor) for t in full_batch)):
        got = type(full_batch).__name__
        if isinstance(full_batch, (tuple, list)):  # name what it holds: "tuple (Tensor, list)"
            got += f" ({', '.join(type(t).__name__ for t in full_batch[:4])}{', ...' if len(full_batch) > 4 else ''})"
        raise BnlabError(f"full_batch must be a pair (x, y) of tensors, got {got}")
    x, y = full_batch
    if x.dim() == 0 or y.dim() == 0:
        raise BnlabError("full_batch's x and y need a first dimension (the examples), got a 0-d tensor")
    if x.shape[0] != y.shape[0]:
        raise BnlabError(f"full_batch's x and y differ in their first dimension ({x.shape[0]} vs {y.shape[0]})")
    if x.shape[0] < 2:
        raise BnlabError(f"full_batch needs at least 2 examples (BN statistics in mode train), got {x.shape[0]}")
    return x, y


MAX_SPHERICAL_LINES = 6  # weights drawn per spherical panel: more lines than this make the legend unreadable


def sharpness_figure(records: Sequence[dict[str, Any]], bn_modes: Sequence[str], threshold: float, *,
                     limit: str = "2/η") -> dict[str, Any]:
    """The tracker's figure spec (a "lines" figure of `bnlab.report.figures`) from its JSONL records: per BN mode
    with records, a sharpness panel and, when any of its records holds spherical entries, a spherical panel.
    `limit` names the threshold line ("2/η", or "threshold" when the user set it)."""
    panels = []
    for mode in bn_modes:
        rows = [r for r in records if r["bn_mode"] == mode]
        if rows:
            panels.append(_sharpness_panel(mode, rows, threshold, limit))
        if any(r.get("spherical") for r in rows):
            panels.append(_spherical_panel(mode, rows))
    return {"id": "sharpness", "kind": "lines", "title": "Sharpness through training and 2/η", "caption": "",
            "data": {"panels": panels}}


def _sharpness_panel(mode: str, rows: Sequence[dict[str, Any]], threshold: float, limit: str) -> dict[str, Any]:
    """λ_max of each batch, the full-batch λ_max (when recorded), the batch sharpness's running mean, the threshold."""
    steps = [r["step"] for r in rows]
    running, total, n = [], 0.0, 0
    for q in (r["batch_sharpness"] for r in rows):  # E_B over the batches seen so far: the batch sharpness estimate
        if q is not None:
            total, n = total + q, n + 1
        running.append(total / n if n else None)
    series = [{"label": "λ_max (this batch)", "x": steps, "y": [r["lambda_max"] for r in rows]}]
    if any(r.get("full_batch_lambda_max") is not None for r in rows):
        series.append({"label": "λ_max, full batch", "x": steps, "y": [r.get("full_batch_lambda_max") for r in rows]})
    series += [{"label": "batch sharpness (running mean)", "x": steps, "y": running},
               {"label": f"{limit} = {threshold:.3g}", "x": [steps[0], steps[-1]], "y": [threshold] * 2}]
    return {"title": f"BN mode {mode}", "xlabel": "step", "ylabel": "sharpness", "series": series}


def _spherical_panel(mode: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """λ_max(H_WW)·‖W‖² per scale-invariant weight over the steps that recorded it; the `MAX_SPHERICAL_LINES`
    weights with the largest last value when there are more (the user's model may change which weights there are)."""
    curves: dict[str, tuple[list[int], list[float | None]]] = {}
    for r in rows:
        for entry in r.get("spherical") or []:
            x, y = curves.setdefault(entry["param"], ([], []))
            x.append(r["step"])
            y.append(entry["invariant"])
    last = {name: next((v for v in reversed(y) if v is not None), -math.inf) for name, (_, y) in curves.items()}
    drawn = sorted(curves, key=lambda name: -last[name])[:MAX_SPHERICAL_LINES]
    title = f"BN mode {mode}: spherical sharpness\nλ_max(H_WW)·‖W‖²"
    if len(curves) > len(drawn):
        title += f", the {len(drawn)} largest of {len(curves)} weights"
    panel = {"title": title, "xlabel": "step", "ylabel": "spherical sharpness",
             "series": [{"label": name, "x": curves[name][0], "y": curves[name][1]} for name in drawn]}
    values = [v for name in drawn for v in curves[name][1] if v is not None and math.isfinite(v)]
    if values and min(values) > 0 and max(values) > 10 * min(values):  # weights orders of magnitude apart
        panel["yscale"] = "log"
    return panel
