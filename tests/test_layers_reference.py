"""Reference-batch normalisation (C12's noise-free control) against an independent float64 computation."""

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.reference import ReferenceBatchModel


def _net(bn: type[nn.Module] = BatchNorm) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), bn(4), nn.ReLU(), nn.Linear(4, 3)).double()


def _oracle(net: nn.Module, ref: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Slow and obvious: statistics of the reference's pre-BN activations, then the mini-batch through the net."""
    lin, bn, act, head = net
    r = lin(ref)  # (R, 4)
    mean, var = r.mean(0), r.var(0, unbiased=False)
    z = (lin(x) - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    return head(act(z))


@pytest.mark.parametrize("bn", [BatchNorm, nn.BatchNorm1d])
def test_forward_and_gradient_match_the_oracle(bn):
    net = _net(bn)
    ref, x = torch.randn(40, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    model = ReferenceBatchModel(net, ref).train()
    out = model(x)
    want = _oracle(net, ref, x)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    g = torch.autograd.grad(out.square().sum(), net[0].weight)[0]
    g_want = torch.autograd.grad(want.square().sum(), net[0].weight)[0]
    torch.testing.assert_close(g, g_want, rtol=1e-10, atol=1e-12)


def test_gradcheck_through_the_statistics():
    net = _net()
    ref = torch.randn(12, 5, dtype=torch.float64)
    model = ReferenceBatchModel(net, ref).train()
    x = torch.randn(3, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(model, (x.requires_grad_(),))  # through the reference's statistics too
    y = model(x)
    assert y.shape == (3, 3)


def test_no_batch_noise_and_scale_invariance_kept():
    """An example's output does not depend on its mini-batch companions (no noise); and the gradient through the
    statistics is kept: the pre-BN weights' gradient is orthogonal to them (BN's scale invariance), which frozen
    population statistics (the old control) break."""
    net = _net()
    ref = torch.randn(50, 5, dtype=torch.float64)
    model = ReferenceBatchModel(net, ref).train()
    x = torch.randn(8, 5, dtype=torch.float64)
    a = model(x)[:1]
    b = model(torch.cat([x[:1], torch.randn(7, 5, dtype=torch.float64) * 3]))[:1]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    batch_dependent = net(torch.cat([x[:1], torch.randn(7, 5, dtype=torch.float64) * 3]))[:1]
    assert not torch.allclose(net(x)[:1], batch_dependent)  # plain BN: the companions change the output
    net[1].eps = 1e-14  # exact scale invariance (ε breaks it by ~ε/σ²)
    lin, bn, act, head = net

    def radial(loss):  # d/dα L(αW, αb) at α = 1: the pre-BN layer's parameters times their gradient
        gw, gb = torch.autograd.grad(loss, (lin.weight, lin.bias))
        inner = (gw * lin.weight).sum() + (gb * lin.bias).sum()
        return float(inner.detach()), float(torch.cat([gw.flatten(), gb]).norm())

    inner, size = radial(model(x).logsumexp(1).sum())
    assert abs(inner) < 1e-9 * size
    # the old control: the same statistics, detached -> the gradient is no longer orthogonal
    r = lin(ref).detach()
    z = (lin(x) - r.mean(0)) / torch.sqrt(r.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    inner, size = radial(head(act(z)).logsumexp(1).sum())
    assert abs(inner) > 1e-3 * size


def test_eval_mode_and_close():
    net = _net()
    model = ReferenceBatchModel(net, torch.randn(10, 5, dtype=torch.float64))
    x = torch.randn(4, 5, dtype=torch.float64)
    model.eval()
    torch.testing.assert_close(model(x), net.eval()(x))
    model.close()
    net.train()
    torch.testing.assert_close(net(x), nn.Sequential(*net)(x))  # hooks gone: plain BN again


def test_bad_inputs():
    with pytest.raises(BnlabError, match="no BN layer"):
        ReferenceBatchModel(nn.Linear(3, 2), torch.randn(4, 3))
    with pytest.raises(BnlabError, match="at least 2"):
        ReferenceBatchModel(_net(), torch.randn(1, 5))
    ghost = nn.Sequential(nn.Linear(5, 4), BatchNorm(4, ghost_batch_size=2))
    with pytest.raises(BnlabError, match="ghost"):
        ReferenceBatchModel(ghost, torch.randn(4, 5))
