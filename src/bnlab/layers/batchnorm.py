"""Batch Normalization from scratch, with its analytic backward (Ioffe & Szegedy 2015, Alg. 1).

For one channel and the m values it sees in a mini-batch (every dim but dim 1: batch and spatial positions),

    μ  = (1/m) Σ x_i                    σ² = (1/m) Σ (x_i − μ)²          (biased: Alg. 1)
    x̂_i = (x_i − μ) / √(σ² + ε)         y_i = γ x̂_i + β

and the backward pass, with s = √(σ² + ε) and g = ∂L/∂y, is

    ∂L/∂x̂ = γ g
    ∂L/∂x  = (1/s) (∂L/∂x̂ − mean(∂L/∂x̂) − x̂ · mean(∂L/∂x̂ · x̂))       (the projection of C08)
    ∂L/∂γ  = Σ g x̂                      ∂L/∂β  = Σ g

`_BatchNormFunction` computes exactly these formulas (no autograd through the forward). Its backward is built
from ordinary differentiable torch ops, and when a caller asks for a graph of the gradient
(``create_graph=True``, e.g. Hessian-vector products) it recomputes μ, σ and x̂ from the saved input with
differentiable ops, so double backward is exact. Inside torch.func transforms (`vmap`, `grad`, as used by
`functional_call`-based probes) the same math runs through `_BatchNormFunctionTransformable` (a generated vmap
rule); forward-mode AD (`jvp`, `jacfwd`) is not supported.

Running statistics follow PyTorch's convention: an exponential moving average with weight `momentum` of the batch
mean and of the *unbiased* batch variance (m/(m−1) σ²); ``momentum=None`` gives the cumulative average (factor
1/num_batches_tracked). Parameter and buffer names equal `nn.BatchNorm2d`'s, so state_dicts load both ways.

Ghost batch normalisation (Hoffer et al. 2017): with ``ghost_batch_size=g`` a training batch is split into chunks
of g samples (the last one may be smaller) and each chunk is normalised with its own statistics; the running
statistics move once per call, with the average of the chunks' means and unbiased variances.

A constant channel (σ = 0) is well defined: x̂ = 0 and the output is β (ε keeps 1/s finite). In floating point
μ carries a rounding error of a few ulp(x), so x̂ is that error over √ε (|x̂| ≲ 4·ulp(x)/√ε, e.g. 0.02 for x ≈ 123
in float32); it is exactly 0 when the mean is exact (tests/test_reliability_numerics.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError


def _stat_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel (C,) vector against x (N, C, *)."""
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.dim()))


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and *biased* variance of x (N, C, *) -> ((C,), (C,)), two passes with centring.

    Centring first (var = mean((x − μ)²)) avoids the cancellation of E[x²] − E[x]² for activations with a large
    mean and squares only the spread, not the offset (float32 overflows only when |x − μ| exceeds ~1e19).
    """
    dims = _reduce_dims(x)
    mean = x.mean(dim=dims)  # (N, C, *) -> (C,)
    xc = x - mean.view(_stat_shape(x))  # (N, C, *)
    return mean, xc.mul_(xc).mean(dim=dims)


def _layout(x: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(reduce dims, per-channel broadcast shape); for (N, C) the (C,) vectors broadcast as they are."""
    if x.dim() == 2:
        return (0,), (x.shape[1],)
    return _reduce_dims(x), _stat_shape(x)


def _forward_math(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                  reuse_buffers: bool) -> tuple[torch.Tensor, ...]:
    """Alg. 1 with batch statistics: (y, mean, biased var, x − μ, 1/s). `reuse_buffers` computes (x − μ)² into
    y's buffer (one allocation less); torch.func transforms cannot batch such out= ops, so they pass False."""
    dims, shape = _layout(x)
    # two passes with centring: no E[x²] − μ² cancellation, and only the spread is squared, not the offset
    mean = x.mean(dim=dims)  # (N, C, *) -> (C,)
    xc = x - mean.view(shape)  # (N, C, *)
    sq = torch.mul(xc, xc)  # (N, C, *): (x − μ)²
    var = sq.mean(dim=dims)  # (C,) biased variance
    invstd = (var + eps).rsqrt()  # (C,)
    scale = invstd if weight is None else invstd * weight  # (C,)
    out = {"out": sq} if reuse_buffers else {}
    if bias is None:
        y = torch.mul(xc, scale.view(shape), **out)  # (N, C, *): y = γ x̂
    else:
        y = torch.addcmul(bias.view(shape), xc, scale.view(shape), **out)  # (N, C, *): y = γ x̂ + β
    return y, mean, var, xc, invstd


def _backward_math(grad_y: torch.Tensor, x: torch.Tensor, xc: torch.Tensor, weight: torch.Tensor | None,
                   invstd: torch.Tensor, eps: float, needs: tuple[bool, bool, bool],
                   reuse_buffers: bool) -> tuple[Any, Any, Any]:
    """(∂L/∂x, ∂L/∂γ, ∂L/∂β) by the analytic formulas of the module docstring.

    Inside a graph-recording backward (create_graph=True) μ, σ and x̂ are rebuilt from x with differentiable ops,
    so double backward (Hessian-vector products) is exact.
    """
    need_x, need_w, need_b = needs
    m = x.numel() // x.shape[1]
    if torch.is_grad_enabled():
        dims, shape = _reduce_dims(x), _stat_shape(x)
        mean = x.mean(dim=dims, keepdim=True)  # (1, C, 1...)
        xc = x - mean  # (N, C, *)
        invstd_b = torch.rsqrt((xc * xc).mean(dim=dims, keepdim=True) + eps)  # (1, C, 1...)
        xhat = xc * invstd_b  # (N, C, *)
        g_sum = grad_y.sum(dim=dims)  # (C,)
        g_xhat = (grad_y * xhat).sum(dim=dims)  # (C,)
        grad_x = None
        if need_x:
            gamma = invstd_b if weight is None else weight.view(shape) * invstd_b
            grad_x = gamma * (grad_y - g_sum.view(shape) / m - xhat * (g_xhat.view(shape) / m))
        return grad_x, (g_xhat if need_w else None), (g_sum if need_b else None)
    dims, shape = _layout(x)
    # fast path (no graph): dx = a·g + b·(x − μ) + c per channel, two reductions, one allocation
    g_sum = grad_y.sum(dim=dims)  # (C,)  Σ g
    buf = torch.mul(grad_y, xc)  # (N, C, *): g (x − μ), reused as the dx buffer
    g_xhat = buf.sum(dim=dims) * invstd  # (C,)  Σ g x̂ = ∂L/∂γ
    grad_x = None
    if need_x:
        a = invstd if weight is None else weight * invstd  # (C,)  γ/s
        p = a * (-1.0 / m)  # (C,)  −γ/(s m)
        b = (p * invstd).mul_(g_xhat)  # (C,)  −(γ/s²) mean(g x̂)
        out = {"out": buf} if reuse_buffers else {}
        grad_x = torch.addcmul((p * g_sum).view(shape), grad_y, a.view(shape), **out)  # (N, C, *)
        grad_x = grad_x.addcmul_(xc, b.view(shape)) if reuse_buffers else grad_x + xc * b.view(shape)
    return grad_x, (g_xhat if need_w else None), (g_sum if need_b else None)


class _BatchNormFunction(torch.autograd.Function):
    """y = γ (x − μ_B)/√(σ²_B + ε) + β with batch statistics, and its analytic backward (eager fast path).

    Returns y. Side channels (not autograd outputs, to keep the per-call overhead low): when `stats` is a list the
    batch mean and *biased* variance (C,) are appended to it; when `running` = (running_mean, running_var, factor,
    unbias) the buffers move in place, running ← (1 − factor)·running + factor·batch, with the variance multiplied by
    `unbias` = m/(m − 1) (PyTorch's convention). Memory: saves x (an input, alive anyway), x − μ and 1/s; the
    forward allocates x − μ and y only, the fast backward only dx.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                stats: list | None, running: tuple | None) -> torch.Tensor:
        y, mean, var, xc, invstd = _forward_math(x, weight, bias, eps, reuse_buffers=True)
        ctx.save_for_backward(x, xc, weight, invstd)
        ctx.eps = eps
        if stats is not None:
            stats.append((mean, var))
        if running is not None:
            running_mean, running_var, factor, unbias = running
            running_mean.lerp_(mean.to(running_mean.dtype), factor)
            running_var.mul_(1.0 - factor).add_(var.to(running_var.dtype), alpha=factor * unbias)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[Any, ...]:
        x, xc, weight, invstd = ctx.saved_tensors
        grads = _backward_math(grad_y, x, xc, weight, invstd, ctx.eps, ctx.needs_input_grad[:3], reuse_buffers=True)
        return (*grads, None, None, None)


class _BatchNormFunctionTransformable(torch.autograd.Function):
    """The same forward and backward in the form torch.func transforms (vmap, grad, jvp of grad) accept:
    `setup_context`, intermediates returned as non-differentiable outputs, no out= ops, no side effects. Used only
    while a torch.func transform is active (it costs more per call than `_BatchNormFunction`)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                eps: float) -> tuple[torch.Tensor, ...]:
        return _forward_math(x, weight, bias, eps, reuse_buffers=False)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        x, weight, _bias, eps = inputs
        _y, mean, var, xc, invstd = output
        ctx.mark_non_differentiable(mean, var, xc, invstd)
        ctx.save_for_backward(x, xc, weight, invstd)
        ctx.eps = eps

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor, *_unused: Any) -> tuple[Any, ...]:
        x, xc, weight, invstd = ctx.saved_tensors
        grads = _backward_math(grad_y, x, xc, weight, invstd, ctx.eps, ctx.needs_input_grad[:3],
                               reuse_buffers=False)
        return (*grads, None)


def _apply(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
           stats: list | None, running: tuple | None) -> torch.Tensor:
    """Batch-statistics BN through the eager Function, or the transformable one inside torch.func transforms."""
    if not torch._C._are_functorch_transforms_active():
        return _BatchNormFunction.apply(x, weight, bias, eps, stats, running)
    y, mean, var, _xc, _invstd = _BatchNormFunctionTransformable.apply(x, weight, bias, eps)
    if stats is not None:
        stats.append((mean, var))
    if running is not None:  # raises inside vmap (unbatched buffers), as torch's BN does
        running_mean, running_var, factor, unbias = running
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), factor)
            running_var.mul_(1.0 - factor).add_(var.to(running_var.dtype), alpha=factor * unbias)
    return y


def batch_norm_train(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Functional BN with batch statistics: (y, batch mean (C,), biased batch variance (C,))."""
    stats: list = []
    y = _apply(x, weight, bias, eps, stats, None)
    mean, var = stats[0]
    return y, mean, var


def batch_norm_eval(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor | None,
                    bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """BN with fixed (population) statistics: an affine map per channel, so plain autograd is exact here."""
    scale = torch.rsqrt(var + eps)  # (C,)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    shape = _stat_shape(x)
    return torch.addcmul(shift.view(shape), x, scale.view(shape))  # (N, C, *)


class BatchNorm(nn.Module):
    """bnlab's Batch Normalization for (N, C) and (N, C, *) inputs; statistics per channel over every dim but 1.

    Drop-in for `nn.BatchNorm1d/2d/3d`: same arguments, parameters (weight, bias) and buffers (running_mean,
    running_var, num_batches_tracked), same train/eval semantics:

    * training, or no running buffers: normalise with batch statistics; update the buffers only when
      ``track_running_stats`` is True (`bnlab.state.bn_mode("train")` relies on this).
    * eval with buffers: normalise with the running statistics.

    `ghost_batch_size` (training only) normalises chunks of that many samples separately (Hoffer et al. 2017).
    Side effects: a training call with ``track_running_stats=True`` updates the buffers in place.
    """

    is_batchnorm = True

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, ghost_batch_size: int | None = None,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise BnlabError(f"BatchNorm num_features must be a positive int, got {num_features!r}")
        if not eps > 0:
            raise BnlabError(f"BatchNorm eps must be > 0, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise BnlabError(f"BatchNorm momentum must be in [0, 1] or None, got {momentum!r}")
        if ghost_batch_size is not None and (not isinstance(ghost_batch_size, int) or ghost_batch_size < 1):
            raise BnlabError(f"BatchNorm ghost_batch_size must be a positive int or None, got {ghost_batch_size!r}")
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.ghost_batch_size = ghost_batch_size
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.running_mean is not None:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        ghost = f", ghost_batch_size={self.ghost_batch_size}" if self.ghost_batch_size else ""
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}{ghost}")

    def _check_input(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x):
            raise BnlabError(f"BatchNorm expects a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise BnlabError(f"BatchNorm expects a floating-point tensor, got dtype {x.dtype}")
        if x.dim() < 2:
            raise BnlabError(f"BatchNorm expects input of shape (N, C) or (N, C, *), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise BnlabError(f"BatchNorm expects {self.num_features} channels (dim 1), got {x.shape[1]} "
                             f"in input of shape {tuple(x.shape)}")
        if self.training and x.numel() // x.shape[1] < 2:
            raise BnlabError(f"BatchNorm in training mode needs more than 1 value per channel, got input of "
                             f"shape {tuple(x.shape)}")

    def _update_factor(self) -> float:
        """Weight of the new batch in the running statistics (and count the batch)."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return float(self.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one cheap combined test on the hot path; the detailed messages come from _check_input
        if (type(x) is not torch.Tensor and not torch.is_tensor(x)) or x.dim() < 2 \
                or x.shape[1] != self.num_features or not x.is_floating_point():
            self._check_input(x)
        training = self.training
        if not training and self.running_mean is not None:
            return batch_norm_eval(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps)
        per_channel = x.numel() // x.shape[1]
        if training and per_channel < 2:
            self._check_input(x)
        update = training and self.track_running_stats and self.running_mean is not None
        ghost = self.ghost_batch_size
        if ghost is not None and training and ghost < x.shape[0]:
            return self._ghost_forward(x, ghost, update)
        running = None
        if update:
            running = (self.running_mean, self.running_var, self._update_factor(),
                       per_channel / max(per_channel - 1, 1))
        return _apply(x, self.weight, self.bias, self.eps, None, running)

    def _ghost_forward(self, x: torch.Tensor, ghost: int, update: bool) -> torch.Tensor:
        """Normalise chunks of `ghost` samples separately; running statistics move by the chunks' average."""
        chunks = torch.split(x, ghost, dim=0)
        counts = [c.numel() // c.shape[1] for c in chunks]
        if min(counts) < 2:
            raise BnlabError(f"BatchNorm ghost batch of {ghost} leaves a chunk with 1 value per channel "
                             f"(batch shape {tuple(x.shape)}); batch statistics need at least 2")
        stats: list = []
        y = torch.cat([_apply(c, self.weight, self.bias, self.eps, stats, None) for c in chunks],
                      dim=0)  # (N, C, *)
        if update:
            with torch.no_grad():
                mean = torch.stack([mu for mu, _ in stats]).mean(0)  # (G, C) -> (C,)
                unbiased = torch.stack([v * (n / (n - 1)) for (_, v), n in zip(stats, counts)]).mean(0)  # (C,)
                f = self._update_factor()
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), f)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), f)
        return y
