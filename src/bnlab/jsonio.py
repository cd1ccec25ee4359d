"""Reading JSON that bnlab did not necessarily write, within limits: a size cap and a nesting-depth cap.

Every results, record or marker file bnlab reads back may have been damaged, replaced or crafted. Python's `json`
module recurses once per nesting level, so ``[[[[...]]]]`` a few thousand levels deep raises `RecursionError`
(not a `ValueError`): a store or a report reading it would die with a traceback. `loads_bounded` counts the depth
first, in one pass over the brackets outside strings (string contents are cut out by a regular expression, so a
``"[[["`` inside a string does not count), and refuses anything deeper than `MAX_DEPTH` with a `JSONLimitError`,
a `ValueError`. `read_json` also refuses a file larger than `MAX_BYTES` before reading it.

bnlab's own files nest at most ~10 levels (results.json: claims → figures → data → series → points), so
`MAX_DEPTH` = 64 leaves ample room; `MAX_BYTES` = 512 MiB is far above a paper-scale audit's results.json.
"""

from __future__ import annotations

import json
import os
import re
from itertools import accumulate
from pathlib import Path
from typing import Any

MAX_DEPTH = 64
MAX_BYTES = 512 * 2**20

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONLimitError(ValueError):
    """A JSON text beyond bnlab's limits (too deep or too large)."""


def json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in `text` (0 for a scalar); brackets inside strings do not count."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_STEP[c] for c in brackets), default=0)


def loads_bounded(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` that refuses nesting deeper than `max_depth` (JSONLimitError) instead of recursing into it."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONLimitError(f"JSON nested {depth} levels deep (the limit is {max_depth})")
    return json.loads(text)


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in `path`. Raises OSError (unreadable), JSONLimitError (over `max_bytes` or `max_depth`),
    UnicodeDecodeError or json.JSONDecodeError (not UTF-8 JSON): all but the first are ValueErrors."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise JSONLimitError(f"{size} bytes (the limit is {max_bytes})")
    return loads_bounded(path.read_bytes(), max_depth=max_depth)
