"""Planes, lines, interpolation, PCA planes: values, .npz round trip, resume, row fan-out, roughness."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.landscape import (
    Curve,
    Surface,
    evaluate_points,
    interpolate,
    merge_rows,
    pca_plane,
    plane_points,
    random_line,
    random_plane,
    roughness,
)
from bnlab.landscape.roughness import negative_curvature_fraction, quadratic_residual


def _setup() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Linear(10, 3))
    return model, (torch.randn(32, 6), torch.randint(0, 3, (32,)))


def test_plane_values_layout_and_round_trip(tmp_path) -> None:
    model, batch = _setup()
    s = random_plane(model, nn.CrossEntropyLoss(), batch, radius=0.5, steps=5, seed=3, bn_mode="eval",
                     one_d="filter", out=tmp_path / "p.npz", info={"model": "mlp"})
    assert s.loss.shape == (5, 5) and s.complete and s.x[2] == 0 and s.y[2] == 0
    direct = evaluate_points(model, nn.CrossEntropyLoss(), batch, s.origin, s.directions, plane_points(s.x, s.y),
                             "eval")
    np.testing.assert_allclose(s.loss.ravel(), direct["loss"])  # loss[j, i] at (x[i], y[j])
    with torch.no_grad():
        model.eval()
        assert s.loss[2, 2] == pytest.approx(float(nn.CrossEntropyLoss()(model(batch[0]), batch[1])), abs=1e-6)
    loaded = Surface.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(loaded.loss, s.loss)
    assert (loaded.bn_mode, loaded.seed, loaded.one_d, loaded.data_hash) == ("eval", 3, "filter", s.data_hash)
    assert loaded.info["model"] == "mlp"
    assert all(torch.equal(loaded.directions[1][k], s.directions[1][k]) for k in s.origin)
    with pytest.raises(BnlabError, match="not a surface|1-D"):
        random_line(model, nn.CrossEntropyLoss(), batch, steps=5).save(tmp_path / "c.npz")
        Surface.load(tmp_path / "c.npz")
    assert isinstance(Curve.load(tmp_path / "c.npz"), Curve)


def test_resume_after_interruption(tmp_path) -> None:
    model, batch = _setup()
    out = tmp_path / "plane.npz"
    full = random_plane(model, nn.CrossEntropyLoss(), batch, steps=7, seed=1)
    calls = []

    def stop_in_third_block(done: int, total: int) -> None:
        calls.append(done)
        if done == 29:  # inside rows 4-5 (blocks of 2 rows = 14 points)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        random_plane(model, nn.CrossEntropyLoss(), batch, steps=7, seed=1, out=out, rows_per_block=2,
                     progress=stop_in_third_block)
    partial = Surface.load(out)
    assert partial.rows_done == 4 and not partial.complete and np.isnan(partial.loss[4:]).all()
    seen = []
    resumed = random_plane(model, nn.CrossEntropyLoss(), batch, steps=7, seed=1, out=out, rows_per_block=2,
                           progress=lambda d, t: seen.append(d))
    assert min(seen) > 4 * 7 - 1 and len(seen) == 3 * 7  # only rows 4..6 were evaluated
    np.testing.assert_allclose(resumed.loss, full.loss)
    with pytest.raises(BnlabError, match="different landscape"):
        random_plane(model, nn.CrossEntropyLoss(), batch, steps=7, seed=2, out=out)


def test_rows_fan_out_and_merge() -> None:
    model, batch = _setup()
    full = random_plane(model, nn.CrossEntropyLoss(), batch, steps=5, seed=4)
    parts = [random_plane(model, nn.CrossEntropyLoss(), batch, steps=5, seed=4, rows=r) for r in ((0, 2), (2, 5))]
    assert np.isnan(parts[0].loss[2:]).all()
    np.testing.assert_allclose(merge_rows(parts).loss, full.loss)
    with pytest.raises(BnlabError, match="miss row"):
        merge_rows(parts[:1])


def test_bf16_plane_reports_its_error() -> None:
    model, batch = _setup()
    s = random_plane(model, nn.CrossEntropyLoss(), batch, steps=3, precision="bf16")
    assert s.precision == "bf16" and s.bf16_error is not None and 0 < s.bf16_error < 0.1


def test_interpolation_hits_both_checkpoints() -> None:
    model, batch = _setup()
    start = copy.deepcopy(model.state_dict())
    end = {k: v + 0.3 for k, v in start.items() if v.is_floating_point()}
    c = interpolate(model, nn.CrossEntropyLoss(), batch, start, end, steps=31, bn_mode="train")
    at_end = copy.deepcopy(model)
    at_end.load_state_dict({**start, **end})
    at_end.train()
    for m in at_end.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.track_running_stats = False
    with torch.no_grad():
        want = float(nn.CrossEntropyLoss()(at_end(batch[0]), batch[1]))
    assert c.loss[np.flatnonzero(np.isclose(c.t, 1.0))[0]] == pytest.approx(want, abs=1e-5)
    with pytest.raises(BnlabError, match="shape"):
        interpolate(model, nn.CrossEntropyLoss(), batch, start, {**end, "0.weight": torch.zeros(2)})


def test_pca_plane_path_ends_at_centre() -> None:
    model, batch = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    traj = []
    for _ in range(6):
        traj.append({k: v.detach().clone() for k, v in model.named_parameters()})
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(batch[0]), batch[1]).backward()
        opt.step()
    traj.append({k: v.detach().clone() for k, v in model.named_parameters()})
    s = pca_plane(model, nn.CrossEntropyLoss(), batch, traj, steps=5)
    assert s.kind == "pca_plane" and s.path.shape == (7, 2) and np.allclose(s.path[-1], 0, atol=1e-6)
    assert abs(s.path[:, 0]).max() <= s.x.max() and sum(s.info["explained"]) <= 1 + 1e-9


def test_roughness_against_closed_form() -> None:
    x = np.linspace(-1, 1, 21)
    y = np.linspace(-1, 1, 21)
    xx, yy = np.meshgrid(x, y)
    bowl = 1.5 * xx**2 + 0.5 * yy**2  # second derivatives 3 and 1 -> (|3| + |1|) / 2 = 2 everywhere
    assert roughness(bowl, x, y) == pytest.approx(2.0)
    assert roughness(bowl, x, y, radius=0.5) == pytest.approx(2.0)
    assert negative_curvature_fraction(bowl, x, y) == 0.0
    assert roughness(2 * bowl + 7, x, y) == pytest.approx(4.0)  # loss units, shift-free
    wavy = bowl + 0.05 * np.sin(20 * xx)
    assert roughness(wavy, x, y) > roughness(bowl, x, y)
    assert roughness(x**3, x) == pytest.approx(np.mean(np.abs(6 * x[1:-1])), rel=1e-6)  # curve: |6x|
    cliff = bowl.copy()
    cliff[0, 0] = np.inf
    assert np.isfinite(roughness(cliff, x, y))
    with pytest.raises(BnlabError, match="radius"):
        roughness(bowl, x, y, radius=0.0)


def test_ruggedness_against_an_orthogonal_residual() -> None:
    """Reference oracle (float64): a bowl plus a residual e built orthogonal to the quadratic design by an
    independent route (scipy's null space of the design, not a least-squares fit) must give exactly
    sqrt(‖e‖² / ‖z − mean z‖²); any bowl, however sharp, gives 0; scaling and adding a quadratic change nothing."""
    from scipy.linalg import null_space

    x = np.linspace(-1, 1, 11)
    y = np.linspace(-1, 1, 11)
    xx, yy = np.meshgrid(x, y)
    inside = np.hypot(xx, yy) <= 0.8 + 1e-12
    px, py = xx[inside], yy[inside]
    design = np.stack([np.ones_like(px), px, py, px**2, px * py, py**2], axis=1)  # (m, 6)
    basis = null_space(design.T)  # (m, m - 6): every vector here is orthogonal to all quadratics
    e = basis @ np.random.default_rng(0).normal(size=basis.shape[1]) * 0.3  # (m,)
    bowl = 3.0 * xx**2 + 0.5 * xx * yy + 0.2 * yy**2 - xx + 2.0
    surface = bowl.copy()
    surface[inside] += e
    surface[~inside] = 1e6  # outside the radius: never seen by the fit
    z = surface[inside]
    want = np.sqrt(np.sum(e**2) / np.sum((z - z.mean()) ** 2))
    assert quadratic_residual(surface, x, y, radius=0.8) == pytest.approx(want, rel=1e-9)
    assert quadratic_residual(bowl, x, y) == pytest.approx(0.0, abs=1e-7)
    assert quadratic_residual(50 * bowl, x, y) == pytest.approx(0.0, abs=1e-7)  # sharpness is not ruggedness
    assert quadratic_residual(7 * surface + 4 * xx**2, x, y, radius=0.8) == pytest.approx(
        np.sqrt(np.sum((7 * e) ** 2) / np.sum((7 * z + 4 * px**2 - np.mean(7 * z + 4 * px**2)) ** 2)), rel=1e-9)
    assert quadratic_residual(np.full((11, 11), 3.0), x, y) == 0.0
    cliff = bowl + 5.0 * (xx > 0.3)  # a step: a smooth bowl explains little of it
    assert quadratic_residual(cliff, x, y) > 0.2
    with pytest.raises(BnlabError, match="6 grid points"):
        quadratic_residual(bowl, x, y, radius=0.1)
