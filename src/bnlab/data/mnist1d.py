"""MNIST-1D (Greydanus 2020): 1-D procedurally generated digits, `mnist1d.data.make_dataset` with its default
arguments (4000 train / 1000 test, length 40, seed 42). Generated locally, never downloaded; cached.
Shape (1, 40) -- one channel of length 40.
"""

from __future__ import annotations

import numpy as np

from bnlab.data.cache import cached_arrays
from bnlab.data.dataset import Dataset, make_dataset


def _build() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args  # imported on first use (start-up cost, like sklearn)
    from mnist1d.data import make_dataset as generate

    data = generate(get_dataset_args())
    return {"train_x": data["x"].astype(np.float32), "train_y": data["y"].astype(np.int64),
            "test_x": data["x_test"].astype(np.float32), "test_y": data["y_test"].astype(np.int64)}


def load_mnist1d() -> Dataset:
    a = cached_arrays("mnist1d-v1", _build)
    return make_dataset("mnist1d", a["train_x"][:, None, :], a["train_y"], a["test_x"][:, None, :], a["test_y"],
                        num_classes=10)
