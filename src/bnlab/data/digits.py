"""scikit-learn's 8x8 digits (1797 images, 10 classes; `sklearn.datasets.load_digits`, bundled, no download).

Fixed split: one shuffled order (numpy seed 0), the first 1437 train and the last 360 test (80/20). Pixels are
scaled from 0..16 to [0, 1]; shape (1, 8, 8). Cached
like MNIST 5k (`bnlab.data.cache`).
"""

from __future__ import annotations

import numpy as np

from bnlab.data.cache import cached_arrays
from bnlab.data.dataset import Dataset, make_dataset

N_TRAIN = 1437


def _build() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load  # importing sklearn costs ~1 CPU-s: cached below

    bunch = sk_load()
    return {"x": bunch.data.astype(np.uint8), "y": bunch.target.astype(np.int64)}


def load_digits() -> Dataset:
    a = cached_arrays("digits-v1", _build)
    x = (a["x"] / np.float32(16)).reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8)
    y = a["y"]
    order = np.random.RandomState(0).permutation(len(x))
    tr, te = order[:N_TRAIN], order[N_TRAIN:]
    return make_dataset("digits", x[tr], y[tr], x[te], y[te], num_classes=10)
