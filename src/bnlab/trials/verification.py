"""Trial functions of the verification claims (C01, C08, C09): identities checked against references.

* `mechanics` -- the C01 rows of `bnlab.checks` (BN vs torch, NumPy Alg. 1, finite differences, double backward,
  state_dicts, Alg. 2) with inputs drawn from the seed;
* `population` -- a briefly trained BN net's Alg. 2 population statistics vs a NumPy Alg. 2 and vs its EMA;
* `jacobian` -- the C08 rows of `bnlab.checks` (explicit ∂x̂/∂x vs autograd and finite differences, its spectrum,
  Thm 4.1's identity);
* `real_layer` -- Thm 4.1 on every BN layer of a briefly trained MLP, and one real feature's Jacobian spectrum;
* `invariance` -- the C09 rows of `bnlab.checks` (BN(αWx) = BN(Wx), ∂L/∂(αW) = (1/α)∂L/∂W, ⟨∇W, W⟩ = 0).

Plain data in, plain data out; no claim prose is imported here (trial cache keys hash this module's imports).
"""

from __future__ import annotations

import numpy as np
import torch

from bnlab.checks import invariance_errors, jacobian_errors, mechanics_errors
from bnlab.data import BatchIterator, load_dataset
from bnlab.layers import precise_statistics
from bnlab.layers.jacobian import autograd_jacobian, bn_input_and_grad, bn_jacobian, jacobian_spectrum, theorem_4_1
from bnlab.models import build_model
from bnlab.state import batchnorm_layers, bn_mode
from bnlab.train.metrics import loss_and_accuracy


def mechanics(*, seed: int) -> dict:
    """Trial: the C01 rows of `bnlab.checks` with inputs drawn from `seed`."""
    return {"errors": mechanics_errors(seed)}


def jacobian(*, m: int, seed: int) -> dict:
    """Trial: the C08 rows of `bnlab.checks` with inputs drawn from `seed`."""
    return {"errors": jacobian_errors(seed, m=m, train_steps=5)}


def invariance(*, seed: int) -> dict:
    """Trial: the C09 rows of `bnlab.checks` with inputs drawn from `seed`."""
    return {"errors": invariance_errors(seed)}


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
    _, acc_ema = loss_and_accuracy(net, data.test_x, data.test_y, loss_fn)
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
    _, acc_precise = loss_and_accuracy(net, data.test_x, data.test_y, loss_fn)
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


def real_layer(*, dataset: str, model: str, steps: int, batch_size: int, lr: float, seed: int) -> dict:
    """Trial: Thm 4.1 on every BN layer of a briefly trained MLP; Jacobian spectrum of one real feature."""
    torch.manual_seed(seed)
    data = load_dataset(dataset, seed=0)
    net = build_model(model, norm="bn", in_shape=data.in_shape, num_classes=data.num_classes)
    batches = BatchIterator(data.train_x, data.train_y, batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net = net.double()  # the identities are checked in float64 on the trained weights
    x, y = next(batches)
    x = x.double()
    layers = []
    for name, layer in batchnorm_layers(net):
        layer_in, grad_out = bn_input_and_grad(net, layer, x, y)
        thm = theorem_4_1(layer_in, grad_out, layer.weight, eps=layer.eps)
        layers.append({
            "name": name,
            "identity_rel_error": thm.identity_rel_error,
            "published_violations": float((~thm.published_bound_holds).double().mean()),
            "c_1_over_m_rel_gap": float(((thm.identity_c_1_over_m - thm.lhs).abs() / thm.lhs).max()),
            "lhs": thm.lhs[:20].tolist(), "identity": thm.identity[:20].tolist(),
            "published": thm.published_bound[:20].tolist(),
        })
        if len(layers) == 1:
            feature = layer_in[:, 0].reshape(-1)  # (m,) the first channel's real input over the batch
            jac = bn_jacobian(feature, layer.eps)
            spec = jacobian_spectrum(feature, layer.eps)
            first = {"vs_autograd": float((jac - autograd_jacobian(feature, layer.eps)).abs().max()),
                     "eigen_error": spec.max_error, "eigenvalues": spec.eigenvalues.tolist(),
                     "predicted": spec.predicted.tolist(), "s": spec.s,
                     "null_space": max(1 - spec.ones_alignment, 1 - spec.xhat_alignment, 0.0)}
    return {"layers": layers, "feature": first, "m": int(x.shape[0])}
