"""Ioffe Alg. 2 precise population statistics, for bnlab's and torch's BN layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.precise import precise_statistics


def _net(bn_cls):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), bn_cls(4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3), bn_cls(3)).double()


@pytest.mark.parametrize("bn_cls", [BatchNorm, nn.BatchNorm1d])
def test_precise_statistics_follow_alg2_and_restore_state(bn_cls):
    net = _net(bn_cls)
    net[1].momentum = 0.3
    net[5].momentum = None
    net.eval()
    batches = [(torch.randn(8, 5, dtype=torch.float64) + i, torch.zeros(8)) for i in range(4)]
    grads_before = [p.grad for p in net.parameters()]
    counts = precise_statistics(net, batches)
    assert counts == {"1": 4, "5": 4}
    # reference: batch statistics of each BN's input computed by hand, training network (batch stats), no dropout
    means1, vars1, means2, vars2 = [], [], [], []
    with torch.no_grad():
        for x, _ in batches:
            a = net[0](x)
            means1.append(a.mean(0))
            vars1.append(a.var(0, unbiased=False))
            h = torch.relu(nn.functional.batch_norm(a, None, None, net[1].weight, net[1].bias, True, 0.0, net[1].eps))
            b = net[4](h)
            means2.append(b.mean(0))
            vars2.append(b.var(0, unbiased=False))
    m = 8
    assert torch.allclose(net[1].running_mean, torch.stack(means1).mean(0), atol=1e-12)
    assert torch.allclose(net[1].running_var, m / (m - 1) * torch.stack(vars1).mean(0), atol=1e-12)
    assert torch.allclose(net[5].running_mean, torch.stack(means2).mean(0), atol=1e-12)
    assert torch.allclose(net[5].running_var, m / (m - 1) * torch.stack(vars2).mean(0), atol=1e-12)
    assert not net.training and not any(mod.training for mod in net.modules())
    assert net[1].momentum == 0.3 and net[5].momentum is None
    assert net[1].track_running_stats and int(net[1].num_batches_tracked) == 0
    assert [p.grad for p in net.parameters()] == grads_before


def test_precise_statistics_max_batches_and_errors():
    net = _net(BatchNorm)

    def endless():
        while True:
            yield torch.randn(4, 5, dtype=torch.float64)

    assert precise_statistics(net, endless(), max_batches=3) == {"1": 3, "5": 3}
    with pytest.raises(BnlabError, match="no batches"):
        precise_statistics(net, [])
    with pytest.raises(BnlabError, match="no BN layer"):
        precise_statistics(nn.Linear(2, 2), [torch.randn(3, 2)])
    with pytest.raises(BnlabError, match="1 value per channel"):
        precise_statistics(net, [torch.randn(1, 5, dtype=torch.float64)])
