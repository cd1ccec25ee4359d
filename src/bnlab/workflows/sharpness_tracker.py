"""A sharpness tracker for your own training loop: λ_max, batch sharpness and every eigenvalue above 2/η, as JSONL.

    tracker = SharpnessTracker("runs/mine", loss_fn, lr=0.1, every=10, bn_modes=("train", "eval"))
    for step, (x, y) in enumerate(loader):
        ...  # your SGD step
        tracker.step(model, (x, y))   # measures every `every` calls, leaves the model exactly as it was
    tracker.close()                   # writes runs/mine/sharpness.png

Per measured step and BN mode, one JSONL record (``OUT/sharpness.jsonl``, `bnlab.tracking.jsonl`):
``{"kind": "sharpness", "step", "bn_mode", "lambda_max", "batch_sharpness", "above_threshold": [...],
"threshold", "bn_batch_size", "products"}``:

* ``batch_sharpness``: g_Bᵀ H_B g_B / ‖g_B‖² on the batch you pass (your SGD batch), so its mean over steps is the
  batch sharpness of Andreyev & Beneventano (2024), the quantity that settles at 2/η under SGD;
* ``above_threshold``: every Hessian eigenvalue of that batch's loss above ``threshold`` (2/η by default), by the
  warm-started, growing LOBPCG of `bnlab.probes.hessian.tracked_spectrum` (each call starts from the previous
  call's block in the same mode); ``lambda_max``: the largest of them, or Lanczos's top eigenvalue when none is;
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
* ``products``: the Hessian-vector products the record cost, all of the above included.

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
    spherical sharpness per scale-invariant weight (None: when the model has BN layers)."""

    def __init__(self, out: str | Path, loss_fn: LossFn, *, lr: float, every: int = 1,
                 bn_modes: Sequence[str] = ("train",), threshold: float | None = None, tol: float = 1e-3,
                 max_k: int = 32, seed: int = 0, fmt: str = "png", spherical: bool | None = None) -> None:
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

    def close(self) -> Path:
        """Close the JSONL file and draw λ_max, the batch sharpness (running mean) and 2/η per BN mode; the
        figure's path."""
        from bnlab.report.figures import save_figure

        self._log.close()
        records = [r for r in read_jsonl(self.out / "sharpness.jsonl") if r.get("kind") == "sharpness"]
        panels = []
        limit = "2/η" if self._default_threshold else "threshold"
        for mode in self.bn_modes:
            rows = [r for r in records if r["bn_mode"] == mode]
            if not rows:
                continue
            steps = [r["step"] for r in rows]
            quotients = [r["batch_sharpness"] for r in rows]
            running, total, n = [], 0.0, 0
            for q in quotients:  # E_B over the batches seen so far: the batch sharpness estimate
                if q is not None:
                    total, n = total + q, n + 1
                running.append(total / n if n else None)
            panels.append({"title": f"BN mode {mode}", "xlabel": "step", "ylabel": "sharpness", "series": [
                {"label": "λ_max (this batch)", "x": steps, "y": [r["lambda_max"] for r in rows]},
                {"label": "batch sharpness (running mean)", "x": steps, "y": running},
                {"label": f"{limit} = {self.threshold:.3g}", "x": [steps[0], steps[-1]], "y": [self.threshold] * 2}]})
        figure = {"id": "sharpness", "kind": "lines", "title": "Sharpness through training and 2/η",
                  "caption": "", "data": {"panels": panels}}
        path = self.out / f"sharpness.{self.fmt}"
        save_figure(figure, path)
        return path
