from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.activations import (
    ActivationProbe,
    activation_modules,
    activation_stats,
    near_linear_fraction,
    sigmoid_input_fractions,
)
from bnlab.state import is_batchnorm


def _net():
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Sigmoid(), nn.Linear(8, 8), nn.Sigmoid(),
                         nn.Linear(8, 2)).double()


def _x(n=40):
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 3


def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [(m.momentum, m.track_running_stats) for m in model.modules() if is_batchnorm(m)],
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()))


def _same(a, b):
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:]


@pytest.mark.parametrize("mode", ["train", "eval", "as_is"])
def test_percentiles_match_numpy_and_no_trace(mode):
    model = _net().train()
    x = _x()
    model(x * 0.5 + 1)  # running statistics that differ from the batch's
    before = _state(model)
    stats = activation_stats(model, x, units=(0, 5), percentiles=(15, 50, 85), bn_mode=mode)
    _same(before, _state(model))
    assert list(stats) == ["2", "4"]
    with torch.no_grad():  # the obvious reference: run the layers by hand
        h = model[0](x)
        bn = model[1]
        if mode == "eval":
            h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        else:
            h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
        pre2 = h.numpy()
        pre4 = model[3](torch.sigmoid(h)).numpy()
    for name, pre in (("2", pre2), ("4", pre4)):
        s = stats[name]
        for i, u in enumerate((0, 5)):
            assert s.unit_percentiles[i] == pytest.approx(np.percentile(pre[:, u], [15, 50, 85]), abs=1e-5)
            assert s.unit_mean[i] == pytest.approx(pre[:, u].mean(), abs=1e-5)
            assert s.unit_std[i] == pytest.approx(pre[:, u].std(), abs=1e-5)
        assert s.mean == pytest.approx(pre.mean(), abs=1e-5) and s.std == pytest.approx(pre.std(), abs=1e-5)
        assert s.near_linear_fraction == pytest.approx((np.abs(pre) < 1).mean())
    if mode == "as_is":  # a training-mode forward moves the running stats, and they are put back
        assert torch.equal(before[0]["1.running_mean"], model[1].running_mean)


def test_conv_units_and_output_capture():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU()).double()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    stats = activation_stats(model, x, ["0"], units=(2,), capture="output")
    ref = model[0](x).detach()[:, 2].flatten().numpy()
    assert stats["0"].unit_percentiles[0] == pytest.approx(np.percentile(ref, [15, 50, 85]), abs=1e-10)
    assert stats["0"].numel == 4 * 3 * 3 * 3


def test_helpers_for_c02():
    assert near_linear_fraction(torch.tensor([-2.0, -0.5, 0.0, 0.99, 1.0])) == pytest.approx(0.6)
    model = _net()
    fr = sigmoid_input_fractions(model, _x())
    assert set(fr) == {"2", "4"} and all(0 <= v <= 1 for v in fr.values())
    assert activation_modules(model) == ["2", "4"]


def test_probe_and_errors():
    model = _net()
    held_out = _x(10)
    probe = ActivationProbe(every=4, modules=["4"], inputs=held_out)
    out = probe(SimpleNamespace(step=8, model=model, batch=(_x(), None)))
    assert out["step"] == 8 and out["modules"]["4"]["numel"] == 10 * 8
    with pytest.raises(BnlabError, match="no module named"):
        activation_stats(model, _x(), ["nope"])
    with pytest.raises(BnlabError, match="out of range"):
        activation_stats(model, _x(), units=(9,))
    with pytest.raises(BnlabError, match="percentiles"):
        activation_stats(model, _x(), percentiles=(101,))
    with pytest.raises(BnlabError, match="bn_mode"):
        activation_stats(model, _x(), bn_mode="batch")
    assert _state(model)[3] == 0  # hooks gone even after errors
