"""Atomic file writes: write a temporary file in the same folder, fsync, then rename over the target.

A reader (or a rerun after SIGKILL) sees either the old file or the complete new one, never a torn write.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 1) -> Path:
    """JSON with NaN/inf kept as the JS literals Python writes (json.loads reads them back)."""
    return write_text(path, json.dumps(data, indent=indent, sort_keys=False, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """numpy / torch scalars and arrays -> plain Python for json."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
