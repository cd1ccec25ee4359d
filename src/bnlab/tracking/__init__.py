"""Run tracking: JSON lines by default; TensorBoard / W&B optional (imported lazily)."""

from bnlab.tracking.jsonl import JsonlTracker, read_jsonl
from bnlab.tracking.trackers import TRACKERS, Tracker, make_trackers

__all__ = ["TRACKERS", "JsonlTracker", "Tracker", "make_trackers", "read_jsonl"]
