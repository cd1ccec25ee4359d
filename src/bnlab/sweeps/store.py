"""The trial store: one atomically written JSON file per trial, so finished work is never lost or redone.

A sweep folder holds ``<key>.json`` for every trial that ran, where ``key`` is `Trial.key()` (a hash of the trial
function, its parameters, the data it reads and the code that computes it). A record is plain data::

    {"key", "claim", "name", "fn", "params",
     "data": {"dataset", "dir", "fingerprint"} | None,   # the folder-backed data the trial read (Trial.data)
     "code_fingerprint": str,                             # hash of the code that computed it (trial.code_fingerprint)
     "status": "ok" | "failed", "result": dict | None, "error": str | None,
     "attempts": int, "duration_s": float}

Why this layout:

* **Atomic files** (`bnlab.atomic.write_json`: temp file + fsync + rename): a SIGKILL at any point leaves either no
  file or a complete one. A file that is nevertheless unreadable (truncated by hand, a foreign file, a disk error)
  counts as *absent*, so the trial is simply recomputed.
* **One file per trial**: two processes running sweeps into the same folder never write the same file at the same
  time for different trials, and there is no shared index to corrupt.
* **A lock per running trial** (`TrialStore.claim`): an exclusive, non-blocking `fcntl.flock` on
  ``.locks/<key>.lock``, so two processes on one folder do not compute the same trial twice. The kernel releases a
  flock when its holder dies, so a killed sweep never leaves a stale lock behind. Lock files are empty and kept
  (deleting a lock file while another process waits on it would let two holders in).

``duration_s`` is the wall time of the last attempt; ``attempts`` counts them all.

Side effects: creates the folder (and ``.locks/``) on first use and deletes temporary files older than an hour
that a killed writer left behind (``.<key>.json.*.tmp``; a live writer's temp file exists for milliseconds).
POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bnlab.atomic import write_json
from bnlab.errors import BnlabError

STATUSES: tuple[str, ...] = ("ok", "failed")
RECORD_FIELDS: tuple[str, ...] = (
    "key", "claim", "name", "fn", "params", "data", "code_fingerprint", "status", "result", "error", "attempts",
    "duration_s",
)


def _valid_record(record: Any, key: str) -> bool:
    return (
        isinstance(record, dict)
        and all(f in record for f in RECORD_FIELDS)
        and record["key"] == key
        and record["status"] in STATUSES
        and (record["status"] != "ok" or isinstance(record["result"], dict))
    )


def _check_key(key: str) -> str:
    # keys are hex hashes; refusing anything else keeps a key from naming a path outside the folder
    if not isinstance(key, str) or not key or not all(c.isalnum() or c in "-_" for c in key):
        raise BnlabError(f"invalid trial key {key!r}: expected letters, digits, '-' or '_'")
    return key


class TrialLock:
    """An exclusive flock on one trial's lock file; release() (or the context exit) lets it go."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TrialLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock must not outlive its object
        self.release()


class TrialStore:
    """Per-trial JSON records in `folder`; see the module docstring for the format and guarantees."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise BnlabError(f"trial store folder {str(self.folder)!r} is a file, not a folder")
        try:
            (self.folder / ".locks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BnlabError(f"cannot create trial store folder {str(self.folder)!r}: {exc.strerror}") from None
        if not os.access(self.folder, os.W_OK):
            raise BnlabError(f"trial store folder {str(self.folder)!r} is not writable")
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self, max_age_s: float = 3600.0) -> None:
        now = time.time()
        for tmp in self.folder.glob(".*.json.*.tmp"):
            try:
                if now - tmp.stat().st_mtime > max_age_s:
                    tmp.unlink()
            except FileNotFoundError:  # another process cleaned it first
                pass

    def path(self, key: str) -> Path:
        return self.folder / f"{_check_key(key)}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record of `key`, or None when absent, unreadable, truncated or not a trial record."""
        try:
            text = self.path(key).read_text(encoding="utf-8")
            record = json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return record if _valid_record(record, key) else None

    def put(self, record: dict[str, Any]) -> None:
        """Write `record` atomically to ``<key>.json`` (replacing any earlier record of that key)."""
        key = record.get("key") if isinstance(record, dict) else None
        if not _valid_record(record, key):
            raise BnlabError(f"not a trial record (needs {', '.join(RECORD_FIELDS)}; status ok|failed)")
        write_json(self.path(key), record)

    def done(self, key: str) -> bool:
        """True when `key` finished successfully (a failed record is retried by the next run)."""
        record = self.get(key)
        return record is not None and record["status"] == "ok"

    def keys(self) -> Iterator[str]:
        """Keys of every readable record in the folder."""
        for p in sorted(self.folder.glob("*.json")):
            if self.get(p.stem) is not None:
                yield p.stem

    def claim(self, key: str) -> TrialLock | None:
        """Take the exclusive lock of `key` without waiting; None when another holder is running it."""
        path = self.folder / ".locks" / f"{_check_key(key)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return TrialLock(fd, path)

    def wait_for(self, key: str) -> TrialLock:
        """Take the lock of `key`, waiting for whoever holds it to finish (or die)."""
        path = self.folder / ".locks" / f"{_check_key(key)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return TrialLock(fd, path)
