"""Top eigenvalues of a symmetric operator: Lanczos with full reorthogonalisation (default) or power iteration
with deflation.

Lanczos (Golub & Van Loan, *Matrix Computations*, 4th ed., Alg. 10.1.1): from a unit start vector q₁ build an
orthonormal basis Q_m of the Krylov space span{q₁, Hq₁, …, H^{m−1}q₁} and the tridiagonal T_m = Q_mᵀ H Q_m
(diagonal α, off-diagonal β):

    w = H q_j − α_j q_j − β_{j−1} q_{j−1},   α_j = q_jᵀ H q_j,   β_j = ‖w‖,   q_{j+1} = w / β_j.

In floating point the q_j lose orthogonality as Ritz values converge (Paige), producing spurious copies of
eigenvalues; full reorthogonalisation (w ← w − Q(Qᵀw), done twice, "twice is enough") keeps Q orthonormal to
round-off at O(mP) extra work per step, negligible beside a Hessian-vector product. The Ritz pairs (θ_i, Q_m s_i)
from T_m = S diag(θ) Sᵀ have residual ‖H y_i − θ_i y_i‖ = β_m |s_{m,i}| (free: no extra product), which bounds
the eigenvalue error (|λ − θ_i| ≤ residual for symmetric H, and ≤ residual²/gap once converged). A pair is
converged when residual ≤ tol·|θ_i|.

Power iteration (PyHessian's method): v ← Hv/‖Hv‖, Rayleigh quotient θ = vᵀHv, each new eigenvector kept
orthogonal to those found (deflation by projection). It converges as (λ₂/λ₁)^t — much slower than Lanczos
(≈ exp(−2t√gap)) — and finds the largest *magnitude* eigenvalue; for the algebraically largest it iterates on
H + sI with s = 1.1·|μ|, μ the dominant-magnitude eigenvalue, which makes the spectrum non-negative.

Orderings: ``which="largest"`` (algebraic: the most positive first), ``"magnitude"`` (largest |λ| first) or
``"smallest"`` (algebraic: the most negative first; power iteration runs "largest" on −H).

Start vector (``start``): Lanczos converges in fewer steps the larger the start vector's component along the
wanted eigenvectors (the error shrinks like tan²∠(q₁, v₁) times a Chebyshev factor). A random vector in P
dimensions has tan² ≈ P; the loss gradient lies mostly in the top Hessian eigenspace (Gur-Ari et al. 2018,
"Gradient descent happens in a tiny subspace"). ``"gradient"`` starts from r/‖r‖ + g/‖g‖ (r seeded Gaussian,
g = ∇L, free from the operator's kept gradient graph), which keeps the random part's guarantee (at worst a factor
√2 in the component) and on the CPU VGG saved up to half the products (bench/bench_hessian.py). ``"auto"`` (the
default) uses it when the operator offers the gradient (`HessianOperator.loss_gradient`) and the stopping rule is
``"residual"``, random otherwise. Why not under ``"eigenvalue"``: a start dominated by one eigenvector (the
gradient's, which at a trained point need not be the top one) gives, after 3 steps, a Ritz pair with a tiny residual
and a wide false gap, so the estimated error is tiny and Lanczos stops on the wrong eigenvalue — measured on the
narrow VGG after 600 SGD steps (eval mode): 0.738 instead of λ_max = 0.993 at tol 1e-3 on every seed, and on a
synthetic spectrum with the gradient along v₂ (tests/test_probes_hessian_lanczos_start.py). The residual rule is
safe at the default tol 1e-4; at 1e-2 it can stop there too (one seed of three on the VGG): loose tolerances want
``start="random"``.

Stopping (``criterion``): ``"residual"`` (default) stops when every wanted Ritz pair has ‖Hy − θy‖ ≤ tol·|θ|, which
bounds the eigenvalue error by tol·|θ| and makes the eigenvectors accurate too. ``"eigenvalue"`` stops when the
estimated eigenvalue error min(r, r²/δ) ≤ tol·|θ| (Parlett, *The Symmetric Eigenvalue Problem*, Thm 11.7.1:
|λ − θ| ≤ r²/δ for δ the gap from θ to the rest of the spectrum), with δ estimated by the distance to the nearest
other Ritz value: far fewer products when only the eigenvalue is wanted, but an estimate, not a bound, while the
Ritz values have not yet settled (it is never used before 3 steps).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from bnlab.errors import BnlabError

WHICH: tuple[str, ...] = ("largest", "magnitude", "smallest")
STARTS: tuple[str, ...] = ("auto", "gradient", "random")
CRITERIA: tuple[str, ...] = ("residual", "eigenvalue")


class Operator(Protocol):
    dim: int
    dtype: torch.dtype
    device: torch.device
    products: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class EigenResult:
    """Top-k eigenpairs of a Hessian, with the cost and the evidence of convergence."""

    eigenvalues: list[float]
    eigenvectors: torch.Tensor  # (k, P), unit rows
    residuals: list[float]  # ‖H v − λ v‖ per pair
    products: int  # Hessian-vector products used
    converged: bool  # every residual ≤ tol·|λ|
    steps: int  # Lanczos steps or power iterations (all pairs together)
    method: str
    which: str
    tol: float
    seed: int
    info: dict[str, Any] = field(default_factory=dict)  # the operator's describe(): bn_mode, params, dim, …

    def to_dict(self) -> dict[str, Any]:
        """Plain data (eigenvectors left out)."""
        return {"eigenvalues": self.eigenvalues, "residuals": self.residuals, "products": self.products,
                "converged": self.converged, "steps": self.steps, "method": self.method, "which": self.which,
                "tol": self.tol, "seed": self.seed, **self.info}


def _order(values: torch.Tensor, which: str) -> torch.Tensor:
    """Indices of `values` best first under ordering `which`."""
    key = values if which == "largest" else -values if which == "smallest" else values.abs()
    return torch.argsort(key, descending=True)


def _converged(theta: torch.Tensor, resid: torch.Tensor, tol: float) -> bool:
    scale = torch.clamp(theta.abs(), min=1e-12 * float(theta.abs().max()) + 1e-300)
    return bool((resid <= tol * scale).all())


def eigenvalue_error_estimates(theta: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """min(r_i, r_i²/δ_i) per Ritz pair, δ_i the distance from θ_i to the nearest other Ritz value (Parlett
    Thm 11.7.1 with δ estimated from the Ritz values); just r_i while there are fewer than 3 Ritz values."""
    if len(theta) < 3:
        return resid.clone()
    gaps = (theta[:, None] - theta[None, :]).abs()  # (m, m)
    gaps.fill_diagonal_(float("inf"))
    delta = gaps.min(dim=1).values  # (m,)
    return torch.minimum(resid, resid * resid / delta.clamp(min=1e-300))


@dataclass
class LanczosRun:
    """α (m,), β (m,) with β[m−1] the norm of the last residual, the basis (m, P), and whether it broke down
    (β ≈ 0: the Krylov space is invariant, the Ritz values are exact eigenvalues)."""

    alpha: torch.Tensor
    beta: torch.Tensor
    basis: torch.Tensor
    breakdown: bool

    def tridiagonal(self) -> torch.Tensor:
        """T_m in float64, (m, m)."""
        a, b = self.alpha.double(), self.beta.double()
        return torch.diag(a) + torch.diag(b[:-1], 1) + torch.diag(b[:-1], -1)

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(θ (m,), S (m, m), residual bounds (m,)) from T_m = S diag(θ) Sᵀ."""
        theta, s = torch.linalg.eigh(self.tridiagonal())
        resid = torch.zeros_like(theta) if self.breakdown else float(self.beta[-1]) * s[-1].abs()
        return theta, s, resid


def lanczos(op: Operator, start: torch.Tensor, max_steps: int, *, reorthogonalise: bool = True,
            stop: Any = None) -> LanczosRun:
    """Run Lanczos from `start` for at most `max_steps` steps (≤ P); `stop(run)` (optional) is asked after
    every step whether to finish early."""
    dim = op.dim
    steps = min(max_steps, dim)
    basis = torch.zeros(steps, dim, dtype=op.dtype, device=op.device)  # (m, P)
    alpha = torch.zeros(steps, dtype=torch.float64)
    beta = torch.zeros(steps, dtype=torch.float64)
    q = start.to(op.dtype) / start.norm()
    breakdown = False
    m = 0
    for j in range(steps):
        basis[j] = q
        w = op.matvec(q)  # (P,)
        alpha[j] = float(q @ w)
        w = w - alpha[j].item() * q
        if j > 0:
            w = w - beta[j - 1].item() * basis[j - 1]
        if reorthogonalise:
            for _ in range(2):  # "twice is enough" (Kahan, Parlett)
                w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # (P,)
        beta[j] = float(w.norm())
        m = j + 1
        if not (math.isfinite(float(alpha[j])) and math.isfinite(float(beta[j]))):
            raise BnlabError("the Hessian-vector product is not finite (the loss or its gradient overflowed: a "
                             "diverged point?); no eigenvalue can be computed there")
        scale = max(float(alpha[: j + 1].abs().max()), float(beta[:j].abs().max()) if j else 0.0)  # ≈ ‖T_j‖
        if beta[j] <= 10 * torch.finfo(op.dtype).eps * max(scale, 1e-300) * math.sqrt(dim):
            breakdown = True
            break
        run = LanczosRun(alpha[:m], beta[:m], basis[:m], False)
        if stop is not None and stop(run):
            break
        q = w / beta[j]
    return LanczosRun(alpha[:m], beta[:m], basis[:m], breakdown or m == dim)


def _random_start(dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    v = torch.randn(dim, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)  # (P,)
    return v / v.norm()


WARM_MIX = 0.1  # weight of the gradient and of the random part beside the previous eigenvectors in a warm start


def _warm_start(op: Operator, previous: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Σ of the previous unit eigenvectors, plus WARM_MIX × (the unit loss gradient and a seeded random vector):
    the random part keeps a cold start's guarantee of overlap with every eigenvector (only weaker by WARM_MIX)."""
    prev = previous.to(dtype=op.dtype, device=op.device).reshape(-1, op.dim)  # (k, P)
    if not bool(torch.isfinite(prev).all()) or float(prev.norm()) == 0.0:
        return r, "random"
    q = (prev / prev.norm(dim=1, keepdim=True)).sum(0) + WARM_MIX * r  # (P,)
    if callable(getattr(op, "loss_gradient", None)):
        g = op.loss_gradient().to(dtype=op.dtype, device=op.device)  # type: ignore[attr-defined]
        if math.isfinite(float(g.norm())) and float(g.norm()) > 0:
            q = q + WARM_MIX * g / g.norm()
    return q, "warm"


def _start_vector(op: Operator, start: str | torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, str]:
    """(start vector, the kind used): seeded Gaussian, Gaussian + the normalised loss gradient, or a warm start
    from a tensor of previous eigenvectors, (P,) or (k, P)."""
    r = _random_start(op.dim, generator, op.dtype, op.device)  # (P,) unit
    if torch.is_tensor(start):
        if start.shape[-1] != op.dim:
            raise BnlabError(f"a warm start needs vectors of length {op.dim}, got shape {tuple(start.shape)}")
        return _warm_start(op, start, r)
    if start not in STARTS:
        raise BnlabError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
    has_gradient = callable(getattr(op, "loss_gradient", None))
    if start == "gradient" and not has_gradient:
        raise BnlabError("start='gradient' needs a Hessian operator of a loss (it mixes in the loss gradient); "
                         "use start='random'")
    if start == "random" or not has_gradient:
        return r, "random"
    g = op.loss_gradient().to(dtype=op.dtype, device=op.device)  # type: ignore[attr-defined]  # (P,)
    norm = float(g.norm())
    if not math.isfinite(norm) or norm == 0.0:  # at a stationary point the gradient carries no direction
        return r, "random"
    return r + g / norm, "gradient"


def _check(op: Operator, k: int, which: str, tol: float) -> None:
    if which not in WHICH:
        raise BnlabError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if not 1 <= k <= op.dim:
        raise BnlabError(f"k must be between 1 and the number of parameters ({op.dim}), got {k}")
    if not tol > 0:
        raise BnlabError(f"tol must be positive, got {tol}")


def lanczos_eigenpairs(op: Operator, *, k: int = 1, which: str = "largest", tol: float = 1e-4,
                       max_steps: int | None = None, seed: int = 0, start: str | torch.Tensor = "auto",
                       criterion: str = "residual") -> EigenResult:
    """Top-k eigenpairs of `op` by Lanczos with full reorthogonalisation, stopping when all k have converged
    under `criterion` (module doc: ``"residual"`` or ``"eigenvalue"``); `start` picks the start vector: "auto",
    "gradient", "random", or a tensor of eigenvectors from a nearby point (a warm start, e.g. the previous probe of
    a training run: same stopping rule, usually far fewer products)."""
    _check(op, k, which, tol)
    if criterion not in CRITERIA:
        raise BnlabError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    max_steps = min(op.dim, max_steps if max_steps is not None else max(100, 4 * k))
    gen = torch.Generator().manual_seed(seed)
    start_products = op.products

    def errors(theta: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        return resid if criterion == "residual" else eigenvalue_error_estimates(theta, resid)

    def done(run: LanczosRun) -> bool:
        if len(run.alpha) < k:
            return False
        theta, _, resid = run.ritz()
        idx = _order(theta, which)[:k]
        return _converged(theta[idx], errors(theta, resid)[idx], tol)

    if isinstance(start, str) and start == "auto" and criterion == "eigenvalue":
        start = "random"  # the gradient's component can end an error estimate early on λ₂ (module doc)
    q1, start_used = _start_vector(op, start, gen)
    run = lanczos(op, q1, max_steps, stop=done)
    theta, s, resid = run.ritz()
    idx = _order(theta, which)[: min(k, len(theta))]
    vectors = (s[:, idx].T.to(op.dtype) @ run.basis)  # (k, m) @ (m, P) -> (k, P)
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return EigenResult(
        eigenvalues=[float(t) for t in theta[idx]], eigenvectors=vectors,
        residuals=[float(r) for r in resid[idx]], products=op.products - start_products,
        converged=len(idx) == k and _converged(theta[idx], errors(theta, resid)[idx], tol), steps=len(run.alpha),
        method="lanczos", which=which, tol=tol, seed=seed,
        info={**op.describe(), "start": start_used, "criterion": criterion})


class _Negated:
    """−H behind the operator interface (its products are counted on the wrapped operator)."""

    def __init__(self, op: Operator) -> None:
        self.op, self.dim, self.dtype, self.device = op, op.dim, op.dtype, op.device

    @property
    def products(self) -> int:
        return self.op.products

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return -self.op.matvec(v)

    def describe(self) -> dict[str, Any]:
        return self.op.describe()


def power_eigenpairs(op: Operator, *, k: int = 1, which: str = "magnitude", tol: float = 1e-4,
                     max_iter: int = 1000, seed: int = 0) -> EigenResult:
    """Top-k eigenpairs by power iteration with deflation (each pair stops when ‖Hv − θv‖ ≤ tol·|θ|)."""
    _check(op, k, which, tol)
    if which == "smallest":  # the largest of −H, negated back
        res = power_eigenpairs(_Negated(op), k=k, which="largest", tol=tol, max_iter=max_iter, seed=seed)
        return dataclasses.replace(res, eigenvalues=[-v for v in res.eigenvalues], which="smallest",
                                   info=op.describe())
    gen = torch.Generator().manual_seed(seed)
    start_products = op.products
    found: list[torch.Tensor] = []
    values: list[float] = []
    resids: list[float] = []
    iterations = 0

    def project(v: torch.Tensor) -> torch.Tensor:
        for u in found:
            v = v - (u @ v) * u
        return v / v.norm()

    def one_pair(shift: float, last: bool) -> tuple[float, torch.Tensor, float, bool, float]:
        """One eigenpair of the deflated (shifted) operator. A pair that later ones are deflated against is
        iterated 100x tighter: its error is the floor of every later pair's residual."""
        nonlocal iterations
        pair_tol = tol if last else tol / 100
        v = project(_random_start(op.dim, gen, op.dtype, op.device))
        theta, r, best, best_at, hv_norm = 0.0, math.inf, math.inf, 0, 0.0
        for t in range(max_iter):
            iterations += 1
            w = op.matvec(v)  # (P,)
            theta = float(v @ w)
            hv_norm = float(w.norm())  # → ‖H‖ on the deflated space as v converges
            r = float((w - theta * v).norm())
            if r <= pair_tol * max(abs(theta), 1e-300):
                break
            if r < 0.99 * best:
                best, best_at = r, t
            elif t - best_at > 50:  # stagnated at round-off (or a tie): stop and report it
                break
            v = project(w + shift * v)
        return theta, v, r, r <= tol * max(abs(theta), 1e-300), hv_norm

    shift = 0.0
    all_ok = True
    if which == "largest":
        # the dominant-magnitude eigenvalue μ: if positive (and converged) it *is* the largest; either way
        # ‖Hv‖ ≈ ‖H‖ bounds the spectrum, so H + 1.1‖Hv‖ I is positive semi-definite
        mu, v, r, ok, hv_norm = one_pair(0.0, k == 1)
        if mu > 0 and ok:
            found.append(v)
            values.append(mu)
            resids.append(r)
        shift = 1.1 * max(abs(mu), hv_norm)
    while len(values) < k:
        theta, v, r, ok, _ = one_pair(shift, len(values) == k - 1)
        found.append(v)
        values.append(theta)
        resids.append(r)
        all_ok &= ok
    order = _order(torch.tensor(values, dtype=torch.float64), which).tolist()
    return EigenResult(
        eigenvalues=[values[i] for i in order], eigenvectors=torch.stack([found[i] for i in order]),
        residuals=[resids[i] for i in order], products=op.products - start_products, converged=all_ok,
        steps=iterations, method="power", which=which, tol=tol, seed=seed, info=op.describe())
