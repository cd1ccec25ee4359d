"""`top_and_trace`: λ_max and the trace from one Lanczos run, against known spectra and a model's dense Hessian in
float64: λ_max to its tolerance, the trace unbiased with a calibrated standard error (simulated over seeds), and
fewer products than the two estimators run apart."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.hessian import (
    MatrixOperator,
    dense_hessian,
    hessian_operator,
    krylov_hutchpp_trace,
    lanczos_eigenpairs,
    top_and_trace,
)

DT = torch.float64


def _spectrum_matrix(seed: int, dim: int = 120) -> torch.Tensor:
    """A symmetric matrix with a few outliers over a bulk around 0 (a net's Hessian in miniature)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=DT))
    values = torch.cat([torch.tensor([40.0, 15.0, 6.0], dtype=DT), 0.5 * torch.randn(dim - 3, generator=gen, dtype=DT)])
    return (q * values) @ q.T  # (dim, dim)


@pytest.mark.parametrize("criterion", ["residual", "eigenvalue"])
def test_lambda_max_is_within_tolerance_and_the_product_count_adds_up(criterion: str) -> None:
    matrix = _spectrum_matrix(0)
    op = MatrixOperator(matrix)
    eig, tr = top_and_trace(op, tol=1e-3, criterion=criterion, sketch=10, max_samples=10, seed=3)
    true = float(torch.linalg.eigvalsh(matrix)[-1])
    assert eig.converged and abs(eig.eigenvalues[0] - true) <= 1e-3 * true
    assert eig.products + tr.products == op.products  # every product counted once
    assert tr.sketch >= 10 and tr.samples == 10


def test_the_trace_is_unbiased_and_its_standard_error_calibrated_over_seeds() -> None:
    """Simulated: 200 seeds on one matrix; z = (estimate − tr H) / SE has mean ≈ 0 and spread ≈ 1 (a biased
    estimator or a wrong SE fails: the control below shifts the estimate by 2 SE and is caught)."""
    matrix = _spectrum_matrix(1)
    true = float(torch.trace(matrix))
    z = []
    for seed in range(200):
        _, tr = top_and_trace(MatrixOperator(matrix), tol=1e-2, sketch=5, min_samples=10, max_samples=10, seed=seed)
        z.append((tr.trace - true) / tr.se)
    zt = torch.tensor(z, dtype=DT)
    assert abs(float(zt.mean())) < 0.25 and 0.75 < float(zt.std()) < 1.4
    assert abs(float((zt + 2).mean())) > 1.5  # the control: a 2-SE bias is far outside the band


def test_fewer_products_than_apart_and_the_same_numbers_on_a_bn_nets_dense_hessian() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).to(DT)
    x, y = torch.randn(32, 6, dtype=DT), torch.randint(0, 3, (32,))
    loss = nn.functional.cross_entropy
    for mode in ("train", "eval"):
        with hessian_operator(net, loss, (x, y), bn_mode=mode) as op:
            h, _ = dense_hessian(op)
            before = op.products
            eig, tr = top_and_trace(op, tol=1e-6, criterion="residual", sketch=10, min_samples=10, max_samples=10,
                                    seed=2)
            shared = op.products - before
            apart = (lanczos_eigenpairs(op, tol=1e-6, seed=2).products
                     + krylov_hutchpp_trace(op, sketch=10, min_samples=10, max_samples=10, seed=2).products)
        values = torch.linalg.eigvalsh(h)
        assert eig.eigenvalues[0] == pytest.approx(float(values[-1]), rel=1e-5)
        assert abs(tr.trace - float(values.sum())) <= 4 * tr.se + 1e-9
        assert shared < apart and shared == max(eig.products, tr.sketch) + tr.samples


def test_bad_settings_are_named() -> None:
    op = MatrixOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DT)))
    with pytest.raises(BnlabError, match="criterion"):
        top_and_trace(op, criterion="ritz")
    with pytest.raises(BnlabError, match="sketch"):
        top_and_trace(op, sketch=0)
    eig, tr = top_and_trace(op, sketch=10, seed=0)  # the sketch spans everything: exact, no samples
    assert eig.eigenvalues[0] == pytest.approx(4.0) and tr.trace == pytest.approx(10.0) and tr.samples == 0
    assert tr.se == 0.0 and tr.converged and math.isfinite(eig.residuals[0])
