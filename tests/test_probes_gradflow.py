"""Gradient-flow probe vs hand-computed gradients and dense torch.func.jacrev Jacobians (float64)."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.gradflow import (
    GradFlowProbe,
    dense_jacobian,
    fit_growth_factor,
    layer_gradient_norms,
    layer_jacobians,
    mean_squared_singular_value,
    network_jacobian,
    singular_values,
    weight_layers,
)
from bnlab.state import is_batchnorm


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny float64 nets: extra threads only add overhead on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mse(out, target):
    return 0.5 * (out - target).pow(2).sum()


def _tiny(bn: bool) -> nn.Sequential:
    torch.manual_seed(1)
    layers = [nn.Linear(3, 4, bias=False)]
    if bn:
        layers.append(nn.BatchNorm1d(4))
    layers += [nn.ReLU(), nn.Linear(4, 2, bias=False)]
    return nn.Sequential(*layers).double()


def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [(m.momentum, m.track_running_stats) for m in model.modules() if is_batchnorm(m)],
            {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()})


def _same_state(a, b):
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1:3] == b[1:3]
    assert all((a[3][k] is None and b[3][k] is None) or torch.equal(a[3][k], b[3][k]) for k in a[3])


def test_layer_gradient_norms_match_hand_computation_without_bn():
    model = _tiny(bn=False)
    x = torch.randn(5, 3, dtype=torch.float64)
    t = torch.randn(5, 2, dtype=torch.float64)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    z = x @ w1.T  # (5, 4)
    h = z.clamp(min=0)
    dy = h @ w2.T - t  # dL/dY for 0.5 * sum (Y - T)^2
    dw2 = dy.T @ h
    dh = dy @ w2
    dz = dh * (z > 0)
    dw1 = dz.T @ x
    dx = dz @ w1
    got = layer_gradient_norms(model, _mse, (x, t), bn="train")
    assert got["layers"] == ["0", "2"]
    assert got["weight_grad_sq"] == pytest.approx([float(dw1.pow(2).sum()), float(dw2.pow(2).sum())], rel=1e-12)
    assert got["input_grad_sq"] == pytest.approx([float(dx.pow(2).sum()), float(dh.pow(2).sum())], rel=1e-12)


@pytest.mark.parametrize("bn", ["train", "eval"])
def test_layer_gradient_norms_match_hand_computation_through_batchnorm(bn):
    model = _tiny(bn=True)
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.randn(6, 2, dtype=torch.float64)
    before = _state(model)
    w1, w2 = model[0].weight.detach(), model[3].weight.detach()
    eps = model[1].eps
    z = x @ w1.T  # (6, 4)
    if bn == "train":
        mu, var = z.mean(0), z.var(0, unbiased=False)
    else:
        mu, var = model[1].running_mean, model[1].running_var
    sigma = (var + eps).sqrt()
    zh = (z - mu) / sigma  # gamma = 1, beta = 0 at init
    h = zh.clamp(min=0)
    dy = h @ w2.T - t
    dw2 = dy.T @ h
    dh = dy @ w2
    dzh = dh * (zh > 0)
    if bn == "train":  # Ioffe Alg. 1 backward, the C08 Jacobian
        dz = (dzh - dzh.mean(0) - zh * (dzh * zh).mean(0)) / sigma
    else:
        dz = dzh / sigma
    dw1 = dz.T @ x
    got = layer_gradient_norms(model, _mse, (x, t), bn=bn)
    assert got["layers"] == ["0", "3"]
    assert got["weight_grad_sq"] == pytest.approx([float(dw1.pow(2).sum()), float(dw2.pow(2).sum())], rel=1e-10)
    assert got["input_grad_sq"][1] == pytest.approx(float(dh.pow(2).sum()), rel=1e-10)
    _same_state(before, _state(model))


def _dense_reference(fn, x):
    jac = torch.func.jacrev(fn)(x)  # (*out_shape, *in_shape)
    out_numel = fn(x).numel()
    return jac.reshape(out_numel, x.numel()).detach()


@pytest.mark.parametrize("method", ["func", "autograd"])
@pytest.mark.parametrize("bn", ["train", "eval"])
def test_network_jacobian_singular_values_match_jacrev(bn, method):
    model = _tiny(bn=True)
    model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(5, 3, dtype=torch.float64)
    before = _state(model)
    model.eval()
    if bn == "train":
        model[1].train()
        model[1].track_running_stats = False
    ref = _dense_reference(model, x)  # (10, 15)
    model[1].track_running_stats = True
    model.train()
    ref_sv = torch.linalg.svdvals(ref)
    before = _state(model)
    with network_jacobian(model, x, bn=bn, method=method) as jac:
        assert jac.in_shape == (5, 3) and jac.out_shape == (5, 2)
        torch.testing.assert_close(dense_jacobian(jac), ref, rtol=1e-10, atol=1e-12)
        v = torch.randn(5, 3, dtype=torch.float64)
        torch.testing.assert_close(jac.matvec(v).reshape(-1), ref @ v.reshape(-1), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(singular_values(jac), ref_sv, rtol=1e-9, atol=1e-10)
        exact_k = singular_values(jac, k=10, iters=0)  # k = min(n_in, n_out): exact
        torch.testing.assert_close(exact_k, ref_sv, rtol=1e-8, atol=1e-10)
        top = singular_values(jac, k=3, iters=6)
        assert float(top[0]) == pytest.approx(float(ref_sv[0]), rel=1e-3)
        gen = torch.Generator().manual_seed(3)
        msv = mean_squared_singular_value(jac, probes=300, generator=gen)  # relative s.e. ~ 5%
        assert msv == pytest.approx(float(ref.pow(2).sum()) / 15, rel=0.2)  # (/ n_out would be 1.5x off)
    _same_state(before, _state(model))
    if bn == "eval":  # examples do not interact: the batch Jacobian is block diagonal
        blocks = ref.reshape(5, 2, 5, 3)
        off = blocks.clone()
        for i in range(5):
            off[i, :, i, :] = 0
        assert float(off.abs().max()) == 0.0


@pytest.mark.parametrize("bn", ["train", "eval"])
def test_layer_jacobians_match_jacrev_of_each_segment(bn):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Tanh(),
                          nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    model.eval()
    if bn == "train":
        for m in (model[1], model[4]):
            m.train()
            m.track_running_stats = False
    segments = [model[0:3], model[3:6], model[6:]]
    h = [x, model[0:3](x), model[0:6](x)]
    refs = [_dense_reference(seg, hi) for seg, hi in zip(segments, h)]
    for m in (model[1], model[4]):
        m.track_running_stats = True
    model.train()
    before = _state(model)
    with layer_jacobians(model, x, bn=bn) as maps:
        assert [j.name for j in maps] == ["0", "3", "6"]
        for jac, ref in zip(maps, refs):
            torch.testing.assert_close(dense_jacobian(jac), ref, rtol=1e-10, atol=1e-12)
            v = torch.randn(jac.in_shape, dtype=torch.float64)
            torch.testing.assert_close(jac.matvec(v).reshape(-1), ref @ v.reshape(-1), rtol=1e-10, atol=1e-12)
            full = min(jac.n_in, jac.n_out)
            torch.testing.assert_close(singular_values(jac, k=full, iters=1), torch.linalg.svdvals(ref),
                                       rtol=1e-8, atol=1e-10)
    _same_state(before, _state(model))


def test_residual_layer_jacobian_includes_the_skip():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4, bias=False)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(x + torch.tanh(self.fc(x)))

    model = Res().double()
    x = torch.randn(3, 4, dtype=torch.float64)
    ref = _dense_reference(lambda a: a + torch.tanh(model.fc(a)), x)
    with layer_jacobians(model, x) as maps:
        torch.testing.assert_close(dense_jacobian(maps[0]), ref, rtol=1e-10, atol=1e-12)


def test_fit_growth_factor_recovers_a_geometric_rate():
    norms = [5.0] + [3.0 * 1.467 ** (20 - i) for i in range(20)] + [0.1]
    assert fit_growth_factor(norms) == pytest.approx(1.467, rel=1e-12)
    assert fit_growth_factor([2.0] * 6) == pytest.approx(1.0)
    with pytest.raises(BnlabError, match="positive"):
        fit_growth_factor([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(BnlabError, match="at least 2"):
        fit_growth_factor([1.0, 2.0, 3.0])


def test_probe_record_and_state_restored():
    model = _tiny(bn=True).float()
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    model(x).sum().backward()
    before = _state(model)
    rng = torch.get_rng_state()
    probe = GradFlowProbe(every=5, top_k=2, jacobian_probes=3)
    ctx = SimpleNamespace(step=10, model=model, loss_fn=nn.functional.cross_entropy, batch=(x, y))
    rec = probe(ctx)
    assert probe.name == "gradflow" and probe.every == 5
    assert rec["step"] == 10 and rec["layers"] == ["0", "3"]
    assert len(rec["weight_grad_sq"]) == len(rec["layer_jac_msv"]) == len(rec["layer_jac_top_sv"]) == 2
    assert len(rec["net_jac_top_sv"]) == 2 and math.isfinite(rec["net_jac_msv"])
    assert all(math.isfinite(v) and v >= 0 for v in rec["weight_grad_sq"] + rec["layer_jac_msv"])
    assert probe(ctx) == rec  # seeded probes: same record twice
    _same_state(before, _state(model))
    assert torch.equal(rng, torch.get_rng_state())


def test_bad_input_is_a_one_line_error():
    model = _tiny(bn=False)
    with pytest.raises(BnlabError, match="bn mode"):
        layer_gradient_norms(model, _mse, (torch.randn(2, 3), torch.randn(2, 2)), bn="frozen")
    with pytest.raises(BnlabError, match="no module named"):
        layer_gradient_norms(model, _mse, (torch.randn(2, 3), torch.randn(2, 2)), layers=["nope"])
    with pytest.raises(BnlabError, match="no weight"):
        layer_gradient_norms(model, _mse, (torch.randn(2, 3), torch.randn(2, 2)), layers=["1"])
    with pytest.raises(BnlabError, match="no nn.Linear"):
        layer_gradient_norms(nn.Tanh(), _mse, (torch.randn(2, 3), torch.randn(2, 3)))
    with pytest.raises(BnlabError, match="unknown config key"):
        GradFlowProbe(every=1, colour="red")
    assert [n for n, _ in weight_layers(model)] == ["0", "2"]
    model[0].weight.requires_grad_(False)  # a frozen layer is still measured, and stays frozen
    batch = (torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64))
    got = layer_gradient_norms(model, _mse, batch)
    assert got["weight_grad_sq"][0] > 0 and not model[0].weight.requires_grad


@pytest.mark.parametrize("bn", ["train", "eval"])
def test_bnlab_batchnorm_model_agrees_with_the_torch_batchnorm_twin(bn):
    from bnlab.models import build_model

    models = {}
    for norm in ("bn", "torch_bn"):
        torch.manual_seed(4)
        models[norm] = build_model("deep_mlp", norm=norm, depth=3, width=6, activation="relu", residual=True,
                                   in_shape=(5,), num_classes=3).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    got = {n: layer_gradient_norms(m, nn.functional.cross_entropy, (x, y), bn=bn) for n, m in models.items()}
    assert got["bn"]["weight_grad_sq"] == pytest.approx(got["torch_bn"]["weight_grad_sq"], rel=1e-9)
    spectra = {}
    for name, model in models.items():
        with layer_jacobians(model, x, bn=bn) as maps:
            spectra[name] = [singular_values(j, k=4, iters=1) for j in maps]
        with network_jacobian(model, x, bn=bn, method="autograd") as jac:
            spectra[name].append(singular_values(jac))
    for a, b in zip(spectra["bn"], spectra["torch_bn"]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_probe_plugs_into_the_training_engine():
    from bnlab.train import TrainConfig, train

    config = TrainConfig(model="deep_mlp", norm="bn", dataset="digits", steps=4, batch_size=16, lr=0.05,
                         eval_every=0, progress=False, device="cpu",
                         model_kwargs={"depth": 3, "width": 8, "residual": True})
    result = train(config, probes=[GradFlowProbe(every=2, jacobian_probes=1, top_k=1)])
    records = result.probes["gradflow"]
    assert [r["step"] for r in records] == [0, 2]
    assert len(records[0]["weight_grad_sq"]) == 5 and len(records[0]["layer_jac_top_sv"]) == 5
    assert records[0]["weight_grad_sq"] != records[1]["weight_grad_sq"]  # the weights moved in between
