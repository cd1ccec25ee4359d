"""Scale-invariance probe: the identities hold before a BN (to ε effects) and fail without one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm
from bnlab.probes.invariance import scale_invariance


def _net(norm: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), norm, nn.ReLU(), nn.Linear(10, 3)).double()


@pytest.mark.parametrize("bn", [lambda: BatchNorm(10, eps=1e-12), lambda: nn.BatchNorm1d(10, eps=1e-12)])
def test_identities_hold_before_bn_and_model_is_restored(bn):
    net = _net(bn())
    x = torch.randn(16, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rep = scale_invariance(net, "0", x, y, alphas=(0.5, 2.0, 10.0))
    assert rep.max_forward_error < 1e-10
    assert rep.max_grad_error < 1e-9
    assert rep.max_orthogonality < 1e-10
    assert rep.grad_norm[2] == pytest.approx(rep.grad_norm[0] / 20, rel=1e-8)  # ‖∇‖ ∝ 1/α
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training and all(p.grad is None for p in net.parameters())
    # an independent check of ⟨∇W, W⟩ = 0 by plain autograd
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    w, b = net[0].weight, net[0].bias
    dot = (w.grad * w).sum() + (b.grad * b).sum()
    assert abs(dot.item()) < 1e-10 * (w.grad.norm() * w.norm()).item()


def test_default_eps_shows_predicted_small_deviation_and_no_bn_fails():
    net = _net(BatchNorm(10))  # ε = 1e-5
    x = torch.randn(16, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    rep = scale_invariance(net, net[0], x, y, alphas=(0.1, 10.0))
    assert 1e-8 < rep.forward_error[0] < 1e-2  # α = 0.1: ε/α² is visible
    assert rep.forward_error[1] < min(1e-3, rep.forward_error[0])  # α > 1 shrinks ε relative to α²σ²
    plain = _net(nn.Identity())
    rep = scale_invariance(plain, plain[0], x, y, alphas=(2.0,))
    assert rep.forward_error[0] > 0.1 and rep.orthogonality[0] > 1e-3


def test_bad_arguments():
    net = _net(BatchNorm(10))
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    with pytest.raises(BnlabError, match="no layer named"):
        scale_invariance(net, "nope", x, y)
    with pytest.raises(BnlabError, match="no parameters"):
        scale_invariance(net, "2", x, y)
    with pytest.raises(BnlabError, match="positive"):
        scale_invariance(net, "0", x, y, alphas=(0.0,))
    with pytest.raises(BnlabError, match="not part"):
        scale_invariance(net, nn.Linear(2, 2), x, y)
