"""bnlab.jsonio: JSON read with a depth and a size limit (a deep file must not raise RecursionError)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnlab.jsonio import MAX_DEPTH, JSONLimitError, json_depth, loads_bounded, read_json


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert json_depth("3") == 0
    assert json_depth('{"a": [1, [2, {"b": 3}]]}') == 4
    assert json_depth('{"a": "[[[[{{{{", "b": "\\"]]"}') == 1  # brackets and escaped quotes inside strings
    reference = {"x": [[[1]], {"y": [2]}], "s": "[{"}
    assert json_depth(json.dumps(reference)) == 4


def test_a_deep_document_is_refused_where_json_would_recurse() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):  # the failure mode: json.loads recurses once per level
        json.loads(deep)
    with pytest.raises(JSONLimitError, match="100000 levels"):
        loads_bounded(deep)
    assert loads_bounded("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None  # at the limit: read
    with pytest.raises(JSONLimitError):
        loads_bounded("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_read_json_limits_size_and_reads_nan(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"a": NaN, "b": [1, 2]}')
    value = read_json(path)
    assert value["b"] == [1, 2] and value["a"] != value["a"]
    with pytest.raises(JSONLimitError, match="bytes"):
        read_json(path, max_bytes=10)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError):
        read_json(path)
