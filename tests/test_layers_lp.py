"""Santurkar's ℓ1/ℓ2/ℓ∞ batch normalisations against an obvious reference."""

from __future__ import annotations

import math

import pytest
import torch

from bnlab.errors import BnlabError
from bnlab.layers import make_norm
from bnlab.layers.lp import LpNorm


def _reference(x: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """Loop over channels: centre, divide by the mean ℓp norm of the uncentred values."""
    out = torch.empty_like(x)
    for c in range(x.shape[1]):
        v = x[:, c].reshape(-1)
        if p == math.inf:
            norm = v.abs().max()
        else:
            norm = (v.abs() ** p).mean() ** (1 / p)
        out[:, c] = (x[:, c] - v.mean()) / (norm + eps)
    return out


@pytest.mark.parametrize("p", [1, 2, math.inf])
@pytest.mark.parametrize("shape", [(10, 3), (4, 3, 2, 5)])
def test_lp_norm_matches_reference_and_running_stats(p, shape):
    torch.manual_seed(0)
    layer = LpNorm(3, p=p).double()
    x = torch.randn(shape, dtype=torch.float64) * 3 + 2
    y = layer(x)
    assert torch.allclose(y, _reference(x, p, 1e-5), atol=1e-12)
    assert torch.autograd.gradcheck(lambda inp: layer(inp), (x.clone().requires_grad_(True),))
    layer2 = LpNorm(3, p=p, momentum=None).double()
    xs = [torch.randn(shape, dtype=torch.float64) + i for i in range(3)]
    for xi in xs:
        layer2(xi)
    dims = (0,) + tuple(range(2, len(shape)))
    mean = torch.stack([xi.mean(dims) for xi in xs]).mean(0)
    assert torch.allclose(layer2.running_mean, mean, atol=1e-12)
    layer2.eval()
    x_eval = torch.randn(shape, dtype=torch.float64)
    norm_shape = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x_eval - mean.view(norm_shape)) / (layer2.running_norm.view(norm_shape) + 1e-5)
    assert torch.allclose(layer2(x_eval), expected, atol=1e-12)


def test_factory_kinds_and_bad_p():
    assert make_norm("l1", 4).p == 1.0 and make_norm("l2", 4).p == 2.0 and make_norm("linf", 4).p == math.inf
    assert LpNorm(4, p="inf").p == math.inf
    for bad in (3, 0.5, "two"):
        with pytest.raises(BnlabError, match="p must be 1, 2 or inf"):
            LpNorm(4, p=bad)
    with pytest.raises(BnlabError, match="eps"):
        LpNorm(4, eps=0)
    with pytest.raises(BnlabError, match="floating-point"):
        LpNorm(4)(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(BnlabError, match="shape"):
        LpNorm(4)(torch.randn(3, 5))
    with pytest.raises(BnlabError, match="1 value per channel"):
        LpNorm(4)(torch.randn(1, 4))
