"""Train one net with the Hessian sharpness probe every few steps, then its end point and spectral densities
(the curvature runs of C06 and C14, `bnlab.experiments.curvature`).

At each probe time, on a fixed prefix of the training set: λ_max (Lanczos) and tr H ± SE (Hutch++) in each BN mode
(train: batch statistics, eval: running statistics; a no-BN net is one function and is measured once), and the
normalised sharpness max_l λ_max(H_{W_l W_l})·‖W_l‖² over the weights before the classifier, and (``sgd_batches``
> 0) the batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] over that many fixed mini-batches of the run's SGD batch size
(Andreyev & Beneventano 2024: what settles at 2/η under SGD). At the end: the spectral density by stochastic
Lanczos quadrature per mode. A trial function: plain data in, plain data out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from bnlab.config import from_mapping
from bnlab.models import layers_in_order
from bnlab.probes.hessian import density
from bnlab.probes.hessian.batch_sharpness import sample_batches
from bnlab.probes.hessian.scale import scale_invariant_weights
from bnlab.probes.hessian.sharpness import SharpnessProbe
from bnlab.results import finite_or_none
from bnlab.state import BN_MODES, batchnorm_layers
from bnlab.train import TrainConfig, train
from bnlab.train.loop import build_for_config, default_loss, load_for_config

MODES = BN_MODES  # the BN modes every curvature / landscape number is measured in


def sharpness_trajectory(*, config: Mapping[str, Any], hessian_samples: int, probe_every: int, tol: float,
                  max_steps: int, trace_samples: int, sketch: int, density_runs: int, density_steps: int,
                  grid_points: int, sgd_batches: int = 0) -> dict[str, Any]:
    """Trial: train one net with the sharpness probe; measure the end point and its spectral densities."""
    cfg = from_mapping(TrainConfig, {**config, "progress": False, "trackers": ()})
    data = load_for_config(cfg)
    torch.manual_seed(cfg.seed)
    net = build_for_config(cfg, data)
    batch = (data.train_x[:hessian_samples], data.train_y[:hessian_samples])
    has_bn = bool(batchnorm_layers(net))
    modes = MODES if has_bn else MODES[:1]
    # the conv/linear weights before the classifier: scale-invariant with BN, rescaling-symmetric without
    weights = scale_invariant_weights(net, batch[0]) if has_bn else \
        [f"{n}.weight" for n, _ in layers_in_order(net)[:-1]]
    # fixed mini-batches of the SGD batch size, drawn from the training set with their own seeded generator
    sgd = sample_batches(data.train_x, data.train_y, min(cfg.batch_size, len(data.train_x)), sgd_batches,
                         seed=cfg.seed) if sgd_batches > 0 else None
    probe = SharpnessProbe(every=probe_every, bn_modes=modes, batch=batch, tol=tol, max_steps=max_steps,
                           trace_samples=trace_samples, sketch=sketch, invariant=("train",),
                           invariant_weights=weights, seed=cfg.seed, sgd_batches=sgd)
    loss_fn = default_loss(cfg, data)
    result = train(cfg, probes=[probe], model=net, dataset=data, loss_fn=loss_fn)
    records = list(result.probes.get(probe.name, []))
    diverged = result.diverged_at_step
    final_step = int(result.final.get("steps_done", cfg.steps))
    net = result.model
    device = next(net.parameters()).device
    batch = (batch[0].to(device), batch[1].to(device))  # stays on the run's device (a GPU at paper scale)
    finite = all(torch.isfinite(p).all() for p in net.parameters())
    densities: dict[str, Any] = {}
    if diverged is None and finite:
        end = probe.measure(net, loss_fn, batch, step=final_step)
        records.append({**end, "step": final_step})
        for mode in modes:
            d = density(net, loss_fn, batch, runs=density_runs, steps=density_steps, grid_points=grid_points,
                        bn_mode=mode, seed=cfg.seed)
            densities[mode] = {"grid": d.grid, "density": d.density, "sigma": d.sigma, "products": d.products,
                               "nodes": d.nodes, "weights": d.weights}
    series: dict[str, dict[str, list]] = {m: {"top": [], "trace": [], "trace_se": [], "products": [],
                                               "batch_sharpness": [], "batch_sharpness_se": []} for m in modes}
    normalised: list[float | None] = []
    weight_norm_sq: list[float | None] = []
    for rec in records:
        for m in modes:
            e = rec[m]
            series[m]["top"].append(finite_or_none(e["top_eigenvalue"]))
            series[m]["trace"].append(finite_or_none(e.get("trace", math.nan)))
            series[m]["trace_se"].append(finite_or_none(e.get("trace_se", math.nan)))
            series[m]["products"].append(int(e["products"]))
            series[m]["batch_sharpness"].append(finite_or_none(e.get("batch_sharpness", math.nan)))
            series[m]["batch_sharpness_se"].append(finite_or_none(e.get("batch_sharpness_se", math.nan)))
        inv = rec["train"].get("invariant", [])
        normalised.append(finite_or_none(max((w["invariant"] for w in inv), default=math.nan)))
        weight_norm_sq.append(finite_or_none(sum(w["weight_norm_sq"] for w in inv)) if inv else None)
    return {
        "norm": cfg.norm, "has_bn": has_bn, "seed": cfg.seed, "modes": list(modes), "weights": weights,
        "diverged_at_step": diverged, "final_test_acc": finite_or_none(result.final.get("test_acc", math.nan)),
        "steps": [int(r["step"]) for r in records], "series": series, "normalised": normalised,
        "weight_norm_sq": weight_norm_sq, "density": densities, "hessian_samples": hessian_samples,
        # the examples behind each BN statistic: per mode, for λ_max (the fixed batch) and for batch sharpness
        "bn_batch_size": {m: {"top": int(batch[0].shape[0]) if has_bn and m == "train" else None,
                              "batch_sharpness": (int(sgd[0][0].shape[0]) if sgd and has_bn and m == "train" else None)}
                          for m in modes},
        "sgd_batch_size": int(sgd[0][0].shape[0]) if sgd else None, "sgd_batches": sgd_batches,
    }  # no timings: trial results are compared bit for bit across executors (the record keeps duration_s)
