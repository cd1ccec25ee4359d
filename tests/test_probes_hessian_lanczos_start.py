"""Lanczos's start vector against a gradient that points along the second eigenvector (a trained net's situation):
the default start must not let the eigenvalue-error rule stop on λ₂."""

from __future__ import annotations

import pytest
import torch

from bnlab.probes.hessian import MatrixOperator
from bnlab.probes.hessian.lanczos import lanczos_eigenpairs

DT = torch.float64


class GradientOperator(MatrixOperator):
    """A known matrix whose 'loss gradient' is given: what `HessianOperator.loss_gradient` offers Lanczos."""

    def __init__(self, matrix: torch.Tensor, gradient: torch.Tensor) -> None:
        super().__init__(matrix)
        self.gradient = gradient

    def loss_gradient(self) -> torch.Tensor:
        return self.gradient


def _gradient_along_second(p: int = 800) -> GradientOperator:
    """λ₁ = 1, λ₂ = 0.74, a bulk in [0, 0.3]; the gradient is 3·v₂ (the VGG after 600 steps: 0.993 and 0.738)."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=DT))
    eigenvalues = torch.cat([torch.tensor([1.0, 0.74], dtype=DT), torch.rand(p - 2, generator=gen, dtype=DT) * 0.3])
    return GradientOperator(q @ torch.diag(eigenvalues) @ q.T, 3 * q[:, 1])


@pytest.mark.parametrize("tol", [1e-2, 1e-3, 1e-4])
def test_eigenvalue_rule_with_the_default_start_finds_lambda_max(tol: float):
    for seed in range(5):
        res = lanczos_eigenpairs(_gradient_along_second(), tol=tol, seed=seed, criterion="eigenvalue")
        assert res.info["start"] == "random"
        assert res.eigenvalues[0] == pytest.approx(1.0, rel=max(tol, 1e-6) * 5)


def test_the_gradient_start_is_the_hazard_and_the_residual_rule_keeps_it():
    """The construction bites: asked for the gradient start, the eigenvalue rule stops on λ₂ for some seed; the
    residual rule (default) keeps the gradient start under "auto" and finds λ₁ at its default tol."""
    found = [lanczos_eigenpairs(_gradient_along_second(), tol=1e-3, seed=s, criterion="eigenvalue",
                                start="gradient").eigenvalues[0] for s in range(5)]
    assert min(found) == pytest.approx(0.74, abs=0.01)
    for seed in range(5):
        res = lanczos_eigenpairs(_gradient_along_second(), tol=1e-4, seed=seed)
        assert res.info["start"] == "gradient" and res.eigenvalues[0] == pytest.approx(1.0, rel=1e-4)
