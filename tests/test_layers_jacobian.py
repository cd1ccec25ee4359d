"""Explicit BN Jacobian vs autograd and finite differences; its spectrum; Santurkar Thm 4.1 on a real layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.jacobian import (
    autograd_jacobian,
    bn_input_and_grad,
    bn_jacobian,
    finite_difference_jacobian,
    jacobian_spectrum,
    theorem_4_1,
)


@pytest.mark.parametrize("m", [2, 5, 16])
def test_explicit_jacobian_equals_autograd_and_finite_differences(m):
    x = torch.randn(m, dtype=torch.float64) * 2 + 1
    jac = bn_jacobian(x, eps=1e-5)
    assert (jac - autograd_jacobian(x, eps=1e-5)).abs().max() <= 1e-10
    assert (jac - finite_difference_jacobian(x, eps=1e-5)).abs().max() <= 1e-6
    assert torch.allclose(bn_jacobian(x, gamma=2.5), 2.5 * jac)
    assert torch.allclose(jac, jac.T)


def test_spectrum_two_null_directions_rest_one_over_s():
    x = torch.randn(12, dtype=torch.float64) * 3
    for eps in (1e-1, 1e-5, 1e-12):
        spec = jacobian_spectrum(x, eps=eps)
        assert spec.max_error <= 1e-10
        s = math.sqrt(x.var(unbiased=False).item() + eps)
        assert spec.eigenvalues[0].abs() <= 1e-10
        assert abs(spec.eigenvalues[1].item() - eps / s**3) <= 1e-10
        assert torch.allclose(spec.eigenvalues[2:], torch.full((10,), 1 / s, dtype=torch.float64), atol=1e-10)
        assert spec.ones_alignment == pytest.approx(1.0, abs=1e-8)
        assert spec.xhat_alignment == pytest.approx(1.0, abs=1e-8)


def test_jacobian_bad_input():
    with pytest.raises(BnlabError, match="1-D"):
        bn_jacobian(torch.randn(3, 2))
    with pytest.raises(BnlabError, match="1-D"):
        bn_jacobian(torch.randn(1))
    with pytest.raises(BnlabError, match="eps"):
        bn_jacobian(torch.randn(4), eps=0)


def test_theorem_4_1_identity_on_a_real_layer_and_published_constant():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), BatchNorm(8), nn.ReLU(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.5)
    x = torch.randn(20, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    layer_in, grad_out = bn_input_and_grad(net, net[1], x, y)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # no buffer update
    assert all(p.grad is None for p in net.parameters())
    res = theorem_4_1(layer_in, grad_out, net[1].weight)
    assert res.m == 20
    assert res.identity_rel_error <= 1e-8
    # the c = 1/m form differs only through ε
    assert ((res.identity_c_1_over_m - res.lhs).abs() / res.lhs).max() < 1e-3
    # lhs equals ‖∂L/∂x‖² computed by autograd through the whole net: hook the linear layer's output grad
    feats = net[0](x).detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(net[3](net[2](net[1](feats))), y)
    (g_feats,) = torch.autograd.grad(loss, feats)
    assert torch.allclose(res.lhs, (g_feats**2).sum(0), rtol=1e-10, atol=1e-30)
    # published 1/√m: smaller right side, so it fails wherever ⟨g, x̂⟩ ≠ 0
    assert (res.published_bound <= res.identity + 1e-15).all()
    assert not res.published_bound_holds.all()


def test_theorem_4_1_shape_mismatch():
    with pytest.raises(BnlabError, match="share a shape"):
        theorem_4_1(torch.randn(4, 3), torch.randn(4, 2))
