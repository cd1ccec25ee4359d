"""One regression test per loss-landscapes 3.0.6 bug listed in issue 6, showing bnlab does not have it.

Each test first shows the bug in the peer (skipped when the `bench` extra is missing), then checks bnlab on the
same setting. A linear "loss" (the model's output on a fixed input, ``L(w) = <a, w>``) makes every landscape value
known in closed form.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.landscape.directions import model_origin, random_directions
from bnlab.landscape.grid import symmetric_axis
from bnlab.landscape.plane import random_line, random_plane
from bnlab.landscape.points import evaluate_points


def _linear_model() -> tuple[nn.Module, torch.Tensor]:
    """L(w) = w . a (one Linear without bias, output on a fixed input)."""
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.25]]))
    return model, torch.tensor([[3.0, 1.0]])


def _output_loss(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return out.sum()


class _OutputMetric:
    """loss-landscapes Metric: the model output on the fixed input."""

    def __init__(self, a: torch.Tensor) -> None:
        self.a = a

    def __call__(self, wrapper) -> float:
        return float(wrapper.forward(self.a).sum())


def test_no_row_shift() -> None:
    """Peer: planar_interpolation evaluates even rows one step further along dir_two than odd rows."""
    model, a = _linear_model()
    steps = 4
    e1, e2 = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        e1.weight.add_(torch.tensor([[steps * 1.0, 0.0]]))  # dir_one = (1, 0) per step
        e2.weight.add_(torch.tensor([[0.0, steps * 1.0]]))  # dir_two = (0, 1) per step
    base = float(model(a).sum().detach())
    # documented: value[i][j] = L(start + i dir_one + j dir_two) = base + 3 i + j
    expected = np.array([[base + 3 * i + j for j in range(steps)] for i in range(steps)])
    ll = pytest.importorskip("loss_landscapes")
    peer = ll.planar_interpolation(copy.deepcopy(model), e1, e2, _OutputMetric(a), steps=steps)
    assert np.abs(peer - expected).max() == pytest.approx(1.0)  # rows 0, 2 shifted by one step of dir_two
    origin = model_origin(model)
    dirs = [{"weight": torch.tensor([[1.0, 0.0]])}, {"weight": torch.tensor([[0.0, 1.0]])}]
    coords = np.array([[i, j] for i in range(steps) for j in range(steps)], dtype=float)
    ours = evaluate_points(model, _output_loss, (a, torch.zeros(1)), origin, dirs, coords)["loss"].reshape(steps, steps)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_centre_evaluated_for_odd_steps() -> None:
    """Peer: random_plane with an odd step count never evaluates the model itself (grid offsets are half-steps)."""
    model, a = _linear_model()
    centre = float(model(a).sum().detach())
    ll = pytest.importorskip("loss_landscapes")
    torch.manual_seed(0)
    peer = ll.random_plane(copy.deepcopy(model), _OutputMetric(a), distance=1, steps=5, normalization=None)
    assert np.abs(peer - centre).min() > 1e-4
    surface = random_plane(model, _output_loss, (a, torch.zeros(1)), radius=1.0, steps=5, norm="none")
    assert surface.loss[2, 2] == pytest.approx(centre, abs=1e-6)
    with pytest.raises(BnlabError, match="centre"):
        symmetric_axis(1.0, 4)


def test_distance_not_inverted() -> None:
    """Peer: random_line spans model_norm / distance, so a larger `distance` draws a shorter line."""
    model, a = _linear_model()
    ll = pytest.importorskip("loss_landscapes")
    spans = []
    for distance in (1.0, 2.0):
        torch.manual_seed(0)
        values = ll.random_line(copy.deepcopy(model), _OutputMetric(a), distance=distance, steps=10,
                                normalization=None)
        spans.append(values.max() - values.min())
    assert spans[1] == pytest.approx(spans[0] / 2, rel=1e-4)  # twice the distance, half the span
    ours = [random_line(model, _output_loss, (a, torch.zeros(1)), radius=r, steps=11, seed=0, norm="none",
                        one_d="include").loss for r in (1.0, 2.0)]
    assert np.ptp(ours[1]) == pytest.approx(2 * np.ptp(ours[0]), rel=1e-5)


def test_one_d_entries_are_not_plus_minus_theta() -> None:
    """Peer: filter normalisation sets every bias / BN entry of a direction to +-|theta_i|, so both directions agree
    there up to sign (and it divides by zero when an entry is 0, e.g. a fresh BN beta)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pytest.importorskip("loss_landscapes")
    from loss_landscapes.model_interface.model_parameters import ModelParameters, rand_u_like

    start = ModelParameters([p.detach().clone() for p in model.parameters()])
    d1, d2 = rand_u_like(start), rand_u_like(start)
    d1.filter_normalize_(start)
    d2.filter_normalize_(start)
    bias = 1  # model.0.bias
    assert torch.allclose(d1[bias].abs(), start[bias].abs()) and torch.allclose(d2[bias].abs(), start[bias].abs())
    origin = model_origin(model)
    zero = random_directions(origin, 2, seed=0)  # default policy: 1-D entries are 0
    assert all(torch.count_nonzero(d[n]) == 0 for d in zero for n in origin if origin[n].dim() == 1)
    filt = random_directions(origin, 2, seed=0, one_d="filter")
    assert not torch.allclose(filt[0]["0.bias"].abs(), origin["0.bias"].abs())
    assert not torch.allclose(filt[0]["0.bias"].abs(), filt[1]["0.bias"].abs())
    fresh = model_origin(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))  # beta == 0 exactly
    for d in random_directions(fresh, 2, seed=0, one_d="filter"):
        assert all(torch.isfinite(t).all() for t in d.values())


def test_train_mode_bn_statistics_and_model_left_alone() -> None:
    """Peer: evaluating a train-mode BN model rewrites its running statistics, and the model is left displaced
    at the last grid point with requires_grad=False."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    model.train()
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ll = pytest.importorskip("loss_landscapes")
    from loss_landscapes.metrics import Loss

    peer_model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in peer_model.state_dict().items()}
    ll.random_plane(peer_model, Loss(nn.CrossEntropyLoss(), x, y), distance=1, steps=4)
    after = peer_model.state_dict()
    assert not torch.equal(before["1.running_mean"], after["1.running_mean"])  # statistics rewritten
    assert not torch.equal(before["0.weight"], after["0.weight"])  # displaced
    assert not any(p.requires_grad for p in peer_model.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for mode in ("train", "eval", "recalibrated"):
        random_plane(model, nn.CrossEntropyLoss(), (x, y), steps=3, bn_mode=mode, one_d="filter")
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), mode
        assert all(p.requires_grad for p in model.parameters()) and model.training
