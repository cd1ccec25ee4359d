"""Loss and gradient along the gradient direction (Santurkar et al. 2018, Sec. 3.1 and Fig. 4).

At weights w with loss L on one batch and its gradient g = ∇L(w) (same batch), for each step size η_k:

    losses[k]          = L(w − η_k g)
    grad_distances[k]  = ‖∇L(w − η_k g) − g‖₂                     (all trainable parameters, flattened)
    loss_variation          = max_k losses[k] − min_k losses[k]         (Fig. 4a, "variation of the loss")
    gradient_predictiveness = max_k grad_distances[k] − min_k grad_distances[k]   (Fig. 4b, ℓ2 band)
    beta_smoothness         = max_k ‖∇L(w − η_k g) − g‖₂ / ‖η_k g‖₂     (Fig. 4c, "effective β-smoothness")

Santurkar et al. plot the *band* (min to max over η) of losses and gradient distances; the widths above are the
scalars bnlab compares between nets. The effective β-smoothness is the largest finite-difference estimate of the
gradient's Lipschitz constant along g.

How it is computed (no deep copies of the model): every evaluation goes through `torch.func.functional_call` with
the step-η weights substituted for the trainable parameters, so the model's own tensors are never written.
Two paths give the same numbers (to float rounding):

* ``loop``: K+1 separate forward+backward passes (one for g, one per η).
* ``vmap``: g by one pass, then all K step sizes in one batched pass (`torch.func.vmap` over a stacked
  (K, *shape) copy of every parameter).

``path="auto"`` takes the measured default of the device type (`MEASURED_DEFAULT_PATH`, from
`bench/bench_probes.py`), then the environment variable ``BNLAB_ALONG_GRADIENT_PATH`` overrides it; on a device
type with no recorded measurement it times both paths once per (device, parameter shapes, batch shape, K) and
caches the faster (`choose_path`). If vmap cannot trace the model (e.g. an autograd.Function without a vmap rule)
the loop is used and the reason is cached.

Side effects: none. BN layers run in the explicit `bn_mode` (``train``: batch statistics, running statistics not
updated; ``eval``: running statistics), every other module in eval mode; parameters, buffers, ``.grad``,
train/eval modes and torch's RNG are exactly as before the call (`bnlab.state.bn_mode`). The RNG is rewound
before every pass, so a layer that draws noise (noisy BN) sees the same noise at every η: the K evaluations
differ only in the weights.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from bnlab.errors import BnlabError
from bnlab.state import BN_MODES
from bnlab.state import bn_mode as bn_mode_context

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]
PATHS: tuple[str, ...] = ("auto", "loop", "vmap")

# Measured with bench/bench_probes.py (narrow VGG, batch 64, K = 8, 1 thread): on the 2-core development CPU the
# loop cost 1.11-1.16 x K forward+backward passes (the floor is (K+1)/K = 1.125), vmap 1.86-2.17 x K (vmap / loop =
# 1.67-1.90, torch's and bnlab's BN alike), so the CPU default is the loop. Device types not listed (CUDA: not
# measured yet) are timed at run time by `choose_path`.
MEASURED_DEFAULT_PATH: dict[str, str] = {"cpu": "loop"}
PATH_ENV = "BNLAB_ALONG_GRADIENT_PATH"

_PATH_CACHE: dict[tuple, str] = {}


@dataclass(frozen=True)
class AlongGradientResult:
    """Numbers of one along-gradient probe; `etas`, `losses` and `grad_distances` have K entries."""

    etas: list[float]
    losses: list[float]
    grad_distances: list[float]
    loss_variation: float
    gradient_predictiveness: float
    beta_smoothness: float
    loss: float  # L(w) on the batch
    grad_norm: float  # ‖g‖₂
    bn_mode: str
    path: str  # loop | vmap: the path that computed it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReplayRng:
    """Rewinds the global RNG (CPU and the batch's CUDA device) to the state it had on creation, so that every
    pass of a probe draws the same random numbers (noise layers see the same noise)."""

    def __init__(self, device: torch.device) -> None:
        self._cpu = torch.get_rng_state()
        self._cuda = device if device.type == "cuda" else None
        self._cuda_state = torch.cuda.get_rng_state(device) if self._cuda is not None else None

    def rewind(self) -> None:
        torch.set_rng_state(self._cpu)
        if self._cuda is not None:
            torch.cuda.set_rng_state(self._cuda_state, self._cuda)


def check_batch(batch: Any) -> Batch:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise BnlabError("batch must be a pair (inputs, targets)")
    x, y = batch
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise BnlabError("batch must hold two tensors (inputs, targets)")
    return x.detach(), y.detach()


def check_bn_mode(mode: str) -> str:
    if mode not in BN_MODES:
        raise BnlabError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {mode!r}")
    return mode


def _check_etas(etas: Sequence[float]) -> list[float]:
    values = [float(e) for e in etas]
    if not values:
        raise BnlabError("etas must hold at least one step size")
    if not all(math.isfinite(e) and e > 0 for e in values):
        raise BnlabError(f"etas must be finite and positive, got {values}")
    return values


def trainable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached views of the parameters that require grad (these are what g and the steps move)."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise BnlabError("the model has no parameters that require grad")
    return params


def scalar_loss(loss: torch.Tensor) -> torch.Tensor:
    if loss.dim() != 0:
        raise BnlabError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    return loss


def _loss_fn_of(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
                ) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    def loss_at(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return scalar_loss(loss_fn(functional_call(model, params, (x,)), y))

    return loss_at


def _loss_and_grad(loss_at: Callable[[dict[str, torch.Tensor]], torch.Tensor], params: dict[str, torch.Tensor]
                   ) -> tuple[float, dict[str, torch.Tensor]]:
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss = loss_at(leaves)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return float(loss.detach()), dict(zip(leaves, grads))


def _norm(tensors: Iterator[torch.Tensor]) -> float:
    """‖concat(tensors)‖₂ accumulated in float64."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def _steps_loop(loss_at, params, g, etas, rng) -> tuple[list[float], list[float]]:
    losses, dists = [], []
    for eta in etas:
        rng.rewind()
        stepped = {k: w - eta * g[k] for k, w in params.items()}  # (*shape)
        loss, grads = _loss_and_grad(loss_at, stepped)
        losses.append(loss)
        dists.append(_norm(grads[k] - g[k] for k in params))
    return losses, dists


def _steps_vmap(loss_at, params, g, etas, rng) -> tuple[list[float], list[float]]:
    first = next(iter(params.values()))
    eta = torch.tensor(etas, dtype=first.dtype, device=first.device)  # (K,)
    stepped = {k: w.unsqueeze(0) - eta.view(-1, *([1] * w.dim())) * g[k].unsqueeze(0)  # (K, *shape)
               for k, w in params.items()}
    rng.rewind()
    grads, losses = vmap(grad_and_value(loss_at), randomness="same")(stepped)  # (K, *shape), (K,)
    sq = sum((grads[k] - g[k].unsqueeze(0)).double().pow(2).flatten(1).sum(1) for k in params)  # (K,)
    return [float(v) for v in losses.detach()], [float(v) for v in sq.sqrt()]


_STEPPERS = {"loop": _steps_loop, "vmap": _steps_vmap}


def _cache_key(params: dict[str, torch.Tensor], x: torch.Tensor, k: int) -> tuple:
    first = next(iter(params.values()))
    return (str(first.device), str(first.dtype), tuple((n, tuple(p.shape)) for n, p in params.items()),
            tuple(x.shape), k)


def choose_path(path: str, device: torch.device, key: tuple | None = None) -> str | None:
    """The path to use: an explicit one, the env override, the measured default of `device.type`, or the cached
    measurement under `key`; None when it still has to be measured."""
    if path not in PATHS:
        raise BnlabError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    if path != "auto":
        return path
    env = os.environ.get(PATH_ENV, "").strip()
    if env:
        if env not in ("loop", "vmap"):
            raise BnlabError(f"{PATH_ENV} must be loop or vmap, got {env!r}")
        return env
    if device.type in MEASURED_DEFAULT_PATH:
        return MEASURED_DEFAULT_PATH[device.type]
    return _PATH_CACHE.get(key) if key is not None else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def along_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    etas: Sequence[float],
    bn_mode: str = "train",
    path: str = "auto",
) -> AlongGradientResult:
    """Loss and gradient at w − η g for every η in `etas`, where g = ∇L(w) on `batch` (see the module doc).

    `loss_fn(outputs, targets)` must return a scalar. `bn_mode`: ``train`` (batch statistics, Santurkar's choice)
    or ``eval`` (running statistics). `path`: ``auto`` | ``loop`` | ``vmap``. The model is left bit-for-bit as it
    was (parameters, buffers, ``.grad``, modes, RNG).
    """
    x, y = check_batch(batch)
    etas_ = _check_etas(etas)
    mode = check_bn_mode(bn_mode)
    # `bn_mode` restores modes, buffers, .grad and BN settings; the weights are never written (functional_call);
    # the RNG is rewound here. (One snapshot instead of two: this probe's overhead target is a few percent.)
    rng = ReplayRng(x.device)
    try:
        with bn_mode_context(model, mode):
            params = trainable_parameters(model)
            loss_at = _loss_fn_of(model, loss_fn, x, y)
            loss0, g = _loss_and_grad(loss_at, params)
            key = _cache_key(params, x, len(etas_))
            chosen = choose_path(path, x.device, key)
            if chosen is None:  # no measurement for this device and shape yet: time both once
                chosen, losses, dists = _measure_and_run(loss_at, params, g, etas_, rng, key)
            else:
                try:
                    losses, dists = _STEPPERS[chosen](loss_at, params, g, etas_, rng)
                except RuntimeError:
                    if path == "vmap":  # asked for explicitly: say so
                        raise
                    chosen = "loop"  # vmap could not trace this model
                    _PATH_CACHE[key] = chosen
                    losses, dists = _steps_loop(loss_at, params, g, etas_, rng)
    finally:
        rng.rewind()
    g_norm = _norm(iter(g.values()))
    ratios = [d / (eta * g_norm) if g_norm > 0 else math.inf for d, eta in zip(dists, etas_)]
    return AlongGradientResult(
        etas=etas_, losses=losses, grad_distances=dists,
        loss_variation=max(losses) - min(losses),
        gradient_predictiveness=max(dists) - min(dists),
        beta_smoothness=max(ratios),
        loss=loss0, grad_norm=g_norm, bn_mode=mode, path=chosen,
    )


def _measure_and_run(loss_at, params, g, etas, rng, key) -> tuple[str, list[float], list[float]]:
    """Time the loop and the vmap path once (each computes the full result), cache the faster under `key`, and
    return the loop's numbers."""
    device = next(iter(params.values())).device
    _sync(device)
    t0 = time.perf_counter()
    losses, dists = _steps_loop(loss_at, params, g, etas, rng)
    _sync(device)
    t_loop = time.perf_counter() - t0
    try:
        _steps_vmap(loss_at, params, g, etas, rng)  # warm-up: first vmap call pays one-off dispatch costs
        _sync(device)
        t0 = time.perf_counter()
        _steps_vmap(loss_at, params, g, etas, rng)
        _sync(device)
        t_vmap = time.perf_counter() - t0
    except RuntimeError:
        t_vmap = math.inf
    _PATH_CACHE[key] = "vmap" if t_vmap < t_loop else "loop"
    return "loop", losses, dists


class AlongGradientProbe:
    """Engine adapter (`bnlab.train` probe protocol): `along_gradient` at step sizes `eta_factors` × the current
    learning rate (the optimizer's first param group, else `config.lr`), on the step's own batch."""

    def __init__(self, every: int, eta_factors: Sequence[float] = (0.5, 1.0, 2.0, 4.0), bn_mode: str = "train",
                 path: str = "auto", name: str = "along_gradient") -> None:
        if every < 1:
            raise BnlabError(f"every must be >= 1, got {every}")
        self.every = every
        self.eta_factors = tuple(_check_etas(eta_factors))
        self.bn_mode = check_bn_mode(bn_mode)
        self.path = path
        self.name = name

    def __call__(self, ctx: Any) -> dict[str, Any]:
        lr = current_lr(ctx)
        result = along_gradient(ctx.model, ctx.loss_fn, ctx.batch, [f * lr for f in self.eta_factors],
                                bn_mode=self.bn_mode, path=self.path)
        return {"step": int(ctx.step), **result.to_dict()}


def current_lr(ctx: Any) -> float:
    optimizer = getattr(ctx, "optimizer", None)
    if optimizer is not None and optimizer.param_groups:
        return float(optimizer.param_groups[0]["lr"])
    return float(ctx.config.lr)
