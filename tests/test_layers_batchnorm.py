"""bnlab's BatchNorm against torch.nn.BatchNorm1d/2d/3d (the independent reference)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm, batch_moments, batch_norm_train

SHAPES = {1: (16, 5), 2: (6, 4, 3, 5), 3: (4, 3, 2, 3, 2)}
TORCH_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _pair(kind: int, dtype: torch.dtype, **kw):
    c = SHAPES[kind][1]
    ours = BatchNorm(c, **kw).to(dtype)
    ref = TORCH_BN[kind](c, **kw).to(dtype)
    if ours.affine:
        with torch.no_grad():
            w = torch.rand(c, dtype=dtype) + 0.5
            b = torch.randn(c, dtype=dtype)
            ours.weight.copy_(w)
            ours.bias.copy_(b)
            ref.weight.copy_(w)
            ref.bias.copy_(b)
    return ours, ref


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= tol, f"max error {err} > {tol}"


@pytest.mark.parametrize("kind", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_torch_train_steps_and_eval(kind, dtype, momentum, affine):
    ours, ref = _pair(kind, dtype, momentum=momentum, affine=affine)
    tol = TOL[dtype]
    for step in range(4):
        x = (torch.randn(SHAPES[kind], dtype=dtype) * (1 + step) + step).requires_grad_(True)
        x2 = x.detach().clone().requires_grad_(True)
        g = torch.randn(SHAPES[kind], dtype=dtype)
        y, y_ref = ours(x), ref(x2)
        _close(y, y_ref, tol)
        y.backward(g)
        y_ref.backward(g)
        _close(x.grad, x2.grad, tol)
        if affine:
            _close(ours.weight.grad, ref.weight.grad, tol)
            _close(ours.bias.grad, ref.bias.grad, tol)
        _close(ours.running_mean, ref.running_mean, tol)
        _close(ours.running_var, ref.running_var, tol)
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == step + 1
    ours.eval()
    ref.eval()
    x = torch.randn(SHAPES[kind], dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y_ref = ours(x), ref(x2)
    _close(y, y_ref, tol)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    _close(x.grad, x2.grad, tol)


@pytest.mark.parametrize("kind", [1, 2])
def test_track_running_stats_false_and_toggled_like_torch(kind):
    ours, ref = _pair(kind, torch.float64, track_running_stats=False)
    assert ours.running_mean is None and ref.running_mean is None
    x = torch.randn(SHAPES[kind], dtype=torch.float64)
    for mode in (True, False):  # no buffers: batch statistics in both modes
        ours.train(mode)
        ref.train(mode)
        _close(ours(x), ref(x), 1e-10)
    # buffers present but tracking switched off (what bn_mode("train") does): batch stats, buffers untouched
    ours, ref = _pair(kind, torch.float64)
    ours(x)
    ref(x)
    ours.track_running_stats = ref.track_running_stats = False
    before = ours.running_mean.clone(), ours.running_var.clone(), ours.num_batches_tracked.clone()
    x2 = torch.randn(SHAPES[kind], dtype=torch.float64) + 3
    _close(ours(x2), ref(x2), 1e-10)
    assert torch.equal(before[0], ours.running_mean) and torch.equal(before[1], ours.running_var)
    assert torch.equal(before[2], ours.num_batches_tracked)
    ours.eval()
    ref.eval()
    _close(ours(x2), ref(x2), 1e-10)  # eval with buffers: running statistics


def test_gradcheck_and_gradgradcheck_float64():
    w = torch.tensor([0.7, 1.3, -0.4], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
    for shape in [(6, 3), (3, 3, 2, 2)]:
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

        def fn(inp, w, b):
            return batch_norm_train(inp, w, b, 1e-5)[0]

        def plain(inp):
            return batch_norm_train(inp, None, None, 1e-5)[0]

        assert torch.autograd.gradcheck(fn, (x, w, b))
        assert torch.autograd.gradgradcheck(fn, (x, w, b))
        assert torch.autograd.gradcheck(plain, (x,))
        assert torch.autograd.gradgradcheck(plain, (x,))


def test_double_backward_matches_torch_hvp():
    """Hessian-vector product through train-mode BN equals torch's (float64)."""
    torch.manual_seed(1)
    x = torch.randn(8, 4, 3, dtype=torch.float64)
    v_w = torch.randn(4, 4, dtype=torch.float64)
    results = []
    for bn in (BatchNorm(4).double(), nn.BatchNorm1d(4).double()):
        lin = nn.Conv1d(4, 4, 1, bias=False).double()
        torch.manual_seed(2)
        nn.init.normal_(lin.weight)
        net = nn.Sequential(lin, bn, nn.Tanh())
        loss = net(x).pow(3).mean()
        (g,) = torch.autograd.grad(loss, lin.weight, create_graph=True)
        (hv,) = torch.autograd.grad((g.squeeze(-1) * v_w).sum(), lin.weight)
        results.append((g.detach(), hv))
    _close(results[0][0], results[1][0], 1e-10)
    _close(results[0][1], results[1][1], 1e-10)


def test_state_dicts_load_both_ways():
    ours, ref = _pair(2, torch.float32)
    ours(torch.randn(SHAPES[2]))
    ref(torch.randn(SHAPES[2]) * 2)
    assert list(ours.state_dict()) == list(ref.state_dict())
    fresh_ours, fresh_ref = BatchNorm(4), nn.BatchNorm2d(4)
    fresh_ours.load_state_dict(ref.state_dict())
    fresh_ref.load_state_dict(ours.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(fresh_ours.state_dict()[k], v)
    for k, v in ours.state_dict().items():
        assert torch.equal(fresh_ref.state_dict()[k], v)
    assert BatchNorm.is_batchnorm is True


def test_ghost_batches_normalise_each_chunk():
    torch.manual_seed(3)
    x = torch.randn(12, 3, 2, dtype=torch.float64) * 2 + 1
    ghost = BatchNorm(3, ghost_batch_size=4).double()
    ref = nn.BatchNorm1d(3).double()
    y = ghost(x)
    chunks = [ref(c) for c in x.split(4)]
    refs = [nn.BatchNorm1d(3).double() for _ in range(3)]
    for r, c in zip(refs, x.split(4)):
        r(c)
    _close(y, torch.cat(chunks), 1e-10)
    mean_ref = torch.stack([r.running_mean for r in refs]).mean(0)
    var_ref = torch.stack([r.running_var for r in refs]).mean(0)
    _close(ghost.running_mean, mean_ref, 1e-12)
    _close(ghost.running_var, var_ref, 1e-12)
    assert int(ghost.num_batches_tracked) == 1
    with pytest.raises(BnlabError, match="ghost"):
        ghost(torch.randn(9, 3, 1, dtype=torch.float64))  # last chunk: 1 value per channel
    ghost.eval()
    _close(ghost(x), nn.functional.batch_norm(x, ghost.running_mean, ghost.running_var, ghost.weight, ghost.bias,
                                              False, 0.1, 1e-5), 1e-12)


def test_numerics_huge_tiny_and_constant_inputs():
    torch.manual_seed(4)
    base = torch.randn(64, 3, dtype=torch.float64)
    for scale, offset in [(1e-20, 0.0), (1e18, 0.0), (1.0, 1e4), (1e-3, 10.0)]:
        x64 = base * scale + offset
        x32 = x64.float()
        layer = BatchNorm(3, eps=1e-30 if scale < 1e-10 else 1e-5)
        y = layer(x32)
        mean, var = x32.double().mean(0), x32.double().var(0, unbiased=False)
        expected = (x32.double() - mean) / torch.sqrt(var + layer.eps)
        assert torch.isfinite(y).all()
        _close(y.double(), expected, 2e-3)
    const = torch.full((10, 3), 7.0, requires_grad=True)
    layer = BatchNorm(3)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    y = layer(const)
    assert torch.equal(y, layer.bias.detach().expand(10, 3))  # σ = 0: output = β
    y.sum().backward()
    assert torch.isfinite(const.grad).all()
    mean, var = batch_moments(torch.tensor([[1e4], [1e4 + 1], [1e4 + 2]], dtype=torch.float32))
    assert abs(var.item() - 2 / 3) < 1e-4


def test_bad_inputs_raise_named_errors():
    with pytest.raises(BnlabError, match="eps"):
        BatchNorm(3, eps=0.0)
    with pytest.raises(BnlabError, match="eps"):
        BatchNorm(3, eps=-1e-5)
    with pytest.raises(BnlabError, match="momentum"):
        BatchNorm(3, momentum=1.5)
    layer = BatchNorm(3)
    with pytest.raises(BnlabError, match="1 value per channel"):
        layer(torch.randn(1, 3))
    with pytest.raises(BnlabError, match="channels"):
        layer(torch.randn(4, 5))
    with pytest.raises(BnlabError, match="floating-point"):
        layer(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(BnlabError, match="shape"):
        layer(torch.randn(3))
    assert isinstance(BnlabError("x"), ValueError)
    layer(torch.randn(1, 3, 2))  # one sample but 2 values per channel is fine
    layer.eval()
    assert layer(torch.randn(1, 3)).shape == (1, 3)  # eval with a batch of one uses running statistics


def test_deepcopy_and_module_state():
    layer = BatchNorm(3, momentum=None)
    clone = copy.deepcopy(layer)
    x = torch.randn(5, 3)
    assert torch.equal(layer(x), clone(x))
    assert "momentum=None" in repr(layer)


def test_torch_func_grad_and_vmap_match_torch_bn():
    """torch.func.vmap(grad(...)) through train-mode bnlab BN equals the loop and torch's BN (float64)."""
    from torch.func import functional_call, grad, grad_and_value, vmap

    from bnlab.state import bn_mode

    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (8,))
    results = []
    for bn in (BatchNorm(5), nn.BatchNorm1d(5)):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 5), bn, nn.Tanh(), nn.Linear(5, 2)).double()
        params = {k: v.detach() for k, v in net.named_parameters()}
        stacked = {k: torch.stack([v, 1.1 * v, 0.9 * v]) for k, v in params.items()}
        with bn_mode(net, "train"):
            def loss_at(p, net=net):
                return nn.functional.cross_entropy(functional_call(net, p, (x,)), y)

            batched, _ = vmap(grad_and_value(loss_at), randomness="same")(stacked)
            loop = [grad(loss_at)({k: v[i] for k, v in stacked.items()}) for i in range(3)]
        for i in range(3):
            for k in params:
                _close(batched[k][i], loop[i][k], 1e-12)
        results.append(batched)
    for k in results[0]:
        _close(results[0][k], results[1][k], 1e-10)
