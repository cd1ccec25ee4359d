"""Atomic file writes: write a temporary file in the same folder, fsync it, rename it over the target, then fsync
the folder.

A reader (or a rerun after SIGKILL) sees either the old file or the complete new one, never a torn write. The
folder's fsync makes the rename itself durable: without it a power cut can leave the folder entry pointing at the
old file (or at nothing) although the new file's data is on disk. Platforms that cannot open a folder for fsync
(Windows) skip that step.

File modes follow the umask, as `open()` would give them (0o666 & ~umask: 0644 under the usual 022, 0664 under a
group's 002). `tempfile.mkstemp` creates its file 0600 whatever the umask, which made every results folder
unreadable to colleagues on a shared disk and to a web server; the temporary file is therefore chmod-ed before it
is renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bnlab.config import json_leaf


def fsync_folder(folder: str | os.PathLike) -> bool:
    """fsync `folder` so a rename inside it survives a power cut; False where the platform does not allow it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        os.fsync(fd)
    except OSError:  # e.g. a file system that refuses fsync on folders
        return False
    finally:
        os.close(fd)
    return True


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status, kernel >= 4.7);
    elsewhere by setting and restoring it (not atomic against another thread doing the same)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from the umask: 0o666 & ~umask."""
    return 0o666 & ~current_umask()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see the module docstring), with the umask's mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), file_mode())  # mkstemp's 0600 would lock colleagues and web servers out
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
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
    return write_text(path, json.dumps(data, indent=indent, sort_keys=False, default=json_leaf) + "\n")
