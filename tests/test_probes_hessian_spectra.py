"""λ_min, per-block spectra and the scipy view of bnlab's Hessian, against dense float64 Hessians, in both BN modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm
from bnlab.probes.hessian import (
    MatrixOperator,
    block_eigenpairs,
    blocks,
    dense_hessian,
    eigenpairs,
    extremes,
    hessian_operator,
    top_eigenvalues,
)

DT = torch.float64


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6, bias=False), BatchNorm(6), nn.Tanh(), nn.Linear(6, 3)).to(DT)  # P = 63
    x, y = torch.randn(12, 5, dtype=DT), torch.randint(0, 3, (12,))
    with torch.no_grad():
        model(x * 1.5 + 0.3)  # running statistics that differ from the batch's own
    return model, (x, y)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_smallest_eigenvalue_and_ratio(mode: str, method: str):
    model, batch = _setup()
    with hessian_operator(model, F.cross_entropy, batch, bn_mode=mode) as op:
        h = dense_hessian(op)[0]
        want = torch.linalg.eigvalsh(h)  # ascending
        low = eigenpairs(op, which="smallest", method=method, tol=1e-9, max_steps=2000 if method == "power" else 63)
        assert low.eigenvalues[0] == pytest.approx(float(want[0]), rel=1e-6, abs=1e-9)
        v = low.eigenvectors[0]
        assert float((h @ v - low.eigenvalues[0] * v).norm()) < 1e-5 * float(want.abs().max())
        ext = extremes(op, tol=1e-10, max_steps=63)
    assert ext["largest"] == pytest.approx(float(want[-1]), rel=1e-8)
    assert ext["smallest"] == pytest.approx(float(want[0]), rel=1e-6, abs=1e-9)
    assert ext["ratio"] == pytest.approx(float(want[0] / want[-1]), rel=1e-5, abs=1e-9)
    assert want[0] < 0  # the test is about a spectrum with negative curvature


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_per_block_spectra_from_one_graph(mode: str):
    model, batch = _setup(1)
    with hessian_operator(model, F.cross_entropy, batch, bn_mode=mode) as op:
        h = dense_hessian(op)[0]
        ranges = blocks(op)
        assert list(ranges) == ["0", "1", "3"]  # first Linear, BN (γ, β), last Linear (weight, bias)
        got = block_eigenpairs(op, k=2, tol=1e-10)
        for name, (a, b) in ranges.items():
            want = torch.linalg.eigvalsh(h[a:b, a:b]).flip(0)
            assert got[name].eigenvalues == pytest.approx(want[:2].tolist(), rel=1e-7, abs=1e-10), name
            assert got[name].info["block"] == name and got[name].eigenvectors.shape == (2, b - a)
        named = blocks(op, {"affine": ["1.weight", "1.bias"]})
        assert named == {"affine": ranges["1"]}
        with pytest.raises(BnlabError, match="not contiguous"):
            blocks(op, {"bad": ["0.weight", "3.weight"]})
        with pytest.raises(BnlabError, match="does not hold"):
            blocks(op, {"bad": ["nope"]})
    per = top_eigenvalues(model, F.cross_entropy, batch, bn_mode=mode, per_block=True, tol=1e-10)
    assert per.keys() == got.keys()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_scipy_eigsh_agrees_with_lanczos(mode: str):
    from scipy.sparse.linalg import eigsh

    model, batch = _setup(2)
    with hessian_operator(model, F.cross_entropy, batch, bn_mode=mode) as op:
        lin = op.to_scipy()
        assert lin.shape == (op.dim, op.dim)
        theirs = eigsh(lin, k=3, which="LA", tol=1e-12, v0=np.ones(op.dim))[0][::-1]
        ours = eigenpairs(op, k=3, tol=1e-10, max_steps=63).eigenvalues
        assert ours == pytest.approx(theirs.tolist(), rel=1e-6)
        before = op.products
        lin.matmat(np.eye(op.dim)[:, :4])
        assert op.products == before + 4  # products are counted on the operator


def test_matrix_operator_smallest_and_scipy():
    rng = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, dtype=DT, generator=rng))
    vals = torch.linspace(-2.0, 5.0, 30, dtype=DT)
    op = MatrixOperator(q @ torch.diag(vals) @ q.T)
    assert eigenpairs(op, which="smallest", k=2, tol=1e-10, max_steps=30).eigenvalues == pytest.approx(
        [-2.0, vals[1].item()], rel=1e-8)
    x = np.random.default_rng(0).normal(size=30)
    assert np.allclose(op.to_scipy() @ x, (op.matrix @ torch.as_tensor(x)).numpy())


def test_non_finite_hessian_is_a_clear_error():
    """A diverged point used to end in torch's LinAlgError from the tridiagonal eigensolver."""
    op = MatrixOperator(torch.full((6, 6), float("nan"), dtype=DT))
    with pytest.raises(BnlabError, match="not finite"):
        eigenpairs(op, tol=1e-6)
