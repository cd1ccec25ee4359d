"""The verdict table printed in the terminal at the end of `bnlab audit` (plain text, no colour codes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.report.numbers import format_key_number
from bnlab.report.view import VERDICT_TEXT


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def verdict_table(results: Mapping[str, Any]) -> str:
    """One line per claim: id, verdict, key number with its CI, title."""
    lines = [f"{'claim':<6} {'verdict':<13} {'key number':<52} title"]
    for claim in results.get("claims", []):
        main, ci = format_key_number(claim.get("key_number"))
        key = f"{main} {ci}".strip() if main != "—" else ""
        verdict = VERDICT_TEXT.get(str(claim.get("verdict")), str(claim.get("verdict")))
        lines.append(f"{str(claim.get('id', '')):<6} {verdict:<13} {_clip(key, 52):<52} "
                     f"{_clip(str(claim.get('title', '')), 60)}")
    return "\n".join(lines)
