"""`KEY=VALUE` options from the command line (``--model-opt width=0.5``) as plain data.

Values are read as JSON when they parse (numbers, true/false, null, lists) and kept as strings otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bnlab.errors import BnlabError


def parse_key_values(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BnlabError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out
