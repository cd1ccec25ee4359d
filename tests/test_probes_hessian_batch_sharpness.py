"""Batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] against an independent dense oracle in float64, in both BN modes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from bnlab.errors import BnlabError
from bnlab.probes.hessian import hessian_operator
from bnlab.probes.hessian.batch_sharpness import batch_sharpness, rayleigh_along_gradient, sample_batches

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def net(bn: bool = True) -> nn.Module:
    torch.manual_seed(0)
    mid = nn.BatchNorm1d(5) if bn else nn.Identity()
    model = nn.Sequential(nn.Linear(4, 5), mid, nn.Tanh(), nn.Linear(5, 3)).to(DT)  # P = 25 + 10 + 18
    if bn:  # running statistics that differ from any batch's, so the two modes are two functions
        with torch.no_grad():
            mid.running_mean.uniform_(-0.5, 0.5)
            mid.running_var.uniform_(0.5, 2.0)
    return model


def data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=gen, dtype=DT), torch.randint(0, 3, (n,), generator=gen)


def oracle_quotient(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], mode: str) -> tuple[float, float]:
    """(gᵀHg/gᵀg, λ_max(H)) for one batch, sharing no code with bnlab: gradient by plain autograd on a copy of the
    model in the mode's torch setting, Hessian by central differences of that gradient."""
    twin = copy.deepcopy(model)
    twin.eval()
    if mode == "train":
        for m in twin.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.train()
                m.track_running_stats = False
                m.running_mean = m.running_var = None  # batch statistics only
    names = [n for n, _ in twin.named_parameters()]
    shapes = [p.shape for _, p in twin.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for _, p in twin.named_parameters()])

    def gradient(theta: torch.Tensor) -> torch.Tensor:
        theta = theta.clone().requires_grad_(True)
        parts = dict(zip(names, [t.view(s) for t, s in zip(torch.split(theta, [math.prod(s) for s in shapes]),
                                                           shapes)]))
        loss = F.cross_entropy(functional_call(twin, parts, (batch[0],)), batch[1])
        return torch.autograd.grad(loss, theta)[0]

    g = gradient(theta0)
    h = 1e-5
    cols = []
    for j in range(len(theta0)):
        e = torch.zeros_like(theta0)
        e[j] = h
        cols.append((gradient(theta0 + e) - gradient(theta0 - e)) / (2 * h))
    hess = torch.stack(cols, 1)
    hess = 0.5 * (hess + hess.T)
    return float(g @ hess @ g / (g @ g)), float(torch.linalg.eigvalsh(hess)[-1])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_sharpness_matches_dense_oracle(mode: str):
    model = net()
    x, y = data()
    batches = sample_batches(x, y, batch_size=8, count=3, seed=2)
    res = batch_sharpness(model, F.cross_entropy, batches, bn_mode=mode)
    expected = [oracle_quotient(model, b, mode) for b in batches]
    for got, (want, top) in zip(res.per_batch, expected):
        assert got == pytest.approx(want, rel=1e-6)
        assert got <= top * (1 + 1e-9)  # a Rayleigh quotient of H_B never exceeds λ_max(H_B)
    assert res.value == pytest.approx(sum(w for w, _ in expected) / 3, rel=1e-6)
    assert res.products == 3 and res.batch_size == 8 and res.bn_mode == mode
    assert res.bn_batch_size == (8 if mode == "train" else None)
    assert math.isfinite(res.se) and res.se > 0
    d = res.to_dict()
    assert d["bn_mode"] == mode and d["bn_batch_size"] == res.bn_batch_size


def test_two_bn_modes_are_two_functions_and_no_bn_has_no_bn_batch():
    x, y = data()
    batches = sample_batches(x, y, batch_size=8, count=2, seed=3)
    model = net()
    train = batch_sharpness(model, F.cross_entropy, batches, bn_mode="train").value
    evaluated = batch_sharpness(model, F.cross_entropy, batches, bn_mode="eval").value
    assert abs(train - evaluated) > 1e-3 * abs(train)
    plain = batch_sharpness(net(bn=False), F.cross_entropy, batches, bn_mode="train")
    assert plain.bn_batch_size is None and math.isfinite(plain.value)
    with hessian_operator(model, F.cross_entropy, batches, bn_mode="train") as op:
        assert op.describe()["bn_batch_size"] == 8  # every eigenvalue records it too


def test_model_left_as_it_was():
    model = net()
    model.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data()
    batch_sharpness(model, F.cross_entropy, sample_batches(x, y, 8, 2), bn_mode="train")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and model[1].training and model[1].track_running_stats
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))


def test_zero_gradient_has_no_direction():
    model = nn.Sequential(nn.Linear(2, 1, bias=False)).to(DT)
    with torch.no_grad():
        model[0].weight.zero_()
    x = torch.randn(4, 2, dtype=DT)
    batch = (x, torch.zeros(4, 1, dtype=DT))
    value, products = rayleigh_along_gradient(model, lambda o, t: (o - t).pow(2).mean(), batch)
    assert math.isnan(value) and products == 0


def test_bad_input():
    x, y = data()
    with pytest.raises(BnlabError, match="one size"):
        batch_sharpness(net(), F.cross_entropy, [(x[:8], y[:8]), (x[:6], y[:6])])
    with pytest.raises(BnlabError, match="larger than"):
        sample_batches(x, y, batch_size=100, count=1)
    with pytest.raises(BnlabError, match=">= 1"):
        sample_batches(x, y, batch_size=4, count=0)


def test_sharpness_probe_reports_batch_sharpness_per_mode():
    from bnlab.probes.hessian.sharpness import SharpnessProbe

    model = net()
    x, y = data()
    sgd = sample_batches(x, y, batch_size=8, count=3, seed=4)
    probe = SharpnessProbe(bn_modes=("train", "eval"), trace=False, sgd_batches=sgd, tol=1e-6)
    rec = probe.measure(model, F.cross_entropy, (x, y))
    for mode in ("train", "eval"):
        want = batch_sharpness(model, F.cross_entropy, sgd, bn_mode=mode).value
        assert rec[mode]["batch_sharpness"] == pytest.approx(want, rel=1e-9)
        assert rec[mode]["sgd_batch_size"] == 8
        assert rec[mode]["products"] == rec[mode]["lanczos_products"] + 3
    assert rec["train"]["bn_batch_size"] == 40 and rec["train"]["batch_sharpness_bn_batch_size"] == 8
    assert rec["eval"]["bn_batch_size"] is None and rec["eval"]["batch_sharpness_bn_batch_size"] is None
