import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.ics import ICSProbe, ics, optimizer_step_preview
from bnlab.state import is_batchnorm

F = nn.functional


def _net(bn=nn.BatchNorm1d):
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 6), bn(6), nn.ReLU(), nn.Linear(6, 6), bn(6), nn.ReLU(), nn.Linear(6, 3)).double()


def _bnlab_bn(n):
    from bnlab.layers.batchnorm import BatchNorm

    return BatchNorm(n)


def _batch(n=12):
    g = torch.Generator().manual_seed(4)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _state(model, opt):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: (None if p.grad is None else p.grad.clone()) for k, p in model.named_parameters()},
        [m.training for m in model.modules()],
        [(m.momentum, m.track_running_stats) for m in model.modules() if is_batchnorm(m)],
        torch.get_rng_state().clone(),
        copy.deepcopy(opt.state_dict()["state"]),
    )


def _assert_same(a, b):
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert all((a[1][k] is None and b[1][k] is None) or torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert a[2] == b[2] and a[3] == b[3] and torch.equal(a[4], b[4])
    for i in a[5]:
        assert all(torch.equal(a[5][i][k], b[5][i][k]) if torch.is_tensor(a[5][i][k]) else a[5][i][k] == b[5][i][k]
                   for k in a[5][i])


def _grads(model, batch):
    """Batch-statistics gradients of a copy, by plain .backward()."""
    m = copy.deepcopy(model).train()
    m.zero_grad()
    F.cross_entropy(m(batch[0]), batch[1]).backward()
    return {n: p.grad.clone() for n, p in m.named_parameters()}


def _reference(model, opt_state, batch, lr, momentum, wd, layer_modules):
    """Def. 2.1 by hand: SGD with momentum and weight decay on copies, only earlier layers stepped."""
    g = _grads(model, batch)
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    new = {}
    for i, n in enumerate(names):
        d = g[n] + wd * params[n].detach()
        buf = opt_state[i]["momentum_buffer"]
        buf = momentum * buf + d
        new[n] = params[n].detach() - lr * buf
    out = []
    modules = [m for m, _ in model.named_children()]
    for layer in layer_modules:
        m = copy.deepcopy(model)
        earlier = modules[: modules.index(layer)]
        with torch.no_grad():
            for n, p in m.named_parameters():
                if n.split(".")[0] in earlier:
                    p.copy_(new[n])
        gp = _grads(m, batch)
        gi = torch.cat([g[f"{layer}.weight"].flatten(), g[f"{layer}.bias"].flatten()])
        gpi = torch.cat([gp[f"{layer}.weight"].flatten(), gp[f"{layer}.bias"].flatten()])
        out.append((float((gi - gpi).norm()), float(gi @ gpi / (gi.norm() * gpi.norm()))))
    return out


@pytest.mark.parametrize("bn", [nn.BatchNorm1d, _bnlab_bn])
def test_matches_hand_stepped_copies_and_leaves_no_trace(bn):
    model = _net(bn)
    batch = _batch()
    lr, momentum, wd = 0.3, 0.9, 1e-2
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    model.train()
    for k in range(2):  # momentum buffers and running statistics that are not trivial
        opt.zero_grad()
        F.cross_entropy(model(batch[0] * (k + 1)), batch[1]).backward()
        opt.step()
    before = _state(model, opt)
    got = ics(model, F.cross_entropy, batch, opt)
    _assert_same(before, _state(model, opt))
    assert [r.layer for r in got.layers] == ["0", "3", "6"]
    assert got.order == ["0", "1", "3", "4", "6"]
    ref = _reference(model, [opt.state[p] for p in model.parameters()], batch, lr, momentum, wd, ["0", "3", "6"])
    assert got.layers[0].distance == pytest.approx(0.0, abs=1e-12)  # nothing precedes the first layer
    for r, (dist, cos) in zip(got.layers[1:], ref[1:]):
        assert r.distance == pytest.approx(dist, rel=1e-5, abs=1e-8)
        assert r.cosine == pytest.approx(cos, abs=1e-5)
        assert r.distance > 1e-4  # the earlier update really moved the gradient


def test_plain_lr_without_optimizer_equals_sgd():
    model = _net()
    batch = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    a = ics(model, F.cross_entropy, batch, opt)
    b = ics(model, F.cross_entropy, batch, lr=0.2)
    assert [r.distance for r in a.layers] == pytest.approx([r.distance for r in b.layers], rel=1e-10)


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD])
def test_preview_equals_the_real_step(cls):
    model = _net()
    batch = _batch()
    kwargs = {"lr": 0.05, "weight_decay": 0.1} | ({"momentum": 0.5, "nesterov": True} if cls is torch.optim.SGD
                                                  else {})
    opt = cls(model.parameters(), **kwargs)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        opt.step()
    grads = _grads(model, batch)
    before = copy.deepcopy(opt.state_dict())
    preview = optimizer_step_preview(opt, model, grads)
    after = opt.state_dict()
    assert all(torch.equal(torch.as_tensor(before["state"][i][k]), torch.as_tensor(after["state"][i][k]))
               for i in before["state"] for k in before["state"][i])
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
    opt.step()
    for n, p in model.named_parameters():
        assert torch.equal(preview[n], p.detach()), n


class _Shuffled(nn.Module):
    """Registers its layers in the opposite order of the forward pass."""

    def __init__(self):
        super().__init__()
        self.late = nn.Linear(5, 3)
        self.early = nn.Linear(4, 5)

    def forward(self, x):
        return self.late(torch.tanh(self.early(x)))


def test_forward_order_not_registration_order():
    model = _Shuffled().double()
    got = ics(model, F.cross_entropy, _batch(), lr=0.5)
    assert got.order == ["early", "late"]
    assert got.layers[0].layer == "early" and got.layers[0].distance == 0.0
    assert got.layers[1].distance > 0 and -1 <= got.layers[1].cosine <= 1


def test_probe_adapter_and_errors():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctx = SimpleNamespace(step=3, model=model, loss_fn=F.cross_entropy, batch=_batch(), optimizer=opt,
                          config=SimpleNamespace(lr=0.1))
    out = ICSProbe(every=2, layers=["3", "6"])(ctx)
    assert out["step"] == 3 and out["layers"] == ["3", "6"]
    assert all(math.isfinite(v) for v in out["distance"] + out["cosine"])
    with pytest.raises(BnlabError, match="optimizer or a positive lr"):
        ics(model, F.cross_entropy, _batch())
    with pytest.raises(BnlabError, match="'2'"):
        ics(model, F.cross_entropy, _batch(), lr=0.1, layers=["2"])
    with pytest.raises(BnlabError, match="bn_mode"):
        ics(model, F.cross_entropy, _batch(), lr=0.1, bn_mode="x")


def test_an_lr_scheduler_does_not_redirect_the_preview_to_the_real_optimizer():
    model = _net()
    batch = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()  # leaves real .grad in place
        opt.step()
        sched.step()
    before = _state(model, opt)
    ics(model, F.cross_entropy, batch, opt)
    _assert_same(before, _state(model, opt))
    grads = _grads(model, batch)
    preview = optimizer_step_preview(opt, model, grads)
    _assert_same(before, _state(model, opt))
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
    opt.step()
    assert all(torch.equal(preview[n], p.detach()) for n, p in model.named_parameters())
