"""Grid points against a plain reference (copy the model, set w, evaluate) in every BN mode; the model untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.landscape.directions import model_origin, random_directions
from bnlab.landscape.points import data_hash, evaluate_points
from bnlab.layers.batchnorm import BatchNorm


def _cnn(bn: type) -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), bn(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), bn(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))


def _mlp(bn: type) -> nn.Module:
    return nn.Sequential(nn.Linear(70, 12), bn(12), nn.Tanh(), nn.Dropout(0.3), nn.Linear(12, 4))


def _trained(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """A few training-mode passes so the running statistics differ from their init."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape) * 2 + 0.5)
    return model


def _reference(model: nn.Module, loss_fn, batches, recal, origin, dirs, coords, bn_mode, bn_types) -> np.ndarray:
    """The obvious slow way: deep copy, write w, set modes, run."""
    out = []
    for c in coords:
        m = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.copy_(origin[n] + sum(float(ci) * d[n] for ci, d in zip(c, dirs)))
        m.eval()
        bns = [mod for mod in m.modules() if isinstance(mod, bn_types)]
        if bn_mode == "train":
            for mod in bns:
                mod.train()
                mod.track_running_stats = False
        elif bn_mode == "recalibrated":
            for mod in bns:
                mod.momentum = None
                mod.reset_running_stats()
                mod.train()
            with torch.no_grad():
                for x, _ in recal:
                    m(x)
            for mod in bns:
                mod.eval()
        with torch.no_grad():
            total = sum(x.shape[0] for x, _ in batches)
            out.append(sum(float(loss_fn(m(x), y)) * x.shape[0] for x, y in batches) / total)
    return np.array(out)


def _snapshot(model: nn.Module) -> tuple:
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()])


def _unchanged(model: nn.Module, snap: tuple) -> bool:
    sd, modes, rg = snap
    return (all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
            and modes == [m.training for m in model.modules()] and rg == [p.requires_grad for p in model.parameters()])


@pytest.mark.parametrize("bn_type", [nn.BatchNorm2d, BatchNorm])
@pytest.mark.parametrize("bn_mode", ["train", "eval", "recalibrated"])
def test_cnn_points_match_reference(bn_type: type, bn_mode: str) -> None:
    torch.manual_seed(0)
    model = _trained(_cnn(bn_type), (2, 8, 8))
    batches = [(torch.randn(10, 2, 8, 8), torch.randint(0, 4, (10,))), (torch.randn(6, 2, 8, 8),
                                                                         torch.randint(0, 4, (6,)))]
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=1, one_d="filter")
    coords = np.array([[0.0, 0.0], [0.4, -0.7], [-1.0, 1.0]])
    loss_fn = nn.CrossEntropyLoss()
    snap = _snapshot(model)
    got = evaluate_points(model, loss_fn, batches, origin, dirs, coords, bn_mode)
    ref = _reference(model, loss_fn, batches, batches, origin, dirs, coords, bn_mode, (nn.BatchNorm2d, BatchNorm))
    np.testing.assert_allclose(got["loss"], ref, rtol=1e-5, atol=1e-5)
    assert np.all((got["acc"] >= 0) & (got["acc"] <= 1))
    assert _unchanged(model, snap)


@pytest.mark.parametrize("bn_mode", ["train", "eval", "recalibrated"])
@pytest.mark.parametrize("first", [False, True])
def test_mlp_points_match_reference_with_first_layer_products(bn_mode: str, first: bool) -> None:
    torch.manual_seed(1)
    model = _trained(_mlp(nn.BatchNorm1d), (70,))
    batch = (torch.randn(24, 70), torch.randint(0, 4, (24,)))
    recal = [(torch.randn(12, 70), torch.randint(0, 4, (12,))) for _ in range(2)]
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=4, one_d="include")
    coords = np.array([[0.0, 0.0], [0.3, 0.2], [1.0, -0.5]])
    loss_fn = nn.CrossEntropyLoss()
    snap = _snapshot(model)
    got = evaluate_points(model, loss_fn, batch, origin, dirs, coords, bn_mode, recal_data=recal,
                          linear_first_layer=first)
    ref = _reference(model, loss_fn, [batch], recal, origin, dirs, coords, bn_mode, (nn.BatchNorm1d,))
    np.testing.assert_allclose(got["loss"], ref, rtol=1e-5, atol=1e-5)
    assert _unchanged(model, snap)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_vmap_strategy_matches_loop(bn_mode: str) -> None:
    torch.manual_seed(2)
    model = _trained(_cnn(nn.BatchNorm2d), (2, 8, 8))
    batch = (torch.randn(12, 2, 8, 8), torch.randint(0, 4, (12,)))
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=3)
    coords = np.random.default_rng(0).uniform(-1, 1, size=(5, 2))
    loss_fn = nn.CrossEntropyLoss()
    loop = evaluate_points(model, loss_fn, batch, origin, dirs, coords, bn_mode, strategy="loop")
    vm = evaluate_points(model, loss_fn, batch, origin, dirs, coords, bn_mode, strategy="vmap", chunk=2)
    np.testing.assert_allclose(vm["loss"], loop["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vm["acc"], loop["acc"])


def test_bf16_close_to_fp32_and_regression_has_nan_accuracy() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    batch = (torch.randn(32, 5), torch.randn(32, 1))
    origin = model_origin(model)
    dirs = random_directions(origin, 1, seed=0)
    coords = np.array([[0.0], [0.5]])
    fp32 = evaluate_points(model, nn.MSELoss(), batch, origin, dirs, coords, "eval")
    bf16 = evaluate_points(model, nn.MSELoss(), batch, origin, dirs, coords, "eval", precision="bf16")
    assert np.all(np.isnan(fp32["acc"]))
    np.testing.assert_allclose(bf16["loss"], fp32["loss"], rtol=3e-2)
    assert not np.array_equal(bf16["loss"], fp32["loss"])  # it did run in bf16


def test_user_model_gradients_and_rng_untouched() -> None:
    torch.manual_seed(4)
    model = _mlp(nn.BatchNorm1d)
    model.train()
    x, y = torch.randn(8, 70), torch.randint(0, 4, (8,))
    nn.CrossEntropyLoss()(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    origin = model_origin(model)
    evaluate_points(model, nn.CrossEntropyLoss(), (x, y), origin, random_directions(origin, 2, seed=0), [[0.1, 0.2]])
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert torch.equal(rng, torch.get_rng_state())
    assert model.training


def test_bad_input_is_one_line_error() -> None:
    model = _mlp(nn.BatchNorm1d)
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=0)
    batch = (torch.randn(4, 70), torch.randint(0, 4, (4,)))
    with pytest.raises(BnlabError, match="bn_mode"):
        evaluate_points(model, nn.CrossEntropyLoss(), batch, origin, dirs, [[0, 0]], "frozen")
    with pytest.raises(BnlabError, match="coords"):
        evaluate_points(model, nn.CrossEntropyLoss(), batch, origin, dirs, [[0, 0, 0]])
    with pytest.raises(BnlabError, match="origin"):
        evaluate_points(model, nn.CrossEntropyLoss(), batch, {"x": torch.zeros(1)}, dirs, [[0, 0]])
    with pytest.raises(BnlabError, match="targets"):
        evaluate_points(model, nn.CrossEntropyLoss(), (torch.randn(4, 70), torch.zeros(3)), origin, dirs, [[0, 0]])
    with pytest.raises(BnlabError, match="vmap"):
        evaluate_points(model, nn.CrossEntropyLoss(), batch, origin, dirs, [[0, 0]], "recalibrated", strategy="vmap")


def test_data_hash_identifies_data() -> None:
    x, y = torch.randn(4, 3), torch.arange(4)
    assert data_hash([(x, y)]) == data_hash([(x.clone(), y.clone())])
    x2 = x.clone()
    x2[0, 0] += 1e-3
    assert data_hash([(x, y)]) != data_hash([(x2, y)])


@pytest.mark.slow
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_compiled_forward_matches_eager(bn_mode: str) -> None:
    torch.manual_seed(5)
    model = _trained(_cnn(nn.BatchNorm2d), (2, 8, 8))
    batch = (torch.randn(12, 2, 8, 8), torch.randint(0, 4, (12,)))
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=3)
    coords = np.array([[0.0, 0.0], [0.5, -0.5], [1.0, 0.25]])
    eager = evaluate_points(model, nn.CrossEntropyLoss(), batch, origin, dirs, coords, bn_mode)
    compiled = evaluate_points(model, nn.CrossEntropyLoss(), batch, origin, dirs, coords, bn_mode, compile=True)
    np.testing.assert_allclose(compiled["loss"], eager["loss"], rtol=1e-5, atol=1e-5)


def test_first_layer_products_are_used_and_removed() -> None:
    from bnlab.landscape.points import _linear_first_layer

    torch.manual_seed(6)
    model = _mlp(nn.BatchNorm1d).eval()
    x = torch.randn(8, 70)
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=0)
    with torch.no_grad(), _linear_first_layer(model, [(x, None)], origin, dirs, None) as first:
        assert first is not None and first.name == "0"  # fan-in 70 >= 64: on by default
        first.coeffs[:] = [0.5, -0.25]
        fast = model[0](x)
        slow = nn.functional.linear(x, origin["0.weight"] + 0.5 * dirs[0]["0.weight"] - 0.25 * dirs[1]["0.weight"],
                                    origin["0.bias"])
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
        other = torch.randn(3, 70)  # an input it has no products for: the plain layer
        torch.testing.assert_close(model[0](other), nn.functional.linear(other, model[0].weight, model[0].bias))
    assert "forward" not in model[0].__dict__
    cnn = _cnn(nn.BatchNorm2d)
    with _linear_first_layer(cnn, [(torch.randn(2, 2, 8, 8), None)], model_origin(cnn),
                             random_directions(model_origin(cnn), 2, seed=0), None) as first:
        assert first is None  # fan-in 18: the combination would cost more than the convolution


class _FlattenFirst(nn.Module):
    """Flattens in forward (no module), as bnlab's MLPs do: the first Linear sees a reshape of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 16)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.fc(x.flatten(1)))))


@pytest.mark.parametrize("bn_mode", ["train", "recalibrated"])
def test_first_layer_products_through_a_reshape(bn_mode: str) -> None:
    from bnlab.landscape.points import _find_first_layer

    torch.manual_seed(7)
    model = _trained(_FlattenFirst(), (1, 8, 8))
    batch = (torch.randn(20, 1, 8, 8), torch.randint(0, 3, (20,)))
    assert _find_first_layer(model, batch[0])[0] == "fc"
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=2, one_d="filter")
    coords = np.array([[0.0, 0.0], [0.6, -0.2]])
    got = evaluate_points(model, nn.CrossEntropyLoss(), batch, origin, dirs, coords, bn_mode, linear_first_layer=True)
    ref = _reference(model, nn.CrossEntropyLoss(), [batch], [batch], origin, dirs, coords, bn_mode, (nn.BatchNorm1d,))
    np.testing.assert_allclose(got["loss"], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bn_mode", ["train", "eval", "recalibrated"])
def test_float64_model_keeps_float64_precision(bn_mode: str) -> None:
    """A float64 net's landscape equals a float64 reference to 1e-12: no output is cast down to float32 (it used to
    be, with errors up to 1.5e-7 on this net)."""
    torch.manual_seed(3)
    model = _cnn(BatchNorm).double().train()
    with torch.no_grad():  # running statistics that differ from their init
        for _ in range(3):
            model(torch.randn(16, 2, 8, 8, dtype=torch.float64) * 2 + 0.5)
    batches = [(torch.randn(10, 2, 8, 8, dtype=torch.float64), torch.randint(0, 4, (10,)))]
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=1, one_d="filter")
    coords = np.array([[0.0, 0.0], [0.4, -0.7], [-1.0, 1.0]])
    loss_fn = nn.CrossEntropyLoss()
    got = evaluate_points(model, loss_fn, batches, origin, dirs, coords, bn_mode)
    ref = _reference(model, loss_fn, batches, batches, origin, dirs, coords, bn_mode, (BatchNorm,))
    np.testing.assert_allclose(got["loss"], ref, rtol=1e-12, atol=1e-12)
