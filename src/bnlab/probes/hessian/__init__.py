"""Curvature of the loss: Hessian top eigenvalues, trace and spectral density, with the BN mode explicit.

    from bnlab.probes.hessian import top_eigenvalues, trace, density
    top = top_eigenvalues(model, loss_fn, (x, y), k=3, bn_mode="train", seed=0)   # EigenResult
    tr = trace(model, loss_fn, (x, y), target_se=0.5, seed=0)                       # TraceResult (Krylov Hutch++)
    rho = density(model, loss_fn, (x, y), runs=4, steps=60, seed=0)                 # DensityResult

`data` is one ``(x, y)`` batch or an iterable of them (the loss over the set is the size-weighted mean of the
batch losses); `params` selects the parameters the Hessian is taken over (names or module prefixes: one layer,
one block; default all trainable ones); `bn_mode` is ``"train"`` (each batch's own statistics — the papers'
choice, the running statistics are left alone) or ``"eval"`` (stored running statistics, PyHessian's only
mode). The two can differ by orders of magnitude on the same net and batch, so every result records its mode,
parameters, dimension, products used and seed (``result.to_dict()``).

Trace methods: ``"krylov-hutch++"`` (default: Hutch++ deflating a Lanczos basis, whose exact part is free; it
needed 1.5x fewer products than ``"hutch++"`` for the same SE on a trained BN CNN, and never more at
initialisation), ``"hutch++"`` (Meyer et al.'s random sketch) and ``"hutchinson"``.

To share one operator between estimators (the gradient graph is built once):

    with hessian_operator(model, loss_fn, (x, y), bn_mode="eval") as op:
        top = lanczos_eigenpairs(op, k=1); tr = estimate_trace(op, target_se=0.1)

The model is left as it was (parameters, buffers, ``.grad``, modes: `bnlab.state`). The pieces live in
``operator`` (H v), ``lanczos`` (eigenpairs), ``trace``, ``density``, ``dense`` (the oracles), ``composite_bn``
(BN's double backward as one op), ``scale`` (scale-invariant sharpness) and ``sharpness`` (the training probe),
all under ``bnlab.probes.hessian``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.hessian.dense import dense_hessian, finite_difference_hessian
from bnlab.probes.hessian.density import DensityResult, slq_density
from bnlab.probes.hessian.lanczos import WHICH, EigenResult, Operator, lanczos_eigenpairs, power_eigenpairs
from bnlab.probes.hessian.operator import HessianOperator, LossFn, MatrixOperator, hessian_operator
from bnlab.probes.hessian.spectra import BlockOperator, block_eigenpairs, blocks, extremes, scipy_operator
from bnlab.probes.hessian.top_and_trace import top_and_trace
from bnlab.probes.hessian.trace import (
    TraceResult,
    hutchinson_trace,
    hutchpp_trace,
    krylov_hutchpp_trace,
)

__all__ = [
    "BlockOperator", "block_eigenpairs", "blocks", "extremes", "scipy_operator",
    "EIGEN_METHODS", "EIGEN_SOLVERS", "TRACE_ESTIMATORS", "TRACE_METHODS", "WHICH", "DensityResult", "EigenResult",
    "HessianOperator",
    "MatrixOperator", "TraceResult", "dense_hessian", "density", "eigenpairs", "estimate_trace",
    "finite_difference_hessian", "hessian_operator", "hutchinson_trace", "hutchpp_trace", "krylov_hutchpp_trace",
    "lanczos_eigenpairs",
    "power_eigenpairs", "slq_density", "top_and_trace", "top_eigenvalues", "trace",
]


def _by_lanczos(op: Operator, *, k: int, which: str, tol: float, max_steps: int | None, seed: int, start: str,
                criterion: str) -> EigenResult:
    return lanczos_eigenpairs(op, k=k, which=which, tol=tol, max_steps=max_steps, seed=seed, start=start,
                              criterion=criterion)


def _by_power(op: Operator, *, k: int, which: str, tol: float, max_steps: int | None, seed: int, start: str,
              criterion: str) -> EigenResult:
    # power iteration has no start vector choice and no stopping criterion but the eigenvalue's change
    return power_eigenpairs(op, k=k, which=which, tol=tol, max_iter=max_steps or 1000, seed=seed)


def _hutchinson_unsketched(op: Operator, *, sketch: int, **stopping: Any) -> TraceResult:
    return hutchinson_trace(op, **stopping)  # plain Hutchinson deflates nothing: no sketch


# The swappable estimators, by name (the names the configs and the command line accept).
EIGEN_SOLVERS: dict[str, Callable[..., EigenResult]] = {"lanczos": _by_lanczos, "power": _by_power}
TRACE_ESTIMATORS: dict[str, Callable[..., TraceResult]] = {
    "hutch++": hutchpp_trace,
    "krylov-hutch++": krylov_hutchpp_trace,
    "hutchinson": _hutchinson_unsketched,
}
EIGEN_METHODS: tuple[str, ...] = tuple(EIGEN_SOLVERS)
TRACE_METHODS: tuple[str, ...] = tuple(TRACE_ESTIMATORS)


def eigenpairs(op: Any, *, k: int = 1, which: str = "largest", method: str = "lanczos", tol: float = 1e-4,
               max_steps: int | None = None, seed: int = 0, start: str = "auto",
               criterion: str = "residual") -> EigenResult:
    """Top-k eigenpairs of an operator by `method` (`EIGEN_METHODS`: "lanczos" or "power"); `start` and
    `criterion` apply to Lanczos (`bnlab.probes.hessian.lanczos`)."""
    if method not in EIGEN_SOLVERS:
        raise BnlabError(f"method must be one of {', '.join(EIGEN_METHODS)}, got {method!r}")
    return EIGEN_SOLVERS[method](op, k=k, which=which, tol=tol, max_steps=max_steps, seed=seed, start=start,
                                 criterion=criterion)


def estimate_trace(op: Any, *, method: str = "krylov-hutch++", target_se: float | None = None,
                   rtol: float | None = None, min_samples: int = 10, max_samples: int = 100, sketch: int = 10,
                   seed: int = 0) -> TraceResult:
    """tr H of an operator by `method` (`TRACE_METHODS`: "hutch++", "krylov-hutch++" or "hutchinson") with its
    standard error."""
    if method not in TRACE_ESTIMATORS:
        raise BnlabError(f"method must be one of {', '.join(TRACE_METHODS)}, got {method!r}")
    return TRACE_ESTIMATORS[method](op, sketch=sketch, target_se=target_se, rtol=rtol, min_samples=min_samples,
                                    max_samples=max_samples, seed=seed)


def top_eigenvalues(model: nn.Module, loss_fn: LossFn, data: Any, *, k: int = 1, which: str = "largest",
                    method: str = "lanczos", tol: float = 1e-4, max_steps: int | None = None, seed: int = 0,
                    params: Sequence[str] | None = None, bn_mode: str = "train",
                    backend: str = "autograd", start: str = "auto", criterion: str = "residual",
                    per_block: bool = False) -> EigenResult | dict[str, EigenResult]:
    """Top-k Hessian eigenvalues (and eigenvectors) of the loss of `model` on `data`; see the module doc.
    Lanczos starts from the seeded random vector plus the loss gradient (``start="auto"``) and stops on the
    Ritz residual (``criterion="residual"``; ``"eigenvalue"`` stops on the estimated eigenvalue error).
    ``which="smallest"`` gives λ_min. ``per_block=True``: {layer: its diagonal block's top-k}, all from one
    gradient graph (`bnlab.probes.hessian.spectra`)."""
    with hessian_operator(model, loss_fn, data, params=params, bn_mode=bn_mode, backend=backend) as op:
        if per_block:
            return block_eigenpairs(op, k=k, which=which, tol=tol, seed=seed)
        return eigenpairs(op, k=k, which=which, method=method, tol=tol, max_steps=max_steps, seed=seed,
                          start=start, criterion=criterion)


def trace(model: nn.Module, loss_fn: LossFn, data: Any, *, method: str = "krylov-hutch++",
          target_se: float | None = None, rtol: float | None = None, min_samples: int = 10,
          max_samples: int = 100, sketch: int = 10, seed: int = 0, params: Sequence[str] | None = None,
          bn_mode: str = "train", backend: str = "autograd") -> TraceResult:
    """Hessian trace ± standard error, stopping at `target_se` (absolute) / `rtol` (relative) if given."""
    with hessian_operator(model, loss_fn, data, params=params, bn_mode=bn_mode, backend=backend) as op:
        return estimate_trace(op, method=method, target_se=target_se, rtol=rtol, min_samples=min_samples,
                              max_samples=max_samples, sketch=sketch, seed=seed)


def density(model: nn.Module, loss_fn: LossFn, data: Any, *, runs: int = 4, steps: int = 60,
            grid_points: int = 512, sigma: float | None = None, relative_sigma: float = 0.01, seed: int = 0,
            params: Sequence[str] | None = None, bn_mode: str = "train", backend: str = "autograd") -> DensityResult:
    """Hessian spectral density by stochastic Lanczos quadrature, on a grid, integrating to 1."""
    with hessian_operator(model, loss_fn, data, params=params, bn_mode=bn_mode, backend=backend) as op:
        return slq_density(op, runs=runs, steps=steps, grid_points=grid_points, sigma=sigma,
                           relative_sigma=relative_sigma, seed=seed)
