"""Directions: filter-wise normalisation, 1-D policies, orthogonalisation, seeds, PCA, lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.landscape.directions import (
    dot,
    line_direction,
    model_origin,
    normalize_direction,
    orthogonalize,
    pca_directions,
    random_directions,
)


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_filter_normalisation_matches_each_filter_norm() -> None:
    origin = model_origin(_net())
    (d,) = random_directions(origin, 1, seed=0, norm="filter", one_d="zero")
    for name, w in origin.items():
        if w.dim() <= 1:
            assert torch.count_nonzero(d[name]) == 0, name  # Li's biasbn: 1-D entries are zero
            continue
        for f in range(w.shape[0]):
            assert d[name][f].norm().item() == pytest.approx(w[f].norm().item(), rel=1e-5)


def test_layer_and_none_and_one_d_policies() -> None:
    origin = model_origin(_net())
    gen = torch.Generator().manual_seed(1)
    raw = {k: torch.randn(v.shape, generator=gen) for k, v in origin.items()}
    layer = normalize_direction(raw, origin, norm="layer", one_d="filter")
    none = normalize_direction(raw, origin, norm="none", one_d="include")
    filt = normalize_direction(raw, origin, norm="filter", one_d="filter")
    incl = normalize_direction(raw, origin, norm="filter", one_d="include")
    for k, w in origin.items():
        assert torch.equal(none[k], raw[k])
        assert layer[k].norm().item() == pytest.approx(w.norm().item(), rel=1e-5)
        if w.dim() == 1:
            assert filt[k].norm().item() == pytest.approx(w.norm().item(), rel=1e-5)  # one filter
            assert torch.equal(incl[k], raw[k])  # raw Gaussian, not rescaled
    with pytest.raises(BnlabError, match="norm"):
        normalize_direction(raw, origin, norm="model")
    with pytest.raises(BnlabError, match="one_d"):
        normalize_direction(raw, origin, one_d="biasbn")


def test_directions_reproducible_from_seed() -> None:
    origin = model_origin(_net())
    a = random_directions(origin, 2, seed=7, one_d="filter")
    b = random_directions(origin, 2, seed=7, one_d="filter")
    c = random_directions(origin, 2, seed=8, one_d="filter")
    for da, db in zip(a, b):
        assert all(torch.equal(da[k], db[k]) for k in da)
    assert not torch.equal(a[0]["0.weight"], c[0]["0.weight"])
    assert not torch.equal(a[0]["0.weight"], a[1]["0.weight"])


def test_orthogonalised_after_normalisation() -> None:
    origin = model_origin(_net())
    plain = random_directions(origin, 2, seed=2, one_d="filter")
    ortho = random_directions(origin, 2, seed=2, one_d="filter", orthogonal=True)
    assert all(torch.allclose(ortho[0][k], plain[0][k]) for k in origin)  # the first is kept
    assert abs(dot(ortho[0], ortho[1])) < 1e-6 * dot(ortho[0], ortho[0])
    assert dot(ortho[1], ortho[1]) == pytest.approx(dot(plain[1], plain[1]), rel=1e-5)  # scale kept
    with pytest.raises(BnlabError, match="dependent"):
        orthogonalize([plain[0], plain[0]])


def test_pca_matches_sklearn_and_projects_the_path() -> None:
    from sklearn.decomposition import PCA

    torch.manual_seed(0)
    traj = [{"a": torch.randn(3, 4), "b": torch.randn(5)} for _ in range(6)]
    pca = pca_directions(traj, count=2)
    rows = np.stack([np.concatenate([(t["a"] - traj[-1]["a"]).numpy().ravel(),
                                     (t["b"] - traj[-1]["b"]).numpy().ravel()]) for t in traj]).astype(np.float64)
    ref = PCA(n_components=2).fit(rows)
    np.testing.assert_allclose(pca.explained, ref.explained_variance_ratio_, rtol=1e-5)
    for d, comp in zip(pca.directions, ref.components_):
        flat = np.concatenate([d["a"].numpy().ravel(), d["b"].numpy().ravel()])
        assert abs(abs(float(flat @ comp)) - 1.0) < 1e-5  # same axis up to sign
    basis = np.stack([np.concatenate([d["a"].numpy().ravel(), d["b"].numpy().ravel()]) for d in pca.directions])
    np.testing.assert_allclose(pca.path.numpy(), rows @ basis.T, atol=1e-5)
    assert np.allclose(pca.path.numpy()[-1], 0.0)  # the last checkpoint is the origin
    with pytest.raises(BnlabError, match="checkpoints"):
        pca_directions(traj[:2], count=2)


def test_line_direction() -> None:
    a = {"w": torch.zeros(2), "v": torch.ones(3)}
    b = {"w": torch.tensor([1.0, 2.0]), "v": torch.zeros(3)}
    d = line_direction(a, b)
    assert torch.equal(d["w"], b["w"]) and torch.equal(d["v"], -torch.ones(3))
    with pytest.raises(BnlabError, match="different parameters"):
        line_direction(a, {"w": torch.zeros(2)})
