"""Run tracking: JSON lines by default; TensorBoard / W&B optional (imported lazily)."""

from bnlab.tracking.base import TRACKERS, Tracker, make_trackers
from bnlab.tracking.jsonl import JsonlTracker, read_jsonl

__all__ = ["TRACKERS", "JsonlTracker", "Tracker", "make_trackers", "read_jsonl"]
