import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.along_gradient import AlongGradientProbe, along_gradient, choose_path
from bnlab.state import is_batchnorm

F = nn.functional


def _net(bn=nn.BatchNorm1d):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 7), bn(7), nn.Tanh(), nn.Linear(7, 7), bn(7), nn.ReLU(), nn.Linear(7, 3))
    return net.double()


def _batch(n=16):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _state(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: (None if p.grad is None else p.grad.clone()) for k, p in model.named_parameters()},
        [m.training for m in model.modules()],
        [(m.momentum, m.track_running_stats) for m in model.modules() if is_batchnorm(m)],
        torch.get_rng_state().clone(),
    )


def _assert_same(a, b):
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert all((a[1][k] is None and b[1][k] is None) or torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert a[2] == b[2] and a[3] == b[3] and torch.equal(a[4], b[4])


def _reference(model, batch, etas, mode):
    """Slow and obvious: deep copies, in-place weight steps, .backward()."""
    x, y = batch

    def loss_grads(m):
        m.zero_grad()
        if mode == "train":
            m.train()
        else:
            m.eval()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in m.parameters()]

    _, g = loss_grads(copy.deepcopy(model))
    g_norm = torch.sqrt(sum((t ** 2).sum() for t in g))
    losses, dists, betas = [], [], []
    for eta in etas:
        m = copy.deepcopy(model)
        with torch.no_grad():
            for p, gp in zip(m.parameters(), g):
                p -= eta * gp
        loss, ge = loss_grads(m)
        d = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(ge, g)))
        losses.append(loss)
        dists.append(float(d))
        betas.append(float(d / (eta * g_norm)))
    return losses, dists, max(betas)


@pytest.mark.parametrize("path", ["loop", "vmap"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_matches_slow_reference_and_leaves_no_trace(path, mode):
    model = _net()
    model.train()
    batch = _batch()
    for _ in range(2):  # non-trivial running stats and an existing .grad
        F.cross_entropy(model(batch[0] * 2 + 1), batch[1]).backward()
    model[3].weight.grad = None
    etas = [0.05, 0.1, 0.4, 1.0]
    before = _state(model)
    got = along_gradient(model, F.cross_entropy, batch, etas, bn_mode=mode, path=path)
    _assert_same(before, _state(model))
    losses, dists, beta = _reference(model, batch, etas, mode)
    assert got.path == path and got.bn_mode == mode and got.etas == etas
    assert got.losses == pytest.approx(losses, abs=1e-5, rel=1e-5)
    assert got.grad_distances == pytest.approx(dists, abs=1e-5, rel=1e-5)
    assert got.loss_variation == pytest.approx(max(losses) - min(losses), abs=1e-5)
    assert got.gradient_predictiveness == pytest.approx(max(dists) - min(dists), abs=1e-5)
    assert got.beta_smoothness == pytest.approx(beta, rel=1e-5)


def test_bnlab_batchnorm_through_auto_path():
    from bnlab.layers.batchnorm import BatchNorm

    model = _net(BatchNorm)
    batch = _batch()
    before = _state(model)
    got = along_gradient(model, F.cross_entropy, batch, [0.1, 0.5])
    _assert_same(before, _state(model))
    losses, dists, _ = _reference(model, batch, [0.1, 0.5], "train")
    assert got.losses == pytest.approx(losses, abs=1e-5)
    assert got.grad_distances == pytest.approx(dists, abs=1e-5)


class _Noise(nn.Module):
    """Adds fresh Gaussian noise on every call (in any mode), like a noise-injection layer."""

    is_batchnorm = True  # so bn_mode keeps it in training mode
    momentum = None
    track_running_stats = False

    def forward(self, x):
        return x + torch.randn_like(x) if self.training else x


def test_every_pass_sees_the_same_noise():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), _Noise(), nn.Tanh(), nn.Linear(6, 3)).double()
    batch = _batch()
    rng = torch.get_rng_state()
    got = along_gradient(model, F.cross_entropy, batch, [1e-9, 1e-8], path="loop")
    assert torch.equal(rng, torch.get_rng_state())
    # with the same noise, a vanishing step changes neither the loss nor the gradient
    assert got.grad_distances[0] < 1e-6 and got.loss_variation < 1e-7


def test_probe_adapter_uses_lr_factors():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    ctx = SimpleNamespace(step=7, model=model, loss_fn=F.cross_entropy, batch=_batch(), optimizer=opt,
                          config=SimpleNamespace(lr=0.2))
    probe = AlongGradientProbe(every=5, eta_factors=(0.5, 2.0))
    out = probe(ctx)
    assert out["step"] == 7 and out["etas"] == pytest.approx([0.1, 0.4])
    assert probe.name == "along_gradient" and probe.every == 5


def test_bad_input_is_named():
    model = _net()
    with pytest.raises(BnlabError, match="etas"):
        along_gradient(model, F.cross_entropy, _batch(), [])
    with pytest.raises(BnlabError, match="etas"):
        along_gradient(model, F.cross_entropy, _batch(), [-1.0])
    with pytest.raises(BnlabError, match="bn_mode"):
        along_gradient(model, F.cross_entropy, _batch(), [0.1], bn_mode="batch")
    with pytest.raises(BnlabError, match="scalar"):
        along_gradient(model, lambda o, t: F.cross_entropy(o, t, reduction="none"), _batch(), [0.1])
    with pytest.raises(BnlabError, match="path"):
        along_gradient(model, F.cross_entropy, _batch(), [0.1], path="fast")


def test_path_choice(monkeypatch):
    monkeypatch.delenv("BNLAB_ALONG_GRADIENT_PATH", raising=False)
    assert choose_path("vmap", torch.device("cpu")) == "vmap"
    assert choose_path("auto", torch.device("cpu")) == "loop"
    monkeypatch.setenv("BNLAB_ALONG_GRADIENT_PATH", "vmap")
    assert choose_path("auto", torch.device("cpu")) == "vmap"
    monkeypatch.setenv("BNLAB_ALONG_GRADIENT_PATH", "fast")
    with pytest.raises(BnlabError, match="BNLAB_ALONG_GRADIENT_PATH"):
        choose_path("auto", torch.device("cpu"))


def test_auto_measures_once_where_no_default_is_recorded(monkeypatch):
    import bnlab.probes.along_gradient as ag

    monkeypatch.delenv("BNLAB_ALONG_GRADIENT_PATH", raising=False)
    monkeypatch.setattr(ag, "MEASURED_DEFAULT_PATH", {})
    monkeypatch.setattr(ag, "_PATH_CACHE", {})
    model, batch = _net(), _batch()
    first = along_gradient(model, F.cross_entropy, batch, [0.1, 0.3])
    assert first.path == "loop" and len(ag._PATH_CACHE) == 1  # the first call returns the loop's numbers
    chosen = next(iter(ag._PATH_CACHE.values()))
    assert chosen in ("loop", "vmap")
    second = along_gradient(model, F.cross_entropy, batch, [0.1, 0.3])
    assert second.path == chosen
    assert second.losses == pytest.approx(first.losses, abs=1e-10)


class _OldStyleSquare(torch.autograd.Function):
    """An autograd.Function in the old style (forward takes ctx): functorch transforms refuse it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class _Square(nn.Module):
    def forward(self, x):
        return _OldStyleSquare.apply(x)


def test_auto_falls_back_to_the_loop_when_vmap_cannot_trace(monkeypatch):
    import bnlab.probes.along_gradient as ag

    monkeypatch.setenv("BNLAB_ALONG_GRADIENT_PATH", "vmap")
    monkeypatch.setattr(ag, "_PATH_CACHE", {})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), _Square(), nn.Linear(4, 3)).double()
    got = along_gradient(model, F.cross_entropy, _batch(), [0.1, 0.2])
    assert got.path == "loop"
    losses, dists, _ = _reference(model, _batch(), [0.1, 0.2], "train")
    assert got.losses == pytest.approx(losses, abs=1e-5) and got.grad_distances == pytest.approx(dists, abs=1e-5)
    with pytest.raises(RuntimeError):
        along_gradient(model, F.cross_entropy, _batch(), [0.1], path="vmap")
