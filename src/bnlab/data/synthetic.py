"""Procedural data sets, fully determined by their seed.

* `synthetic`: Gaussian-input classification labelled by a random teacher net: x ~ N(0, I_d),
  logits = W2 tanh(W1 x) with W1 (h, d), W2 (k, h) Gaussian (variance 1/fan_in), y = argmax(logits + noise).
* `dln_regression`: Santurkar et al.'s deep-linear-net task: x ~ N(0, I_10), y = A x with A (10, 10) "a random
  Gaussian matrix", A_ij ~ N(0, a_std²) (default 1, the plain reading), plus optional Gaussian target noise.
"""

from __future__ import annotations

import numpy as np

from bnlab.data.dataset import Dataset, make_dataset
from bnlab.errors import BnlabError


def _positive(name: str, **values: int) -> None:
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise BnlabError(f"{name}: {key} must be an integer >= 1, got {v!r}")


def load_synthetic(seed: int = 0, n_train: int = 4000, n_test: int = 1000, dim: int = 20, num_classes: int = 10,
                   hidden: int = 50, label_noise: float = 0.0) -> Dataset:
    _positive("synthetic", n_train=n_train, n_test=n_test, dim=dim, num_classes=num_classes, hidden=hidden)
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 1.0 / np.sqrt(dim), (hidden, dim))  # (h, d)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(hidden), (num_classes, hidden))  # (k, h)
    x = rng.normal(size=(n_train + n_test, dim))  # (N, d)
    logits = np.tanh(x @ w1.T) @ w2.T  # (N, k)
    logits = logits + label_noise * rng.normal(size=logits.shape)
    y = logits.argmax(axis=1)
    return make_dataset("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=num_classes)


def load_dln_regression(seed: int = 0, n_train: int = 4000, n_test: int = 1000, dim: int = 10,
                        noise: float = 0.0, a_std: float = 1.0) -> Dataset:
    _positive("dln_regression", n_train=n_train, n_test=n_test, dim=dim)
    if not (isinstance(a_std, (int, float)) and np.isfinite(a_std) and a_std > 0):
        raise BnlabError(f"dln_regression: a_std must be a finite number > 0, got {a_std!r}")
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, float(a_std), (dim, dim))  # (d, d)
    x = rng.normal(size=(n_train + n_test, dim))  # (N, d)
    y = x @ a.T + noise * rng.normal(size=(n_train + n_test, dim))  # (N, d)
    return make_dataset("dln_regression", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=0,
                        task="regression")
