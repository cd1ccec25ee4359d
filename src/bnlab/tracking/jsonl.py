"""Metrics as JSON lines: one object per record, ``{"kind": ..., "step": ..., <metrics>}``, appended and flushed.

Appending is crash-safe enough for metrics (a torn last line is dropped on read); `truncate(step)` rewrites the
file atomically without the records at or after `step`, so a resumed run leaves no duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bnlab.atomic import write_text


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record of a JSONL file (a torn last line, from a crash, is skipped)."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class JsonlTracker:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def log(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        self._handle.write(json.dumps({"kind": kind, "step": int(step), **metrics}) + "\n")
        self._handle.flush()

    def truncate(self, step: int) -> None:
        self._handle.close()
        kept = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) < step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._handle = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._handle.close()
