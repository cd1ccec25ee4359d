"""Every Hessian eigenvalue above a threshold (2/η by default), tracked through training with a warm-started block
solver that grows its block as eigenvalues cross the threshold, counting Hessian-vector products.

At the edge of stability more than one eigenvalue can sit at 2/η (Cohen et al. 2021; Damian et al. 2023; the
"central flows" of Cohen, Damian et al. 2024 warm-start LOBPCG and grow k until every eigenvalue above 2/η is
tracked). One call of `eigenvalues_above` returns all of them, each to a relative residual `tol`, and one more
eigenpair below the threshold, also converged to `tol` (the *witness*), so none above it was left out — up to the
caveat of every iterative solver: an eigenvector the block has no component along cannot be found (the random
columns make that a probability-zero event; the tests check the count against dense eigh, including an eigenvalue
just above the threshold). A cheaper witness (θ_k + ‖r_k‖ below the threshold, unconverged) was tried and
dropped: a Ritz vector still mixing λ = 50.3 and 47 passed it at threshold 50.

Solver: LOBPCG (Knyazev 2001, "Toward the optimal preconditioned eigensolver", Alg. 4.1, no preconditioner) for the
largest eigenvalues of a symmetric operator H. With a block X (P, m) of Ritz vectors, residuals R = H X − X Θ, and
the previous search directions P_dir, each step does the Rayleigh–Ritz procedure on S = [X, R_active, P_dir]: the
Ritz pairs of Sᵀ H S y = θ Sᵀ S y are the next X; P_dir is the part of the new X that came from [R, P_dir]. Only
residuals of unconverged wanted columns are multiplied ("soft locking"), so a step costs as many products as there
are unconverged columns among the k wanted. The Gram matrix SᵀS is eigendecomposed and directions with eigenvalue
below 1e-10 of its largest dropped, which keeps the reduction stable in float64 without orthogonalising H S (no
extra products). The block carries `guard` extra columns beyond the wanted k (a wider block converges faster; their
own convergence is not waited for). A column is converged when ‖H x − θ x‖ ≤ tol·|θ|.

Growing k: start with k = (the count found at the previous call) + 1, or `k0`; when LOBPCG has converged the top k
and the k-th is still ≥ threshold, k grows to one past the block's Ritz values above the threshold (the guard
columns look ahead), or ×`grow` when every column is above it, and LOBPCG goes on from the current block (new
columns seeded random; nothing is thrown away, and H times the current block is reused, so only the new columns
cost products), until the k-th eigenvalue is witnessed below the threshold.

Warm start (`start`): the previous call's result; its final block (the eigenvectors above the threshold, the witness
and `warm_guard` of its guard columns) is the new start block, with k = its count + 1. Between nearby training points
the eigenvectors move little, so the first residuals are already small. One guard column, not `guard`: the previous
block's guard columns were never converged (their Ritz values stay in the bulk, far below the witness), so they carry
little; one keeps the witness's convergence rate (measured in bench/bench_tracked_spectrum.py: 0 guard columns cost
more products, 2 cost more too).

Extrapolation (`extrapolate=True`): along a training run the eigenvectors drift smoothly, so the start block is
predicted one probe ahead, X_t + (X_t − X_{t−1}·R) (R: the orthogonal c × c Procrustes rotation aligning the earlier
block to the newer, so sign flips and rotations inside a block are not counted as motion), when that linear rule
would have predicted the previous call's result better than staying put — a backtest on the last three results
that costs no product. Under SGD, where each probe sees a new batch and the vectors jump, the backtest keeps the
plain warm start. The prediction only changes where LOBPCG starts: each returned pair still meets the same residual
test. Numerics: the products are only as accurate as the operator's dtype, so the Rayleigh–Ritz step drops the
directions of S whose Gram eigenvalue is below max(1e-10, 10·eps(dtype)) of the largest (with 1e-10 and float32
products, a near-dependent direction amplified the products' rounding into Ritz values of 1e52).

A caveat measured in the bench: a residual test cannot prove that no eigenvalue above was missed. A cold start from
random columns converged, at 1e-3, to the second of two eigenvalues 0.36 apart (50.18 and 49.82, threshold 50)
before the first had grown into its block; a warm start, whose block already holds both, did not. Side effects: none
(the operator never writes the model)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from bnlab.errors import BnlabError
from bnlab.probes.hessian.lanczos import Operator


@dataclass
class AboveThreshold:
    """All eigenvalues ≥ `threshold` (largest first) and the witness below it, with the cost."""

    eigenvalues: list[float]  # every eigenvalue ≥ threshold, largest first
    witness: float | None  # the next eigenvalue (< threshold); None if the block reached max_k first
    eigenvectors: torch.Tensor  # (P, count + 1): those above, then the witness: the next call's warm start
    residuals: list[float]  # ‖Hx − θx‖ of the returned pairs
    threshold: float
    products: int
    iterations: int
    k: int  # final block's wanted size (count + 1 unless capped)
    converged: bool  # every returned pair within tol and the witness below the threshold
    tol: float
    info: dict[str, Any] = field(default_factory=dict)  # the operator's describe(): bn_mode, bn_batch_size, …
    block: torch.Tensor | None = None  # (P, m) the final LOBPCG block, guard columns included: the best warm start
    # `eigenvectors` of this call and up to 2 earlier ones, newest first (what extrapolation needs; it keeps two more
    # (P, count + 1) blocks alive than a plain warm start would)
    history: tuple[torch.Tensor, ...] = ()

    @property
    def count(self) -> int:
        return len(self.eigenvalues)

    def to_dict(self) -> dict[str, Any]:
        return {"eigenvalues": self.eigenvalues, "count": self.count, "witness": self.witness,
                "residuals": self.residuals, "threshold": self.threshold, "products": self.products,
                "iterations": self.iterations, "k": self.k, "converged": self.converged, "tol": self.tol, **self.info}


def _apply(op: Operator, block: torch.Tensor) -> torch.Tensor:
    """H @ block in float64, (P, b) -> (P, b); counts b products on the operator."""
    if block.shape[1] == 0:
        return block.clone()
    return op.matvec(block.to(op.dtype)).to(torch.float64)


def _rayleigh_ritz(s: torch.Tensor, hs: torch.Tensor, m: int, drop: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-m Ritz pairs of H on span(S): (θ (m,) descending, C (n, m) with S C the Ritz vectors), S not
    necessarily orthonormal; directions of S with Gram eigenvalue below `drop` of the largest are dropped (module
    doc: 1/√d amplifies the products' rounding)."""
    gram = s.T @ s  # (n, n)
    d, v = torch.linalg.eigh(0.5 * (gram + gram.T))
    keep = d > drop * float(d.max())
    t = v[:, keep] / d[keep].sqrt()  # (n, r): S t is orthonormal
    g = t.T @ (s.T @ hs) @ t  # (r, r)
    theta, y = torch.linalg.eigh(0.5 * (g + g.T))
    order = torch.argsort(theta, descending=True)[:m]
    return theta[order], t @ y[:, order]


def _first_block(op: Operator, x0: torch.Tensor, hx0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, H Q) for the starting block: Q spans x0. Where `hx0` (P, j) = H x0[:, :j] is already known (the
    orthonormal block of an earlier run on the same operator, grown by new columns), only the new columns are
    multiplied: H is linear, so no product is spent twice."""
    x0 = x0.to(torch.float64)
    if hx0 is None or hx0.shape[1] == 0:
        q, _ = torch.linalg.qr(x0)  # (P, m)
        return q, _apply(op, q)
    j = hx0.shape[1]
    known = x0[:, :j]  # (P, j) orthonormal already: Ritz vectors of an orthonormalised basis
    fresh = x0[:, j:] - known @ (known.T @ x0[:, j:])  # (P, m - j) orthogonal to the known columns
    fresh, _ = torch.linalg.qr(fresh)
    return torch.cat([known, fresh], 1), torch.cat([hx0.to(torch.float64), _apply(op, fresh)], 1)


def lobpcg_largest(op: Operator, x0: torch.Tensor, k: int, *, tol: float, max_iter: int,
                   hx0: torch.Tensor | None = None) -> dict[str, Any]:
    """The k largest eigenpairs of `op` by LOBPCG from the block `x0` (P, m ≥ k); see the module doc. `hx0`
    (P, j): H x0[:, :j] where already known, with those j columns orthonormal (see `_first_block`).
    Returns {"x" (P, m), "hx" (P, m), "theta" (m,), "resid" (m,), "iterations", "converged"} in float64."""
    m = x0.shape[1]
    drop = max(1e-10, 10 * torch.finfo(op.dtype).eps)  # the products' precision bounds what S can resolve
    q, hq = _first_block(op, x0, hx0)  # (P, m), (P, m)
    theta, c = _rayleigh_ritz(q, hq, m, drop)
    x, hx = q @ c, hq @ c  # (P, m)
    p_dir = hp = None
    resid = torch.full((m,), math.inf, dtype=torch.float64)
    it = 0
    for it in range(1, max_iter + 1):
        r = hx - x * theta  # (P, m)
        resid = r.norm(dim=0)
        done = resid <= tol * theta.abs().clamp_min(1e-300)
        if bool(done[:k].all()):
            return {"x": x, "hx": hx, "theta": theta, "resid": resid, "iterations": it - 1, "converged": True}
        active = ~done
        active[k:] = False  # guard columns ride along through the Rayleigh–Ritz step, at no product of their own
        w = r[:, active]  # soft locking: only the unconverged wanted columns' residuals
        w = w - x @ (x.T @ w)  # (P, a) against the current block, for conditioning
        w = w / w.norm(dim=0).clamp_min(1e-300)
        hw = _apply(op, w)
        parts, hparts = [x, w], [hx, hw]
        if p_dir is not None:
            parts.append(p_dir)
            hparts.append(hp)
        s, hs = torch.cat(parts, 1), torch.cat(hparts, 1)  # (P, n)
        theta, c = _rayleigh_ritz(s, hs, m, drop)
        x_new, hx_new = s @ c, hs @ c
        p_dir, hp = s[:, m:] @ c[m:], hs[:, m:] @ c[m:]  # the part that came from [W, P]
        norms = p_dir.norm(dim=0).clamp_min(1e-300)
        p_dir, hp = p_dir / norms, hp / norms
        x, hx = x_new, hx_new
        if not bool(torch.isfinite(theta).all()):
            raise BnlabError("the Hessian-vector product is not finite (a diverged point?); no eigenvalue there")
    r = hx - x * theta
    resid = r.norm(dim=0)
    ok = bool((resid[:k] <= tol * theta[:k].abs().clamp_min(1e-300)).all())
    return {"x": x, "hx": hx, "theta": theta, "resid": resid, "iterations": it, "converged": ok}


def _warm_block(start: Any, dim: int) -> tuple[torch.Tensor | None, int]:
    """(block (P, j) float64 or None, the k it implies) from a previous `AboveThreshold` (its whole block, k = its
    count + 1) or a tensor of vectors as columns (P, j) (k = j)."""
    if start is None:
        return None, 0
    if isinstance(start, AboveThreshold):
        vectors = start.block if start.block is not None else start.eigenvectors
        k = start.count + 1
    else:
        vectors, k = start, 0
    if not torch.is_tensor(vectors) or vectors.dim() not in (1, 2) or vectors.shape[0] != dim:
        shape = tuple(vectors.shape) if torch.is_tensor(vectors) else type(vectors).__name__
        raise BnlabError(f"a warm start needs vectors of length {dim} as columns (P, j), got {shape}")
    block = vectors.reshape(dim, -1).to(torch.float64)
    if not bool(torch.isfinite(block).all()):
        return None, 0
    return block, k or block.shape[1]


def _aligned(earlier: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
    """earlier·R with R the orthogonal c × c matrix closest to aligning earlier's columns with newer's (orthogonal
    Procrustes: earlierᵀ newer = U S Vᵀ, R = U Vᵀ). (P, c), (P, c) -> (P, c)."""
    u, _, vh = torch.linalg.svd(earlier.T @ newer)  # (c, c)
    return earlier @ (u @ vh)


def _miss(predicted: torch.Tensor, actual: torch.Tensor) -> float:
    """‖(I − Q Qᵀ) actual‖_F, Q an orthonormal basis of span(predicted): how much of the actual block lies outside
    the predicted subspace (all Rayleigh–Ritz can use of a start block is its span)."""
    q, _ = torch.linalg.qr(predicted)
    return float((actual - q @ (q.T @ actual)).norm())


def extrapolated_start(history: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, bool]:
    """The start block one probe ahead of `history` (newest first; module doc): (X (P, c), whether it is the
    linear prediction X_t + (X_t − X_{t−1}R) rather than X_t itself). The linear rule is used when, tried on the
    previous call (predicting X_t from X_{t−1} and X_{t−2}), it missed less of X_t than X_{t−1} alone."""
    c = min(h.shape[1] for h in history)
    hist = [h[:, :c].to(torch.float64) for h in history]  # (P, c) each; only the common columns have a past
    if len(hist) < 3:
        return hist[0], False
    linear = 2 * hist[1] - _aligned(hist[2], hist[1])
    if _miss(linear, hist[0]) >= _miss(hist[1], hist[0]):
        return hist[0], False
    return 2 * hist[0] - _aligned(hist[1], hist[0]), True


def eigenvalues_above(op: Operator, threshold: float, *, start: Any = None, k0: int = 1, guard: int = 2,
                      warm_guard: int = 1, extrapolate: bool = True, grow: float = 2.0, tol: float = 1e-3,
                      max_iter: int = 200, max_k: int = 64, seed: int = 0) -> AboveThreshold:
    """Every eigenvalue of `op` ≥ `threshold`, with the witness below it (module doc). `start`: the previous call's
    `AboveThreshold` (or (P, j) vectors) for a warm start, which then carries `warm_guard` guard columns instead of
    `guard` and, with `extrapolate`, is predicted one probe ahead from the results' history; `k0`: the first
    block's wanted size without a warm start."""
    if not math.isfinite(threshold):
        raise BnlabError(f"threshold must be a finite number, got {threshold}")
    if not (tol > 0 and k0 >= 1 and guard >= 0 and warm_guard >= 0 and grow > 1 and max_k >= 1):
        raise BnlabError("need tol > 0, k0 >= 1, guard >= 0, warm_guard >= 0, grow > 1 and max_k >= 1")
    gen = torch.Generator().manual_seed(seed)
    first = op.products
    warm, warm_k = _warm_block(start, op.dim)
    k = min(max(k0, warm_k), max_k, op.dim)
    block = warm if warm is not None else torch.zeros(op.dim, 0, dtype=torch.float64)
    history = tuple(start.history) if isinstance(start, AboveThreshold) and warm is not None else ()
    predicted = False
    if warm is not None:
        guard = warm_guard
        if extrapolate and len(history) >= 2:
            ahead, predicted = extrapolated_start(history)
            block = torch.cat([ahead, block[:, ahead.shape[1]:]], 1)  # (P, j): the predicted columns, then the rest
    block_h = None  # H block where known: after a growth, not for a warm start (an earlier H)
    iterations = 0
    while True:
        m = min(k + guard, op.dim)
        fill = torch.randn(op.dim, max(0, m - block.shape[1]), generator=gen, dtype=torch.float64)
        x0 = torch.cat([block[:, :m], fill], 1)  # (P, m)
        run = lobpcg_largest(op, x0, k, tol=tol, max_iter=max_iter,
                             hx0=None if block_h is None else block_h[:, :m])
        iterations += run["iterations"]
        theta = run["theta"]
        if float(theta[k - 1]) < threshold or k >= min(max_k, op.dim) or not run["converged"]:
            break
        block, block_h = run["x"], run["hx"]
        # the guard columns' Ritz values (lower bounds of λ_{k+1}, …) look ahead: one past those above the
        # threshold, or ×grow when the whole block is above it
        seen = int((theta >= threshold).sum())
        k = min(max(k + 1, math.ceil(k * grow) if seen == m else seen + 1), max_k, op.dim)
    above = [i for i in range(k) if float(theta[i]) >= threshold]
    has_witness = float(theta[k - 1]) < threshold
    keep = above + ([len(above)] if has_witness else [])
    vectors = run["x"][:, keep].to(op.dtype)  # (P, count + 1)
    return AboveThreshold(
        eigenvalues=[float(theta[i]) for i in above], witness=float(theta[len(above)]) if has_witness else None,
        eigenvectors=vectors, residuals=[float(run["resid"][i]) for i in keep],
        threshold=float(threshold), products=op.products - first, iterations=iterations, k=k,
        converged=bool(run["converged"]) and has_witness, tol=tol,
        info={**op.describe(), "start": "warm" if warm is not None else "random", "extrapolated": predicted},
        block=run["x"].to(op.dtype), history=(vectors, *history[:2]))
