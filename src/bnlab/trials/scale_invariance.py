"""Trial functions of C09 (scale invariance as an adaptive learning rate): identities, weight-norm dynamics, and
the behavioural test -- does (α·W₀, lr·α²) follow the same function trajectory as (W₀, lr)?

Why the behavioural test works. For a weight W feeding BN, L(αW) = L(W), so ∇_{αW} L = (1/α)∇_W L. SGD from αW₀
with lr α²η on W (every other parameter unchanged: lr η) steps to αW₀ − α²η(1/α)∇_W L = α(W₀ − η∇_W L): the same
function as the run from W₀ with lr η, at every step, by induction. With heavy-ball momentum the velocity of the
scaled run is 1/α times the other's, and the same induction holds. Without BN nothing cancels the scale, so the two
runs compute different functions. With ε > 0 the cancellation is approximate: √(α²σ² + ε) ≠ α√(σ² + ε).
Plain data in, plain data out (float64); no claim prose is imported here.
"""

from __future__ import annotations

import math

import torch

from bnlab.checks import invariance_errors
from bnlab.data import BatchIterator, load_dataset
from bnlab.models import build_model, normalised_blocks
from bnlab.state import bn_mode

ALPHAS: tuple[float, ...] = (0.1, 0.5, 2.0, 10.0, 100.0)


def verify(*, seed: int) -> dict:
    """Trial: the identities with tiny ε (the verification) and with the default ε (reported)."""
    return {"errors": invariance_errors(seed, alphas=ALPHAS),
            "default_eps_errors": invariance_errors(seed, alphas=ALPHAS, eps=1e-5)}


def _pre_norm_weights(net: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weight of each built-in block's linear map (feeds the norm; no bias with BN: exactly scale invariant)."""
    return [(getattr(block, "linear", None) or block.conv).weight for _, block in normalised_blocks(net)]


def trajectory(*, dataset: str, model: str, norm: str, steps: int, batch_size: int, lr: float, momentum: float,
               alpha: float, record_every: int, eval_examples: int, seed: int) -> dict:
    """Trial: two SGD runs from the same init and batches -- (W₀, lr) and (α·W₀, lr·α² on the pre-norm weights) --
    and the relative distance ‖f_A − f_B‖ / ‖f_A‖ of their outputs on held-out inputs over training."""
    torch.manual_seed(seed)
    data = load_dataset(dataset, seed=0)
    nets = [build_model(model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes).double()]
    nets.append(build_model(model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes).double())
    nets[1].load_state_dict(nets[0].state_dict())
    scaled = {id(w) for w in _pre_norm_weights(nets[1])}
    with torch.no_grad():
        for w in _pre_norm_weights(nets[1]):
            w.mul_(alpha)
    opts = [torch.optim.SGD(nets[0].parameters(), lr=lr, momentum=momentum),
            torch.optim.SGD([{"params": [p for p in nets[1].parameters() if id(p) in scaled], "lr": lr * alpha**2},
                             {"params": [p for p in nets[1].parameters() if id(p) not in scaled], "lr": lr}],
                            momentum=momentum)]
    batches = BatchIterator(data.train_x.double(), data.train_y, batch_size, torch.Generator().manual_seed(seed))
    probe_x = data.test_x[:eval_examples].double()
    record_steps, distances = [], []
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            with torch.no_grad(), bn_mode(nets[0], "train"), bn_mode(nets[1], "train"):
                # BN with the batch statistics of the held-out batch: the function SGD trains (the running
                # statistics start at (0, 1) in both runs, which is not scale invariant)
                a, b = (net(probe_x) for net in nets)  # (E, classes) each
            d = float((a - b).norm() / a.norm())
            record_steps.append(step)
            distances.append(d if math.isfinite(d) else None)
        if step == steps:
            break
        x, y = next(batches)
        for net, opt in zip(nets, opts):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    return {"steps": record_steps, "relative_distance": distances, "norm": norm, "alpha": alpha,
            "momentum": momentum}


def dynamics(*, dataset: str, model: str, steps: int, batch_size: int, lr: float, weight_decay: float,
             record_every: int, seed: int) -> dict:
    """Trial: plain SGD on a BN MLP in float64; norms of the pre-BN weights and η/‖W‖² over training."""
    torch.manual_seed(seed)
    data = load_dataset(dataset, seed=0)
    net = build_model(model, norm="bn", in_shape=data.in_shape, num_classes=data.num_classes).double()
    # the weight layer of each built-in block feeds its BN and has no bias, so its weight is scale invariant
    weights = _pre_norm_weights(net)
    batches = BatchIterator(data.train_x.double(), data.train_y, batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=weight_decay)
    norms0 = [float(w.detach().norm()) for w in weights]
    increments = [0.0 for _ in weights]  # Σ_t η²‖∇W_t‖² (the orthogonal recursion's growth, no decay)
    record_steps, norms, losses = [0], [norms0], []
    for step in range(1, steps + 1):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        for i, w in enumerate(weights):
            increments[i] += lr**2 * float(w.grad.square().sum())
        opt.step()
        if not math.isfinite(float(loss.detach())):
            break
        if step % record_every == 0 or step == steps:
            record_steps.append(step)
            norms.append([float(w.detach().norm()) for w in weights])
            losses.append(float(loss.detach()))
    final = norms[-1]
    return {"steps": record_steps, "norms": norms, "lr": lr, "weight_decay": weight_decay,
            "measured_growth": [f**2 - n**2 for f, n in zip(final, norms0)], "predicted_growth": increments,
            "log_growth": sum(math.log(f / n) for f, n in zip(final, norms0)) / len(final),
            "final_loss": losses[-1] if losses else math.nan}


def angle_between(a: torch.Tensor, b: torch.Tensor) -> float:
    """The angle (rad) between two weight tensors, as 2·asin(‖â − b̂‖/2) with â = a/‖a‖: exact to rounding for the
    small angles of one SGD step, where acos(⟨â, b̂⟩) loses half the digits (cos θ ≈ 1 − θ²/2)."""
    chord = (a / a.norm() - b / b.norm()).norm()  # ‖â − b̂‖ = 2 sin(θ/2)
    return float(2 * torch.asin((chord / 2).clamp(max=1.0)))


def angular_update(*, dataset: str, model: str, norm: str, steps: int, batch_size: int, lr: float, momentum: float,
                   weight_decay: float, tail: float, seed: int) -> dict:
    """Trial: SGD with momentum and weight decay on every parameter (float64); per step, the angle each pre-norm
    weight turns by (`angle_between`). Returns, per layer, the mean angular update over the last `tail` fraction of
    the steps (the equilibrium of Wan et al. 2021 predicts √(2ηλ/(1+α)) for scale-invariant weights) and a
    window-averaged curve (<= 100 points); stops at a non-finite loss."""
    torch.manual_seed(seed)
    data = load_dataset(dataset, seed=0)
    net = build_model(model, norm=norm, in_shape=data.in_shape, num_classes=data.num_classes).double()
    weights = _pre_norm_weights(net)
    batches = BatchIterator(data.train_x.double(), data.train_y, batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    angles: list[list[float]] = [[] for _ in weights]  # (layers, steps)
    norms0 = [float(w.detach().norm()) for w in weights]
    diverged_at = None
    for step in range(1, steps + 1):
        x, y = next(batches)
        before = [w.detach().clone() for w in weights]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        if not math.isfinite(float(loss.detach())):
            diverged_at = step
            break
        loss.backward()
        opt.step()
        for i, (w, b) in enumerate(zip(weights, before)):
            angles[i].append(angle_between(b, w.detach()))
    start = int(len(angles[0]) * (1 - tail))
    width = max(1, math.ceil(len(angles[0]) / 100))
    curve_steps = list(range(1, len(angles[0]) + 1, width))
    return {"norm": norm, "lr": lr, "momentum": momentum, "weight_decay": weight_decay, "diverged_at": diverged_at,
            "predicted": math.sqrt(2 * lr * weight_decay / (1 + momentum)),
            "tail_mean": [sum(a[start:]) / len(a[start:]) if a[start:] else math.nan for a in angles],
            "curve_steps": curve_steps,
            "curve": [[sum(a[s - 1:s - 1 + width]) / len(a[s - 1:s - 1 + width]) for s in curve_steps]
                      for a in angles],
            "log_norm_growth": [math.log(float(w.detach().norm()) / n) for w, n in zip(weights, norms0)]}
