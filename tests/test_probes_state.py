import torch
from torch import nn

from bnlab.state import bn_mode, is_batchnorm, preserved_state


def _net():
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 2))


def _state(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: (None if p.grad is None else p.grad.clone()) for k, p in model.named_parameters()},
        [m.training for m in model.modules()],
        [(m.momentum, m.track_running_stats) for m in model.modules() if is_batchnorm(m)],
        [p.requires_grad for p in model.parameters()],
    )


def _same(a, b):
    sd_a, g_a, *rest_a = a
    sd_b, g_b, *rest_b = b
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert all((g_a[k] is None and g_b[k] is None) or torch.equal(g_a[k], g_b[k]) for k in g_a)
    assert rest_a == rest_b


def test_preserved_state_restores_everything_even_on_error():
    model = _net()
    model(torch.randn(8, 4)).sum().backward()
    model[0].weight.grad = None  # mix of None and tensor grads
    before = _state(model)
    rng = torch.get_rng_state()
    try:
        with preserved_state(model) as guard:
            guard.add_hook(model[0].register_forward_hook(lambda *a: None))
            model.eval()
            model[1].momentum = None
            model[1].track_running_stats = False
            model[4].weight.requires_grad_(False)
            with torch.no_grad():
                model[0].weight.add_(1.0)
            model.train()
            model(torch.randn(8, 4)).sum().backward()
            torch.rand(3)
            raise RuntimeError("probe failed")
    except RuntimeError:
        pass
    _same(before, _state(model))
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model[0]._forward_hooks


def test_bn_mode_train_uses_batch_stats_without_updating_buffers():
    model = _net()
    with torch.no_grad():
        model[1].running_mean.fill_(3.0)
    model.train()
    before = _state(model)
    x = torch.randn(16, 4)
    with bn_mode(model, "train"):
        out = model(x)
        assert not model[3].training  # dropout off: the probe evaluates a deterministic function
    _same(before, _state(model))
    ref = nn.Sequential(*[m for m in model]).eval()
    h = model[0](x)
    expected = model[4](torch.relu(nn.functional.batch_norm(h, None, None, model[1].weight, model[1].bias,
                                                               training=True)))
    assert torch.allclose(out, expected, atol=1e-6)
    with bn_mode(ref, "eval"):
        out_eval = ref(x)
    h = (h - 3.0) / torch.sqrt(model[1].running_var + model[1].eps) * model[1].weight + model[1].bias
    assert torch.allclose(out_eval, model[4](torch.relu(h)), atol=1e-6)


def test_bn_mode_rejects_unknown_mode():
    import pytest

    with pytest.raises(ValueError, match="bn_mode"):
        with bn_mode(_net(), "recalibrated"):
            pass
