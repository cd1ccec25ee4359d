"""Stochastic trace estimation with a standard error: Hutchinson and Hutch++.

Hutchinson (1989): for Rademacher z (entries ±1, E[zzᵀ] = I), E[zᵀHz] = tr H and
Var[zᵀHz] = 2 Σ_{i≠j} H_ij². With n samples the estimate is their mean and its standard error the sample standard
deviation / √n.

Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021, Alg. 1): sketch the dominant range Q = orth(H S) with s
Rademacher columns S (s products), take the trace there exactly, tr(Qᵀ H Q) (s products), and run Hutchinson only
on the deflated remainder, tr((I−QQᵀ) H (I−QQᵀ)), whose variance 2‖(I−QQᵀ)H(I−QQᵀ)‖_F² (off-diagonal part) no
longer holds the top eigenvalues. Neural-net Hessians have a few large outlier eigenvalues over a bulk near zero
(Ghorbani et al. 2019; Papyan 2019), which is exactly where Hutch++ needs far fewer products for a given error.
The standard error is that of the remainder's Hutchinson mean (the sketched part is exact given S).

Krylov-aware Hutch++ (Chen & Hallman, SIMAX 2023, "Krylov-aware stochastic trace estimation"): take Q from s
steps of Lanczos (with full reorthogonalisation) instead of orth(HS). The exact part is then free — tr(QᵀHQ) =
tr(T_s) = Σ α_j, the diagonal Lanczos already computed — so the deflation costs s products instead of 2s, and a
Krylov space of dimension s captures the top eigenvectors far better than one sketch H S of s columns. Given Q,
the remainder's Hutchinson samples use fresh vectors, so the estimate stays unbiased.

Stopping: a target standard error (absolute `target_se` and/or relative `rtol`·|estimate|), checked after at
least `min_samples` samples, at most `max_samples`; without a target exactly `max_samples` samples are drawn.
(PyHessian stops when the running mean changes by less than a relative tolerance between two samples, which is
no error bound.) Every estimate takes a seed; the random vectors come from a private generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from bnlab.errors import BnlabError
from bnlab.probes.hessian.lanczos import Operator, lanczos


@dataclass
class TraceResult:
    """tr H ± standard error, with the samples and products it took."""

    trace: float
    se: float
    method: str
    samples: int  # Hutchinson samples (of the remainder, for Hutch++)
    products: int  # Hessian-vector products in all
    converged: bool  # the target standard error was reached (True when no target was set)
    target_se: float | None
    seed: int
    sketch: int = 0  # Hutch++ sketch size s
    sketched_trace: float = 0.0  # tr(Qᵀ H Q), the exact part of Hutch++
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "se": self.se, "method": self.method, "samples": self.samples,
                "products": self.products, "converged": self.converged, "target_se": self.target_se,
                "seed": self.seed, "sketch": self.sketch, "sketched_trace": self.sketched_trace, **self.info}


def rademacher(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """Entries ±1 with probability ½ each."""
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(dtype=dtype, device=device)


class _RunningMean:
    """Welford's running mean and variance."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def se(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1) / self.n) if self.n > 1 else math.inf


def _validate(target_se: float | None, rtol: float | None, min_samples: int, max_samples: int) -> None:
    if target_se is not None and not target_se > 0:
        raise BnlabError(f"target_se must be positive, got {target_se}")
    if rtol is not None and not rtol > 0:
        raise BnlabError(f"rtol must be positive, got {rtol}")
    if not 2 <= min_samples <= max_samples:
        raise BnlabError(f"need 2 <= min_samples <= max_samples, got {min_samples} and {max_samples}")


def _sample(op: Operator, stats: _RunningMean, offset: float, project: Any, gen: torch.Generator,
            target_se: float | None, rtol: float | None, min_samples: int, max_samples: int) -> bool:
    """Draw Hutchinson samples of the (projected) operator until the target is met; True when it was."""
    has_target = target_se is not None or rtol is not None
    while stats.n < max_samples:
        z = project(rademacher((op.dim,), gen, op.dtype, op.device))  # (P,)
        stats.add(float(z @ op.matvec(z)))
        if has_target and stats.n >= min_samples:
            se = stats.se()
            goal = min(target_se if target_se is not None else math.inf,
                       rtol * abs(offset + stats.mean) if rtol is not None else math.inf)
            if se <= goal:
                return True
    return not has_target


def hutchinson_trace(op: Operator, *, target_se: float | None = None, rtol: float | None = None,
                     min_samples: int = 10, max_samples: int = 100, seed: int = 0) -> TraceResult:
    """tr H by Hutchinson's estimator with Rademacher vectors."""
    _validate(target_se, rtol, min_samples, max_samples)
    gen = torch.Generator().manual_seed(seed)
    start = op.products
    stats = _RunningMean()
    ok = _sample(op, stats, 0.0, lambda z: z, gen, target_se, rtol, min_samples, max_samples)
    return TraceResult(trace=stats.mean, se=stats.se(), method="hutchinson", samples=stats.n,
                       products=op.products - start, converged=ok, target_se=target_se, seed=seed,
                       info=op.describe())


def hutchpp_trace(op: Operator, *, sketch: int = 10, target_se: float | None = None, rtol: float | None = None,
                  min_samples: int = 10, max_samples: int = 100, seed: int = 0) -> TraceResult:
    """tr H by Hutch++: exact trace on an s-dimensional sketch of H's range plus Hutchinson on the rest."""
    _validate(target_se, rtol, min_samples, max_samples)
    if sketch < 1:
        raise BnlabError(f"sketch must be >= 1, got {sketch}")
    gen = torch.Generator().manual_seed(seed)
    start = op.products
    s = min(sketch, op.dim)
    q, _ = torch.linalg.qr(op.matvec(rademacher((op.dim, s), gen, op.dtype, op.device)))  # (P, s)
    exact = float(torch.sum(q * op.matvec(q)))  # tr(Qᵀ H Q)
    stats = _RunningMean()
    if s == op.dim:  # the sketch spans everything: the trace is exact
        return TraceResult(trace=exact, se=0.0, method="hutch++", samples=0, products=op.products - start,
                           converged=True, target_se=target_se, seed=seed, sketch=s, sketched_trace=exact,
                           info=op.describe())

    def deflate(z: torch.Tensor) -> torch.Tensor:
        return z - q @ (q.T @ z)  # (I − QQᵀ) z

    ok = _sample(op, stats, exact, deflate, gen, target_se, rtol, min_samples, max_samples)
    return TraceResult(trace=exact + stats.mean, se=stats.se(), method="hutch++", samples=stats.n,
                       products=op.products - start, converged=ok, target_se=target_se, seed=seed, sketch=s,
                       sketched_trace=exact, info=op.describe())


def krylov_hutchpp_trace(op: Operator, *, sketch: int = 10, target_se: float | None = None,
                         rtol: float | None = None, min_samples: int = 10, max_samples: int = 100,
                         seed: int = 0) -> TraceResult:
    """tr H by Krylov-aware Hutch++: exact trace on `sketch` Lanczos vectors, Hutchinson on the rest."""
    _validate(target_se, rtol, min_samples, max_samples)
    if sketch < 1:
        raise BnlabError(f"sketch must be >= 1, got {sketch}")
    gen = torch.Generator().manual_seed(seed)
    start = op.products
    run = lanczos(op, rademacher((op.dim,), gen, op.dtype, op.device), sketch)
    basis = run.basis  # (s, P), orthonormal rows
    exact = float(run.alpha.sum())  # tr(Qᵀ H Q) = tr(T_s)
    stats = _RunningMean()
    if run.breakdown:  # the Krylov space is invariant: tr(QᵀHQ) is the trace of H restricted to it ...
        if basis.shape[0] == op.dim:  # ... and with s = P it is the whole trace
            return TraceResult(trace=exact, se=0.0, method="krylov-hutch++", samples=0,
                               products=op.products - start, converged=True, target_se=target_se, seed=seed,
                               sketch=basis.shape[0], sketched_trace=exact, info=op.describe())

    def deflate(z: torch.Tensor) -> torch.Tensor:
        return z - basis.T @ (basis @ z)  # (I − QQᵀ) z

    ok = _sample(op, stats, exact, deflate, gen, target_se, rtol, min_samples, max_samples)
    return TraceResult(trace=exact + stats.mean, se=stats.se(), method="krylov-hutch++", samples=stats.n,
                       products=op.products - start, converged=ok, target_se=target_se, seed=seed,
                       sketch=basis.shape[0], sketched_trace=exact, info=op.describe())
