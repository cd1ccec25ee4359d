"""C01: BN's mechanics (Ioffe & Szegedy 2015, Alg. 1 and 2).

Claim: BN computes the mini-batch mean and *biased* variance, normalises with ε, applies learnable γ and β; at
inference it uses population statistics.

Method. Two kinds of trial:

* `verify` (per seed): every C01 row of `bnlab.checks` — bnlab's `BatchNorm` against torch's BatchNorm1d/2d/3d
  (outputs, input and parameter gradients, running statistics over 3 steps with momentum 0.1 and None, eval
  outputs; float64 and float32), against a literal NumPy transcription of Alg. 1, its analytic backward against
  central finite differences, its double backward against torch's, state_dicts both ways, and
  `precise_statistics` against Alg. 2 computed by hand.
* `population` (per seed): Ioffe's 3 × 100 sigmoid MLP with bnlab's BN trained briefly with SGD; then Alg. 2
  population statistics (`precise_statistics`, 20 training batches, frozen weights) are compared with a NumPy Alg. 2
  on the same BN inputs, and with the exponential running averages BN kept during training; test accuracy is
  measured in eval mode with either set of statistics (informative: how much the EMA lags).

Rule (written before the run): `supported` when every verification error of every seed is within its tolerance
(tolerances in `bnlab.checks.TOLERANCES`; Alg. 2 on the trained net: relative error ≤ 1e-6, float32 buffers);
`refuted` otherwise. The key number is the worst error ÷ tolerance over all rows and seeds (< 1 passes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from bnlab.checks import TOLERANCES, mechanics_errors
from bnlab.config import from_mapping, to_mapping
from bnlab.data import BatchIterator, load_dataset
from bnlab.errors import BnlabError
from bnlab.experiments.base import SCALES, ClaimResult, Figure, KeyNumber, Plan, seeds_for
from bnlab.layers import precise_statistics
from bnlab.models import build_model
from bnlab.state import batchnorm_layers, bn_mode
from bnlab.sweeps.trial import Trial
from bnlab.train.evaluate import evaluate

CLAIM_ID = "C01"
TITLE = "BN normalises with batch mean and biased variance, then γ, β; population statistics at inference"
_MODULE = "bnlab.experiments.c01_mechanics"
ALG2_TOL = 1e-6  # relative, float32 running buffers vs a float64 NumPy Alg. 2


@dataclass(frozen=True)
class C01Config:
    dataset: str = "synthetic"
    model: str = "mlp"
    steps: int = 200
    batch_size: int = 60
    lr: float = 0.5
    precise_batches: int = 20


CONFIGS: dict[str, C01Config] = {
    "smoke": C01Config(steps=20, precise_batches=5),
    "default": C01Config(),
    "paper": C01Config(dataset="mnist5k", steps=50000, precise_batches=100),
}


def verify(*, seed: int) -> dict:
    """Trial: the C01 rows of `bnlab.checks` with inputs drawn from `seed`."""

    return {"errors": mechanics_errors(seed)}


def population(*, dataset: str, model: str, steps: int, batch_size: int, lr: float, precise_batches: int,
               seed: int) -> dict:
    """Trial: train a BN net briefly, then Alg. 2 population statistics vs a NumPy Alg. 2 and vs the EMA."""
    torch.manual_seed(seed)
    data = load_dataset(dataset, seed=0)
    net = build_model(model, norm="bn", in_shape=data.in_shape, num_classes=data.num_classes)
    batches = BatchIterator(data.train_x, data.train_y, batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = torch.nn.functional.cross_entropy
    net.train()
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()
    layers = batchnorm_layers(net)
    ema = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in layers}
    _, acc_ema = evaluate(net, data.test_x, data.test_y, loss_fn)
    stat_batches = [next(batches) for _ in range(precise_batches)]
    # NumPy Alg. 2 on the BN inputs of the training network (batch statistics, frozen weights)
    inputs: dict[str, list[np.ndarray]] = {name: [] for name, _ in layers}
    handles = [m.register_forward_pre_hook(lambda _m, a, n=name: inputs[n].append(a[0].double().numpy()))
               for name, m in layers]
    with bn_mode(net, "train"), torch.no_grad():
        for x, _ in stat_batches:
            net(x)
    for h in handles:
        h.remove()
    precise_statistics(net, stat_batches)
    _, acc_precise = evaluate(net, data.test_x, data.test_y, loss_fn)
    alg2_err, ema_gap_mean, ema_gap_var = 0.0, 0.0, 0.0
    for name, layer in layers:
        xs = inputs[name]  # list of (m, C)
        m = xs[0].shape[0]
        mean = np.mean([x.mean(axis=0) for x in xs], axis=0)
        var = m / (m - 1) * np.mean([((x - x.mean(axis=0)) ** 2).mean(axis=0) for x in xs], axis=0)
        got_mean = layer.running_mean.double().numpy()
        got_var = layer.running_var.double().numpy()
        scale = np.maximum(np.sqrt(var), np.abs(mean))  # float32 buffers round relative to this
        alg2_err = max(alg2_err, float(np.max(np.abs(got_mean - mean) / scale)),
                       float(np.max(np.abs(got_var - var) / var)))
        ema_mean, ema_var = (t.double().numpy() for t in ema[name])
        ema_gap_mean = max(ema_gap_mean, float(np.max(np.abs(ema_mean - mean) / scale)))
        ema_gap_var = max(ema_gap_var, float(np.max(np.abs(ema_var - var) / var)))
    return {"alg2_rel_error": alg2_err, "ema_gap_mean": ema_gap_mean, "ema_gap_var": ema_gap_var,
            "test_acc_ema": acc_ema, "test_acc_precise": acc_precise, "bn_layers": len(layers)}


def config_for(scale: str) -> C01Config:
    if scale not in SCALES:
        raise BnlabError(f"unknown scale '{scale}' (choose from {', '.join(SCALES)})")
    return CONFIGS[scale]


def plan(scale: str, seeds: int) -> Plan:
    cfg = config_for(scale)
    seed_list = seeds_for(seeds)
    trials = [Trial(CLAIM_ID, f"verify/seed={s}", f"{_MODULE}:verify", {"seed": s}, cost=0.05) for s in seed_list]
    trials += [Trial(CLAIM_ID, f"population/seed={s}", f"{_MODULE}:population",
                     {"dataset": cfg.dataset, "model": cfg.model, "steps": cfg.steps, "batch_size": cfg.batch_size,
                      "lr": cfg.lr, "precise_batches": cfg.precise_batches, "seed": s}, cost=cfg.steps / 2000)
               for s in seed_list]
    return Plan(CLAIM_ID, scale, seed_list, to_mapping(cfg), tuple(trials))


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    cfg = from_mapping(C01Config, plan.config)
    seeds = plan.seeds
    worst: dict[str, float] = {}
    for s in seeds:
        for name, err in results[f"verify/seed={s}"]["errors"].items():
            worst[name] = max(worst.get(name, 0.0), err) if not math.isnan(err) else math.nan
    pops = [results[f"population/seed={s}"] for s in seeds]
    worst["population.alg2_trained_net"] = max(p["alg2_rel_error"] for p in pops)
    tolerances = {name: TOLERANCES[name][1] for name in worst if name in TOLERANCES}
    tolerances["population.alg2_trained_net"] = ALG2_TOL
    ratios = {name: (worst[name] / tol if tol > 0 else (0.0 if worst[name] == 0 else math.inf))
              for name, tol in tolerances.items()}
    failed = sorted(name for name in tolerances if not worst[name] <= tolerances[name])
    verdict = "refuted" if failed else "supported"
    worst_ratio = max(ratios.values())
    acc_ema = [p["test_acc_ema"] for p in pops]
    acc_precise = [p["test_acc_precise"] for p in pops]
    names = sorted(tolerances)
    floor = 1e-18
    summary = (f"{len(tolerances)} verifications over {len(seeds)} seeds: "
               + ("all within tolerance" if not failed else f"{len(failed)} failed ({', '.join(failed)})")
               + f"; worst error ÷ tolerance {worst_ratio:.2g}. Alg. 2 population statistics on a trained net "
               f"match a NumPy Alg. 2 to {worst['population.alg2_trained_net']:.1e} (relative); the EMA running "
               f"variance differs from them by up to {max(p['ema_gap_var'] for p in pops):.1%}.")
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict,
        rule=("supported when every verification error of every seed is ≤ its tolerance (bnlab.checks.TOLERANCES; "
              f"Alg. 2 on a trained net ≤ {ALG2_TOL:g} relative), refuted otherwise."),
        summary=summary,
        method=(f"bnlab BatchNorm vs torch BatchNorm1d/2d/3d, NumPy Alg. 1, finite differences and torch's double "
                f"backward, {len(seeds)} seeds; Alg. 2 precise statistics ({cfg.precise_batches} batches) on "
                f"{cfg.model} with BN trained {cfg.steps} SGD steps (lr {cfg.lr}, batch {cfg.batch_size}) on "
                f"{cfg.dataset}."),
        key_number=KeyNumber("worst max error ÷ tolerance", worst_ratio, None, None, "ratio (< 1 passes)"),
        metrics={"max_errors": worst, "tolerances": tolerances, "failed": failed,
                 "test_acc_ema": acc_ema, "test_acc_precise": acc_precise,
                 "ema_gap_mean": [p["ema_gap_mean"] for p in pops], "ema_gap_var": [p["ema_gap_var"] for p in pops]},
        figures=[Figure(
            "errors", "bars", "Max error of each verification vs its tolerance",
            f"log10 of the worst error over {len(seeds)} seeds (errors of exactly 0 drawn at {floor:g}) and of its "
            "tolerance; every bar of 'max error' below its 'tolerance' bar is a pass.",
            {"panels": [{"title": "C01 verifications", "ylabel": "log10 error", "categories": names,
                         "groups": [{"label": "max error", "values": [math.log10(max(worst[n], floor)) for n in names]},
                                    {"label": "tolerance",
                                     "values": [math.log10(max(tolerances[n], floor)) for n in names]}]}]})],
        caveats=["Tolerances are set for float64 (1e-10) and float32 (1e-5) round-off; they test the formulas, not "
                 "bit-equality with torch's fused kernels.",
                 "Test accuracy with EMA vs precise statistics is reported, not judged: after a short training run "
                 "the EMA lags the weights, which is the reason Alg. 2 exists."],
    )
