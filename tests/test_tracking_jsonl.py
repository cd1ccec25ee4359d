"""JSON-lines tracking: records round-trip, torn lines are skipped, truncate drops repeated steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bnlab.errors import BnlabError
from bnlab.tracking import JsonlTracker, make_trackers, read_jsonl


def test_records_round_trip_and_truncate(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    tracker = JsonlTracker(path)
    for step in (0, 10, 20):
        tracker.log("eval", step, {"test_acc": step / 100, "loss": math.nan})
    tracker.truncate(10)
    tracker.log("eval", 10, {"test_acc": 0.5, "loss": 1.0})
    tracker.close()
    records = read_jsonl(path)
    assert [(r["kind"], r["step"], r["test_acc"]) for r in records] == [("eval", 0, 0.0), ("eval", 10, 0.5)]
    assert math.isnan(records[0]["loss"])


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "eval", "step": 0}\n{"kind": "ev')
    assert read_jsonl(path) == [{"kind": "eval", "step": 0}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_unknown_tracker_is_a_bnlab_error(tmp_path: Path) -> None:
    with pytest.raises(BnlabError, match="unknown tracker 'mlflow'.*jsonl"):
        make_trackers(["mlflow"], tmp_path, {})
