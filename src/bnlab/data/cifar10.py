"""CIFAR-10 from a local folder in the standard python format (never downloaded by bnlab).

`data_dir` is either the folder `cifar-10-batches-py` itself or a folder containing it; it must hold
`data_batch_1` ... `data_batch_5` and `test_batch`, each a pickled dict with b"data" (N, 3072) uint8 and
b"labels" (N,) ints. The files are read with a restricted unpickler that only builds plain containers and numpy
arrays (a malicious pickle cannot run code). Pixels are scaled to [0, 1]; shape (3, 32, 32).
A missing or malformed folder raises BnlabError saying where to get the data.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bnlab.data.dataset import Dataset, make_dataset
from bnlab.errors import BnlabError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
_HINT = f"download {URL} and extract it, then pass the folder 'cifar-10-batches-py' as --data-dir"

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _resolve(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise BnlabError(f"cifar10 needs a data folder: {_HINT}")
    root = Path(data_dir).expanduser()
    for folder in (root, root / "cifar-10-batches-py"):
        if (folder / TEST_FILE).is_file():
            return folder
    raise BnlabError(f"no CIFAR-10 python-format batches in '{root}': {_HINT}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise BnlabError(f"CIFAR-10 folder is missing '{path.name}' ({path.parent}): {_HINT}")
    try:
        with path.open("rb") as handle:
            batch = _SafeUnpickler(io.BufferedReader(handle), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BnlabError(f"malformed CIFAR-10 batch '{path}' ({exc}): {_HINT}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise BnlabError(f"malformed CIFAR-10 batch '{path}': data shape {data.shape}, {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir: str | Path | None = None) -> Dataset:
    folder = _resolve(data_dir)
    parts = [_read_batch(folder / name) for name in TRAIN_FILES]
    train_x = np.concatenate([p[0] for p in parts])  # (50000, 3, 32, 32) uint8
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _read_batch(folder / TEST_FILE)
    return make_dataset("cifar10", train_x / np.float32(255), train_y, test_x / np.float32(255), test_y,
                        num_classes=10)
