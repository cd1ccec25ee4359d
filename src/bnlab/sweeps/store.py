"""The trial store: one atomically written JSON file per trial, so finished work is never lost or redone.

A sweep folder holds ``<key>.json`` for every trial that ran, where ``key`` is `Trial.key()` (a hash of the trial
function, its parameters, the data it reads and the code that computes it). A record is plain data::

    {"key", "claim", "name", "fn", "params",
     "data": {"dataset", "dir", "fingerprint"} | None,   # the folder-backed data the trial read (Trial.data)
     "code_fingerprint": str,                             # hash of the code that computed it (trial.code_fingerprint)
     "status": "ok" | "failed", "result": dict | None, "error": str | None,
     "attempts": int, "duration_s": float,
     "checksum": str}                                     # sha256 of the canonical JSON of "result" (`result_checksum`)

Why this layout:

* **Atomic files** (`bnlab.atomic.write_json`: temp file + fsync + rename): a SIGKILL at any point leaves either no
  file or a complete one. A file that is nevertheless unreadable (truncated by hand, a foreign file, a disk error)
  counts as *absent*, so the trial is simply recomputed.
* **Records are checked, not trusted**: a record is reused only when its fields are all there, its key is the
  file's key, an ``ok`` record's result is a non-empty mapping (every trial function returns named numbers; an
  empty or non-mapping result is damage), and the result's sha256 matches the ``checksum`` written with it (a
  flipped digit, a hand edit, a record from before checksums). A file that fails is reported once on stderr
  (``warning: trial record ... is damaged (...); recomputing it``; `TrialStore.rejected` keeps the reasons), and
  the trial is recomputed: never reused, never a crash. JSON is read with size and depth limits
  (`bnlab.jsonio.read_json`).
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
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bnlab.atomic import write_json
from bnlab.config import json_leaf
from bnlab.errors import BnlabError
from bnlab.jsonio import read_json

STATUSES: tuple[str, ...] = ("ok", "failed")
RECORD_FIELDS: tuple[str, ...] = (
    "key", "claim", "name", "fn", "params", "data", "code_fingerprint", "status", "result", "error", "attempts",
    "duration_s",
)
MAX_RECORD_BYTES = 64 * 2**20  # a record holds numbers and curves: tens of kB; 64 MiB is damage, not data


def result_checksum(result: Any) -> str:
    """sha256 of `result` as canonical JSON (sorted keys, NaN/inf as Python writes them): the same before it is
    written and after it is read back, since JSON floats round-trip exactly."""
    text = json.dumps(result, sort_keys=True, separators=(",", ":"), default=json_leaf)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_problem(record: Any, key: str) -> str | None:
    """Why `record` is not a valid record of `key` (one phrase), or None when it is valid."""
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not a record"
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        return f"no {', '.join(missing)}"
    if record["key"] != key:
        return f"the record of key {str(record['key'])[:20]!r}"
    if record["status"] not in STATUSES:
        return f"status {str(record['status'])[:20]!r}"
    if record["status"] == "ok" and (not isinstance(record["result"], dict) or not record["result"]):
        return "an empty result" if record["result"] in ({}, None) else "a result that is not a mapping"
    if record.get("checksum") != result_checksum(record["result"]):
        return "no checksum" if "checksum" not in record else "its result does not match its checksum"
    return None


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

    def __init__(self, folder: str | os.PathLike, warn: Any = None) -> None:
        self.folder = Path(folder)
        self.rejected: dict[str, str] = {}  # key -> why its file was not reused (reported once, then recomputed)
        self._warn = warn if warn is not None else (lambda line: print(line, file=sys.stderr, flush=True))
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
        """The stored record of `key`; None when absent, or when the file is damaged (unreadable, truncated, too
        large or deep, not a record, an empty result, a checksum mismatch): then the reason is reported once."""
        path = self.path(key)
        try:
            record = read_json(path, max_bytes=MAX_RECORD_BYTES)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # ValueError: bad UTF-8, bad JSON, over the limits
            return self._reject(key, f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        problem = record_problem(record, key)
        return record if problem is None else self._reject(key, problem)

    def _reject(self, key: str, reason: str) -> None:
        if self.rejected.get(key) != reason:
            self.rejected[key] = reason
            self._warn(f"warning: trial record {self.path(key)} is damaged ({reason}); recomputing it")
        return None

    def put(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write `record` atomically to ``<key>.json`` (replacing any earlier record of that key), with the
        checksum of its result; returns the record as written."""
        key = record.get("key") if isinstance(record, dict) else None
        record = {**record, "checksum": result_checksum(record.get("result"))} if isinstance(record, dict) else record
        problem = record_problem(record, key)
        if problem is not None:
            raise BnlabError(f"not a trial record ({problem}; needs {', '.join(RECORD_FIELDS)}, status ok|failed "
                             "and an ok record a non-empty result)")
        write_json(self.path(key), record)
        self.rejected.pop(key, None)
        return record

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
