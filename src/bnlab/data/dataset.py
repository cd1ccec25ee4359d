"""The in-memory data set every loader returns.

All tensors are float32 inputs and int64 class labels (classification) or float32 targets (regression), held in
memory (a few MB for the CPU-scale sets). Inputs keep their natural shape `in_shape` (e.g. (1, 28, 28)); MLPs
flatten them. `check_finite` rejects NaN / inf so a corrupt file fails loudly instead of poisoning a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from bnlab.errors import BnlabError

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Dataset:
    """train_x (N, *in_shape) float32, train_y (N,) int64 or (N, out) float32; the same for test."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    in_shape: tuple[int, ...]
    num_classes: int  # 0 for regression
    task: Task = "classification"

    @property
    def out_features(self) -> int:
        """Size of the model output: the number of classes, or the target dimension for regression."""
        return self.num_classes if self.task == "classification" else int(self.train_y[0].numel())

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor on `device` (self when already there)."""
        if self.train_x.device == torch.device(device):
            return self
        move = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
        return Dataset(self.name, **move, in_shape=self.in_shape, num_classes=self.num_classes, task=self.task)


def _all_finite(arr: np.ndarray | torch.Tensor) -> bool:
    """Exact, and fast in the common case: a sum containing NaN/inf is NaN/inf, so a finite sum proves every value
    finite (one reduction, no boolean copy); only a non-finite sum (bad data, or overflow) takes the full check."""
    if isinstance(arr, torch.Tensor):
        if not arr.is_floating_point():
            return True
        return bool(torch.isfinite(arr.sum())) or bool(torch.isfinite(arr).all())
    if not np.issubdtype(arr.dtype, np.floating):
        return True
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is expected here, not an error
        total = arr.sum()
    return bool(np.isfinite(total)) or bool(np.isfinite(arr).all())


def check_finite(name: str, **arrays: np.ndarray | torch.Tensor) -> None:
    """BnlabError naming the data set and array when any value is NaN or infinite."""
    for key, arr in arrays.items():
        if not _all_finite(arr):
            raise BnlabError(f"data set '{name}': {key} contains NaN or infinite values")


def make_dataset(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, task: Task = "classification") -> Dataset:
    """Validate numpy arrays and wrap them as float32 / int64 tensors (copies, so cached arrays stay intact)."""
    check_finite(name, train_x=train_x, test_x=test_x, train_y=train_y, test_y=test_y)
    label_dtype = torch.int64 if task == "classification" else torch.float32
    x_tr = torch.tensor(train_x, dtype=torch.float32)
    x_te = torch.tensor(test_x, dtype=torch.float32)
    y_tr = torch.tensor(train_y, dtype=label_dtype)
    y_te = torch.tensor(test_y, dtype=label_dtype)
    if x_tr.shape[1:] != x_te.shape[1:] or len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise BnlabError(f"data set '{name}': inconsistent shapes {tuple(x_tr.shape)}, {tuple(y_tr.shape)}, "
                         f"{tuple(x_te.shape)}, {tuple(y_te.shape)}")
    if task == "classification" and len(y_tr) and (int(y_tr.min()) < 0 or int(y_tr.max()) >= num_classes):
        raise BnlabError(f"data set '{name}': labels outside 0..{num_classes - 1}")
    return Dataset(name, x_tr, y_tr, x_te, y_te, tuple(x_tr.shape[1:]), num_classes, task)


def take(dataset: Dataset, train_size: int | None = None, test_size: int | None = None) -> Dataset:
    """The first `train_size` / `test_size` examples (loaders store examples in a fixed shuffled order)."""
    for key, n, have in (("train_size", train_size, len(dataset.train_x)), ("test_size", test_size,
                                                                          len(dataset.test_x))):
        if n is not None and (not isinstance(n, int) or not 1 <= n <= have):
            raise BnlabError(f"{key} must be an integer in 1..{have} for '{dataset.name}', got {n!r}")
    if train_size is None and test_size is None:
        return dataset
    tr = slice(0, train_size)
    te = slice(0, test_size)
    return Dataset(dataset.name, dataset.train_x[tr], dataset.train_y[tr], dataset.test_x[te], dataset.test_y[te],
                   dataset.in_shape, dataset.num_classes, dataset.task)
