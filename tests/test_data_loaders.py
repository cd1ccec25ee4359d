"""Data sets: documented shapes and splits, fixed splits, CIFAR-10 folder handling, NaN detection."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bnlab.data import DATASETS, load_dataset
from bnlab.data.dataset import _all_finite, make_dataset
from bnlab.errors import BnlabError

SHAPES = {
    "mnist5k": ((1, 28, 28), 4000, 1000),
    "digits": ((1, 8, 8), 1437, 360),
    "mnist1d": ((1, 40), 4000, 1000),
    "synthetic": ((20,), 4000, 1000),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_classification_sets_have_documented_shapes(name: str) -> None:
    ds = load_dataset(name)
    shape, n_train, n_test = SHAPES[name]
    assert ds.in_shape == shape and ds.task == "classification" and ds.num_classes == 10
    assert ds.train_x.shape == (n_train, *shape) and ds.test_x.shape == (n_test, *shape)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert set(ds.train_y.unique().tolist()) == set(range(10))
    assert torch.isfinite(ds.train_x).all()


def test_image_sets_are_scaled_to_unit_interval_and_fixed() -> None:
    for name in ("mnist5k", "digits"):
        a, b = load_dataset(name, seed=0), load_dataset(name, seed=5)
        assert float(a.train_x.min()) == 0.0 and float(a.train_x.max()) == 1.0
        assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)  # the split ignores the seed


def test_mnist5k_split_is_balanced_and_disjoint() -> None:
    ds = load_dataset("mnist5k")
    assert torch.bincount(ds.train_y).tolist() == [400] * 10
    assert torch.bincount(ds.test_y).tolist() == [100] * 10
    train_rows = {row.numpy().tobytes() for row in ds.train_x.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in ds.test_x.flatten(1))


def test_subsets_and_unknown_names() -> None:
    ds = load_dataset("mnist5k", train_size=100, test_size=50)
    full = load_dataset("mnist5k")
    assert len(ds.train_x) == 100 and len(ds.test_x) == 50 and torch.equal(ds.train_x, full.train_x[:100])
    with pytest.raises(BnlabError, match="train_size"):
        load_dataset("digits", train_size=10**6)
    with pytest.raises(BnlabError, match="unknown dataset 'mnist'.*mnist5k"):
        load_dataset("mnist")
    with pytest.raises(BnlabError, match="dataset 'digits'"):
        load_dataset("digits", colour=1)
    assert set(DATASETS) == {"mnist5k", "digits", "mnist1d", "cifar10", "synthetic", "dln_regression"}


def test_synthetic_is_seeded() -> None:
    a, b, c = (load_dataset("synthetic", seed=s, n_train=50, n_test=20) for s in (1, 1, 2))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.train_x, c.train_x)


def test_dln_regression_targets_are_a_linear_map() -> None:
    ds = load_dataset("dln_regression", seed=3, n_train=200, n_test=30)
    assert ds.task == "regression" and ds.num_classes == 0 and ds.out_features == 10
    assert ds.train_y.dtype == torch.float32 and ds.train_y.shape == (200, 10)
    x = torch.cat([ds.train_x, ds.test_x]).double()
    y = torch.cat([ds.train_y, ds.test_y]).double()
    a = torch.linalg.lstsq(x, y).solution  # (10, 10): y = x a exactly, up to float32 rounding
    assert (x @ a - y).abs().max() < 1e-5


def test_non_finite_data_is_rejected() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(BnlabError, match="'bad'.*train_x.*NaN"):
        make_dataset("bad", x, np.zeros(4), x[:2] * 0, np.zeros(2), num_classes=2)
    for bad in (np.inf, -np.inf):
        x[2, 1] = bad
        with pytest.raises(BnlabError, match="test_x"):
            make_dataset("bad", x[:2] * 0, np.zeros(2), x, np.zeros(4), num_classes=2)
    big = np.full((4, 3), 3e38, dtype=np.float32)  # finite values whose float32 sum overflows: still accepted
    assert make_dataset("big", big, np.zeros(4), big, np.zeros(4), num_classes=2).train_x.shape == (4, 3)
    t = torch.full((5,), 3e38)
    assert _all_finite(t) and not _all_finite(torch.tensor([1.0, float("nan")]))
    assert _all_finite(torch.arange(3))


# ----------------------------------------------------------------------------- CIFAR-10 from a local folder

def _write_cifar(folder: Path, per_batch: int = 6) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per_batch).tolist(), b"batch_label": name.encode()}
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle)


def test_cifar10_from_a_tiny_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    for where in (folder, tmp_path):  # the folder itself or its parent
        ds = load_dataset("cifar10", data_dir=str(where))
        assert ds.in_shape == (3, 32, 32) and ds.train_x.shape == (30, 3, 32, 32) and ds.test_x.shape == (6, 3, 32,
                                                                                                            32)
    with (folder / "data_batch_1").open("rb") as handle:
        raw = pickle.load(handle)
    first = torch.tensor(raw[b"data"][0].reshape(3, 32, 32) / 255.0, dtype=torch.float32)
    assert torch.allclose(ds.train_x[0], first) and ds.train_y[0].item() == raw[b"labels"][0]


def test_cifar10_missing_or_malformed_says_where_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BNLAB_DATA_DIR", raising=False)
    with pytest.raises(BnlabError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10")
    with pytest.raises(BnlabError, match="no CIFAR-10.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(BnlabError, match="malformed CIFAR-10 batch.*data_batch_3"):
        load_dataset("cifar10", data_dir=str(folder))
    (folder / "data_batch_3").unlink()
    with pytest.raises(BnlabError, match="missing 'data_batch_3'"):
        load_dataset("cifar10", data_dir=str(folder))


def test_cifar10_pickle_cannot_run_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(BnlabError, match="forbidden global"):
        load_dataset("cifar10", data_dir=str(folder))
