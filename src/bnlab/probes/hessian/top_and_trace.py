"""λ_max and tr H from one Lanczos run: the Krylov basis that finds the top eigenvalue is also the sketch of
Krylov-aware Hutch++.

Krylov-aware Hutch++ (Chen & Hallman, SIMAX 2023; `bnlab.probes.hessian.trace`) needs an orthonormal Q whose span
holds H's dominant eigenvectors: tr H = tr(QᵀHQ) + tr((I−QQᵀ)H(I−QQᵀ)), the first exact and free from Lanczos
(tr T_m = Σ α_j with full reorthogonalisation), the second estimated by Hutchinson on deflated Rademacher vectors.
The remainder's estimator is unbiased for *any* Q independent of those vectors, so Q may be the very basis the
λ_max Lanczos built from the gradient-plus-random start (`lanczos.py`): the run goes on until λ_max has converged
(`criterion`, `tol`) *and* it holds at least `sketch` vectors, then the Hutchinson samples are drawn fresh. The
separate estimators took (λ_max steps) + `sketch` + samples products; this takes max(λ_max steps, `sketch`) +
samples, and the gradient start puts the top eigenvectors in the sketch sooner than a random one does.
"""

from __future__ import annotations

import torch

from bnlab.errors import BnlabError
from bnlab.probes.hessian.lanczos import (
    CRITERIA,
    EigenResult,
    LanczosRun,
    Operator,
    _converged,
    _order,
    _start_vector,
    eigenvalue_error_estimates,
    lanczos,
)
from bnlab.probes.hessian.trace import TraceResult, _RunningMean, _sample, _validate


def top_and_trace(op: Operator, *, tol: float = 1e-2, criterion: str = "eigenvalue", sketch: int = 10,
                  rtol: float | None = None, target_se: float | None = None, min_samples: int = 10,
                  max_samples: int = 100, max_steps: int | None = None,
                  seed: int = 0) -> tuple[EigenResult, TraceResult]:
    """(λ_max as a one-pair `EigenResult`, tr H ± SE as a `TraceResult`) from one Lanczos run of
    max(steps to converge, `sketch`) steps plus Hutchinson samples on the rest (module doc). The trace's
    `products` count only its Hutchinson samples and the sketch steps beyond those λ_max needed."""
    _validate(target_se, rtol, min_samples, max_samples)
    if criterion not in CRITERIA:
        raise BnlabError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    if not tol > 0 or sketch < 1:
        raise BnlabError(f"need tol > 0 and sketch >= 1, got {tol} and {sketch}")
    gen = torch.Generator().manual_seed(seed)
    start = op.products
    steps_cap = min(op.dim, max(max_steps if max_steps is not None else 100, sketch))
    converged_at: list[int] = []

    def converged(run: LanczosRun) -> bool:
        theta, _, resid = run.ritz()
        idx = _order(theta, "largest")[:1]
        errors = resid if criterion == "residual" else eigenvalue_error_estimates(theta, resid)
        return _converged(theta[idx], errors[idx], tol)

    def done(run: LanczosRun) -> bool:
        if not converged_at and converged(run):
            converged_at.append(op.products - start)
        return bool(converged_at) and len(run.alpha) >= min(sketch, op.dim)

    q1, start_used = _start_vector(op, "auto", gen)
    run = lanczos(op, q1, steps_cap, stop=done)
    theta, s, resid = run.ritz()
    idx = _order(theta, "largest")[:1]
    vector = s[:, idx].T.to(op.dtype) @ run.basis  # (1, m) @ (m, P) -> (1, P)
    lanczos_products = op.products - start
    eig = EigenResult(eigenvalues=[float(theta[idx[0]])], eigenvectors=vector / vector.norm(dim=1, keepdim=True),
                      residuals=[float(resid[idx[0]])], products=converged_at[0] if converged_at else lanczos_products,
                      converged=converged(run), steps=len(run.alpha), method="lanczos", which="largest", tol=tol,
                      seed=seed, info={**op.describe(), "start": start_used, "criterion": criterion,
                                       "shared_with_trace": True})
    basis = run.basis  # (m, P), orthonormal rows
    exact = float(run.alpha.sum())  # tr(QᵀHQ) = tr(T_m)
    stats = _RunningMean()
    if run.breakdown and basis.shape[0] == op.dim:  # the basis spans everything: the trace is exact
        ok = True
    else:
        ok = _sample(op, stats, exact, lambda z: z - basis.T @ (basis @ z), gen, target_se, rtol, min_samples,
                     max_samples)
    tr = TraceResult(trace=exact + stats.mean, se=stats.se() if stats.n else 0.0, method="krylov-hutch++",
                     samples=stats.n, products=op.products - start - eig.products, converged=ok,
                     target_se=target_se, seed=seed, sketch=basis.shape[0], sketched_trace=exact,
                     info={**op.describe(), "sketch_from": "the lambda_max Lanczos run"})
    return eig, tr
