"""The shared training runs of C03–C06 (Ioffe's MLP, Santurkar's VGG and deep linear net) as trials, and the
summaries the claims compute from them.

`run_trial(claim, family, scale, norm, seed)` is the `Trial` of one run; its function is
`bnlab.trials.probed_run.probed_run` (the run with Santurkar's and Ioffe's probes attached). Claims that
plan the same (family, norm, seed) get byte-identical parameters, so the audit runs each once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bnlab.errors import BnlabError
from bnlab.experiments.base import seeds_for
from bnlab.sweeps.trial import Trial

# ------------------------------------------------------------------------------------------------ summaries


def finite_mean(values: Sequence[float | None]) -> float:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    return sum(xs) / len(xs) if xs else math.nan


def percentile_drift(series: dict[str, Any]) -> float:
    """Ioffe Fig. 1's shift, as one number: the range over probe times (max − min) of each watched unit's
    15/50/85th percentile, averaged over units and percentiles (in the pre-activation's own units)."""
    qs = series["unit_percentiles"]  # (T, U, P)
    if len(qs) < 2:
        return math.nan
    n_units, n_p = len(qs[0]), len(qs[0][0])
    ranges = [max(q[u][p] for q in qs) - min(q[u][p] for q in qs) for u in range(n_units) for p in range(n_p)]
    return sum(ranges) / len(ranges)


def relative_percentile_drift(series: dict[str, Any]) -> float:
    """Ioffe Fig. 1's shift, scale-free: each watched unit's percentile ranges over probe times (as
    `percentile_drift`) divided by the unit's own spread, the mean over probe times of its highest minus lowest
    watched percentile (85th − 15th), then averaged over units and percentiles. A drift of 1 moves a percentile by
    the unit's whole 15–85 spread; a net whose pre-activations are simply larger drifts no more for it. NaN
    without two probe times or with a unit of zero spread."""
    qs = series["unit_percentiles"]  # (T, U, P)
    if len(qs) < 2:
        return math.nan
    n_units, n_p = len(qs[0]), len(qs[0][0])
    ratios = []
    for u in range(n_units):
        spread = sum(max(q[u]) - min(q[u]) for q in qs) / len(qs)  # mean 85th − 15th of unit u
        if not spread > 0:
            return math.nan
        ratios += [(max(q[u][p] for q in qs) - min(q[u][p] for q in qs)) / spread for p in range(n_p)]
    return sum(ratios) / len(ratios)


def moment_drift(series: dict[str, Any]) -> float:
    """Santurkar Fig. 2's moving distributions, as one number: the mean over watched units and consecutive probe
    times of |Δ mean| + |Δ std| of the unit's pre-activation."""
    means, stds = series["unit_mean"], series["unit_std"]  # (T, U)
    if len(means) < 2:
        return math.nan
    steps = [abs(means[t + 1][u] - means[t][u]) + abs(stds[t + 1][u] - stds[t][u])
             for t in range(len(means) - 1) for u in range(len(means[0]))]
    return sum(steps) / len(steps)


def ics_layer_means(series: dict[str, Any], key: str = "cosine") -> dict[str, float]:
    """Per weight layer: the mean over probe times of `key` (cosine | relative_distance | distance) of the ICS
    series (Santurkar Def. 2.1), the first layer left out (nothing precedes it: G′ = G)."""
    rows = series[key]  # (T, layers)
    return {layer: finite_mean([row[j] for row in rows]) for j, layer in enumerate(series["layers"]) if j > 0}


def ics_means(series: dict[str, Any]) -> dict[str, float]:
    """Mean over probe times and layers (the first layer left out: nothing precedes it, G′ = G) of the cosine,
    relative and raw distance."""
    out = {}
    for key in ("cosine", "relative_distance", "distance"):
        rows = series[key]  # (T, layers)
        out[key] = finite_mean([v for row in rows for v in row[1:]])
    return out


def geometric_etas(low: float, high: float, k: int) -> list[float]:
    """k step-size factors spaced geometrically from low to high (inclusive)."""
    if k == 1:
        return [low]
    return [float(low * (high / low) ** (i / (k - 1))) for i in range(k)]


# ------------------------------------------------------------------------------------------------ shared runs
# The runs C03–C06 plan, per scale. Claims that plan the same (family, norm, seed) get byte-identical trial
# parameters, so the audit runs each once.

FAMILIES: tuple[str, ...] = ("mlp", "vgg", "dln")

# VGG: Santurkar's VGG on CIFAR-10 (SGD lr 0.1, batch 128, 15k steps, no augmentation) at paper scale; the narrow
# VGG on sklearn digits on a CPU. Step sizes η ∈ [1/2, 4] × lr.
# DLN: Santurkar's 25-layer deep linear net, full-batch gradient descent on y = A x; η ∈ [1/100, 30] × lr.
# MLP: Ioffe's 3 × 100 sigmoid net on MNIST (batch 60), the last hidden layer's sigmoid input watched.
# Santurkar's deep linear net at every scale (App. A): 25 linear 10x10 layers, Gaussian inputs and a random
# Gaussian target map (dln_regression), the summed squared loss Σ_i ‖f(x_i) − A x_i‖² over a full batch of 1000
# examples, full-batch GD at lr 1e-6. The scales differ only in steps (and the smoke net's depth), never in the lr
# regime: at lr 1e-6 on this loss scale the no-BN net's loss falls from 9.1e4 to 1.4e4 in 2000 steps (seed 0).
_DLN: dict[str, Any] = {"model": "dln", "dataset": "dln_regression", "loss": "sum_squared", "lr": 1e-6,
                        "dataset_kwargs": {"train_size": 1000, "test_size": 500}, "batch_size": 1000}

_RUNS: dict[str, dict[str, dict[str, Any]]] = {
    "vgg": {
        "smoke": {"config": {"model": "vgg", "dataset": "digits", "model_kwargs": {"config": "narrow", "width": 0.25},
                             "dataset_kwargs": {"train_size": 128, "test_size": 64}, "lr": 0.1, "steps": 8,
                             "batch_size": 32, "eval_every": 4},
                  "probe_every": 4, "k": 3},
        "default": {"config": {"model": "vgg", "dataset": "digits", "model_kwargs": {"config": "narrow"},
                               "lr": 0.1, "steps": 300, "batch_size": 64, "eval_every": 25},
                    "probe_every": 50, "k": 8},
        "paper": {"config": {"model": "vgg", "dataset": "cifar10", "model_kwargs": {"config": "vgg11"},
                             "lr": 0.1, "steps": 15000, "batch_size": 128, "eval_every": 500, "device": "auto"},
                  "probe_every": 100, "k": 8},
    },
    "dln": {
        "smoke": {"config": {**_DLN, "model_kwargs": {"depth": 8}, "steps": 40, "eval_every": 20},
                  "probe_every": 20, "k": 4},
        "default": {"config": {**_DLN, "steps": 2000, "eval_every": 100}, "probe_every": 100, "k": 8},
        "paper": {"config": {**_DLN, "steps": 10000, "eval_every": 500, "device": "auto"},
                  "probe_every": 100, "k": 8},
    },
    "mlp": {
        "smoke": {"config": {"model": "mlp", "dataset": "digits", "model_kwargs": {"hidden": [32, 32, 32]},
                             "dataset_kwargs": {"train_size": 256, "test_size": 128}, "lr": 0.5, "steps": 20,
                             "batch_size": 60, "eval_every": 5},
                  "probe_every": 5, "activation_inputs": 64},
        "default": {"config": {"model": "mlp", "dataset": "mnist5k", "lr": 0.5, "steps": 2000, "batch_size": 60,
                               "eval_every": 100},
                    "probe_every": 50, "activation_inputs": 500},
        "paper": {"config": {"model": "mlp", "dataset": "mnist5k", "lr": 0.5, "steps": 50000, "batch_size": 60,
                             "eval_every": 1000, "device": "auto"},
                  "probe_every": 500, "activation_inputs": 1000},
    },
}
ETA_RANGES: dict[str, tuple[float, float]] = {"vgg": (0.5, 4.0), "dln": (0.01, 30.0)}
TRIALS = "bnlab.trials.probed_run"  # the trial function this plan names
# the watched module: the trial names the last nonlinearity on the model it trains, so planning builds no model
LAST_ACTIVATION = "last"

_COSTS = {"mlp": 2.0, "vgg": 4.0, "dln": 1.5}
# which default seed count a family's runs get (experiments.base.DEFAULT_SEEDS): the VGG runs are the costly ones
FAMILY_COST: dict[str, str] = {"mlp": "cheap", "vgg": "costly", "dln": "cheap"}


def family_seeds(family: str, scale: str, seeds: int | None, first_seed: int = 0) -> tuple[int, ...]:
    """The seeds of `family`'s runs: `seeds` when given, else the scale's default for the family's cost."""
    return seeds_for(scale, seeds, first_seed, FAMILY_COST[family])


def run_settings(family: str, scale: str) -> dict[str, Any]:
    """The protocol of `family` at `scale` (plain data, for the claims' configs)."""
    if family not in _RUNS:
        raise BnlabError(f"unknown run family {family!r} (choose from {', '.join(FAMILIES)})")
    if scale not in _RUNS[family]:
        raise BnlabError(f"unknown scale {scale!r} (choose from {', '.join(_RUNS[family])})")
    return _RUNS[family][scale]


def run_trial(claim: str, family: str, scale: str, norm: str, seed: int) -> Any:
    """The shared `Trial` of one (family, norm, seed) run at `scale`, named for `claim`."""
    settings = run_settings(family, scale)
    config = {**settings["config"], "norm": norm, "seed": int(seed)}
    params: dict[str, Any] = {"config": config, "probe_every": settings["probe_every"]}
    if family == "mlp":
        params.update(probes=["activations"], activation_module=LAST_ACTIVATION,
                      activation_units=[0, 1, 2, 3, 4], activation_inputs=settings["activation_inputs"])
    else:
        low, high = ETA_RANGES[family]
        probes = ["along_gradient", "ics", "activations"]
        params.update(probes=probes, eta_factors=geometric_etas(low, high, settings["k"]),
                      activation_module=LAST_ACTIVATION, activation_units=[0, 1, 2, 3],
                      activation_inputs=0)
    return Trial(claim=claim, name=f"{family}/{norm}/seed={seed}",
                 fn=f"{TRIALS}:probed_run", params=params, cost=_COSTS[family])


def seed_band(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float | None]], label: str) -> dict[str, Any]:
    """A figure series: the mean over seeds of y(x) with the min–max over seeds as its band (seeds cut to the
    shortest curve, e.g. when one diverged)."""
    n = min(len(x) for x in xs) if xs else 0
    x = list(xs[0][:n]) if n else []
    cols = [[y[i] for y in ys if y[i] is not None and math.isfinite(y[i])] for i in range(n)]
    return {"label": label, "x": x,
            "y": [sum(c) / len(c) if c else None for c in cols],
            "lo": [min(c) if c else None for c in cols],
            "hi": [max(c) if c else None for c in cols]}
