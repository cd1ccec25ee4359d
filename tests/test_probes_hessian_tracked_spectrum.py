"""Every eigenvalue above a threshold by warm-started, growing LOBPCG: against dense eigh and scipy's lobpcg."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.hessian import MatrixOperator, dense_hessian, hessian_operator
from bnlab.probes.hessian.tracked_spectrum import eigenvalues_above, extrapolated_start, lobpcg_largest

DT = torch.float64


def spectrum_matrix(top: list[float], p: int = 120, seed: int = 0) -> torch.Tensor:
    """Q diag(top ∪ bulk) Qᵀ with a bulk in [−1, 3] well below the outliers (a Hessian-like spectrum)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=DT))
    bulk = torch.rand(p - len(top), generator=gen, dtype=DT) * 4 - 1
    return q @ torch.diag(torch.cat([torch.tensor(top, dtype=DT), bulk])) @ q.T


@pytest.mark.parametrize("top, threshold", [([50.0, 40.0, 30.0, 25.0, 21.0, 12.0], 20.0),  # k grows 1 → 2 → 4 → 8
                                            ([9.0, 8.0], 20.0),  # nothing above: the witness alone
                                            ([50.0], 20.0),
                                            ([50.3, 47.0], 50.0)])  # λ_max just above: no early witness
def test_finds_every_eigenvalue_above_like_dense_eigh(top: list[float], threshold: float):
    a = spectrum_matrix(top)
    want = torch.linalg.eigvalsh(a).flip(0)
    op = MatrixOperator(a)
    res = eigenvalues_above(op, threshold, tol=1e-8)
    n = int((want >= threshold).sum())
    assert res.count == n and res.converged
    assert res.eigenvalues == pytest.approx(want[:n].tolist(), rel=1e-10)
    assert res.witness < threshold and res.witness <= float(want[n]) + 1e-9  # a Ritz value bounds λ_k from below
    assert res.eigenvectors.shape == (a.shape[0], n + 1)
    v = res.eigenvectors
    assert torch.allclose(v.T @ v, torch.eye(n + 1, dtype=DT), atol=1e-6)  # orthonormal eigenvectors
    assert res.products == op.products > 0  # every product counted


def test_a_grown_block_multiplies_only_its_new_columns():
    """When k grows inside one call, H X of the block so far is known (H is linear): the restarted LOBPCG spends
    products only on the new columns, and reaches the same eigenpairs as a restart that multiplies them all."""
    a = spectrum_matrix([50.0, 40.0, 30.0, 25.0, 21.0, 12.0])
    gen = torch.Generator().manual_seed(3)
    op = MatrixOperator(a)
    small = lobpcg_largest(op, torch.randn(a.shape[0], 3, generator=gen, dtype=DT), 1, tol=1e-8, max_iter=200)
    x0 = torch.cat([small["x"], torch.randn(a.shape[0], 3, generator=gen, dtype=DT)], 1)  # (P, 6): 3 new
    reuse, again = MatrixOperator(a), MatrixOperator(a)
    grown = lobpcg_largest(reuse, x0, 4, tol=1e-8, max_iter=200, hx0=small["hx"])
    plain = lobpcg_largest(again, x0, 4, tol=1e-8, max_iter=200)
    want = torch.linalg.eigvalsh(a).flip(0)[:4]
    assert grown["converged"] and plain["converged"]
    assert grown["theta"][:4].tolist() == pytest.approx(want.tolist(), rel=1e-10)
    assert plain["theta"][:4].tolist() == pytest.approx(want.tolist(), rel=1e-10)
    x = grown["x"]
    assert torch.allclose(grown["hx"], a @ x, atol=1e-8)  # the reused products are H x indeed
    first = MatrixOperator(a)  # the first block alone: 3 products where the known 3 are reused, 6 otherwise
    lobpcg_largest(first, x0, 4, tol=1e-8, max_iter=0, hx0=small["hx"])
    assert first.products == 3
    lobpcg_largest(first, x0, 4, tol=1e-8, max_iter=0)
    assert first.products == 3 + 6


def test_warm_start_after_a_small_change_costs_fewer_products():
    """A simulated training step: the matrix moves a little and one more eigenvalue crosses the threshold; the
    warm start finds the same eigenvalues as a cold start with fewer products."""
    a = spectrum_matrix([50.0, 40.0, 19.0])
    gen = torch.Generator().manual_seed(5)
    e = torch.randn(a.shape, generator=gen, dtype=DT) * 0.02
    q = torch.linalg.eigh(a).eigenvectors[:, -3]  # the eigenvector of 19: push it over 20
    b = a + (e + e.T) + 3.0 * torch.outer(q, q)
    first = eigenvalues_above(MatrixOperator(a), 20.0, tol=1e-6)
    assert first.count == 2
    cold = eigenvalues_above(MatrixOperator(b), 20.0, tol=1e-6, seed=1)
    warm = eigenvalues_above(MatrixOperator(b), 20.0, tol=1e-6, seed=1, start=first)
    want = torch.linalg.eigvalsh(b).flip(0)
    assert cold.count == warm.count == 3
    assert warm.eigenvalues == pytest.approx(want[:3].tolist(), rel=1e-8)
    assert cold.eigenvalues == pytest.approx(want[:3].tolist(), rel=1e-8)
    assert warm.products < cold.products and warm.info["start"] == "warm"
    plain = eigenvalues_above(MatrixOperator(b), 20.0, tol=1e-6, start=first.eigenvectors)  # bare vectors too
    assert plain.count == 3


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_on_a_bn_net_against_dense_hessian_and_scipy_lobpcg(mode: str):
    from scipy.sparse.linalg import lobpcg

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    x, y = torch.randn(16, 4, dtype=DT), torch.randint(0, 3, (16,))
    model.train()
    with torch.no_grad():
        model(x * 2 + 0.5)
    with hessian_operator(model, F.cross_entropy, (x, y), bn_mode=mode) as op:
        h = dense_hessian(op)[0]
        want = torch.linalg.eigvalsh(h).flip(0)
        threshold = float(want[3] + want[4]) / 2  # exactly four above
        res = eigenvalues_above(op, threshold, tol=1e-7)
        gen = torch.Generator().manual_seed(3)
        x0 = torch.randn(op.dim, 5, generator=gen, dtype=DT).numpy()
        theirs, _ = lobpcg(op.to_scipy(), x0, largest=True, tol=1e-7, maxiter=100)
    assert res.count == 4 and res.converged and res.info["bn_mode"] == mode
    assert res.eigenvalues == pytest.approx(want[:4].tolist(), rel=1e-8)  # error ≈ residual² / gap
    assert res.eigenvalues == pytest.approx(sorted(theirs.tolist(), reverse=True)[:4], rel=1e-6)
    assert res.info["bn_batch_size"] == (16 if mode == "train" else None)


def test_capped_block_is_reported_not_converged_and_bad_input():
    a = spectrum_matrix([50.0, 45.0, 40.0, 35.0])
    res = eigenvalues_above(MatrixOperator(a), 20.0, tol=1e-6, max_k=2)
    assert res.count == 2 and res.witness is None and not res.converged
    with pytest.raises(BnlabError, match="finite"):
        eigenvalues_above(MatrixOperator(a), float("nan"))
    with pytest.raises(BnlabError, match="tol"):
        eigenvalues_above(MatrixOperator(a), 1.0, tol=0.0)
    with pytest.raises(BnlabError, match="warm start"):
        eigenvalues_above(MatrixOperator(a), 1.0, start=torch.ones(7, 2, dtype=DT))


def _moving(a0: torch.Tensor, t: int, *, smooth: bool, speed: float = 0.002) -> torch.Tensor:
    """R(t) A0 R(t)ᵀ: a steady rotation R = exp(t·speed·S) (smooth), or an independent random one at each t (jump)."""
    gen = torch.Generator().manual_seed(7 if smooth else 100 + t)
    s = torch.randn(a0.shape, generator=gen, dtype=DT) * speed
    r = torch.linalg.matrix_exp((s - s.T) * (t if smooth else 1))
    return r @ a0 @ r.T


@pytest.mark.parametrize("smooth", [True, False])
def test_extrapolation_follows_a_steady_drift_and_keeps_still_under_jumps(smooth: bool):
    """Ten probes of a rotating spectrum: the same eigenvalues as dense eigh at each, with or without extrapolation;
    a steady drift is extrapolated (from the third call on: the backtest needs two earlier results) and costs fewer
    products; independent jumps are never extrapolated (the backtest sees the linear rule predict worse)."""
    a0 = spectrum_matrix([50.0, 40.0, 30.0, 25.0, 21.0])
    totals, flags = {}, []
    for extrapolate in (False, True):
        previous, totals[extrapolate] = None, 0
        for t in range(10):
            a = _moving(a0, t, smooth=smooth)
            res = eigenvalues_above(MatrixOperator(a), 20.0, tol=1e-6, start=previous, extrapolate=extrapolate, seed=t)
            want = torch.linalg.eigvalsh(a).flip(0)[:5].tolist()
            assert res.count == 5 and res.converged
            assert res.eigenvalues == pytest.approx(want, rel=1e-6)
            totals[extrapolate] += res.products if t else 0
            if extrapolate:
                flags.append(res.info["extrapolated"])
            previous = res
    if smooth:
        assert flags == [False] * 3 + [True] * 7
        assert totals[True] < 0.85 * totals[False]
    else:
        assert not any(flags) and totals[True] == totals[False]


def test_extrapolated_start_predicts_a_rotation_and_ignores_signs():
    """Unit vectors turning at a steady rate in a plane: the linear prediction misses the next one by O(ω²), staying
    put by O(ω); a sign flip of an earlier vector (eigenvectors have no sign) changes nothing (Procrustes)."""
    from bnlab.probes.hessian.tracked_spectrum import _miss

    w = 0.05
    e1, e2 = torch.eye(50, dtype=DT)[0], torch.eye(50, dtype=DT)[1]
    v = [(math.cos(w * t) * e1 + math.sin(w * t) * e2)[:, None] for t in range(4)]  # (P, 1) each
    ahead, used = extrapolated_start((v[2], v[1], v[0]))
    assert used
    assert _miss(ahead, v[3]) < 0.01 * _miss(v[2], v[3])  # ≈ ω²/2 against ≈ ω
    flipped, used_flipped = extrapolated_start((v[2], -v[1], v[0]))
    assert used_flipped and torch.allclose(flipped, ahead)
    still, used_still = extrapolated_start((v[2], v[1]))  # no backtest possible with two: stay put
    assert not used_still and torch.equal(still, v[2])


def test_float32_products_do_not_blow_up_the_rayleigh_ritz_step():
    """LOBPCG pushed below float32's precision (tol 1e-9, 60 steps) on a float32 operator: with the old Gram drop
    of 1e-10 the near-dependent search directions amplified the products' rounding into garbage Ritz values (1e29
    and 1e17 for seeds 0 and 1; 10 of 10 seeds wrong); the drop now follows the operator's dtype."""
    for seed in range(3):
        a = spectrum_matrix([50.0, 49.9, 49.5, 45.0, 30.0], p=300, seed=seed)
        want = torch.linalg.eigvalsh(a).flip(0)[:4]
        x0 = torch.randn(300, 6, generator=torch.Generator().manual_seed(seed), dtype=DT)
        run = lobpcg_largest(MatrixOperator(a.float()), x0, 4, tol=1e-9, max_iter=60)
        assert torch.allclose(run["theta"][:4], want, rtol=1e-4)
