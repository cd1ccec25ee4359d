"""The verdict table printed in the terminal at the end of `bnlab audit` (plain text, no colour codes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.report.numbers import format_key_number, format_result
from bnlab.report.view import PLUMBING_NOTE, VERDICT_TEXT


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def verdict_table(results: Mapping[str, Any]) -> str:
    """One line per claim: id, verdict, title, the primary endpoint's headline with its CI; at the smoke scale, a
    last line saying the verdicts are a plumbing check."""
    lines = [f"{'claim':<6} {'verdict':<13} {'title':<52} primary endpoint (CI · seeds · MDE)"]
    for claim in results.get("claims", []):
        main, ci = (format_result(claim["primary"]) if isinstance(claim.get("primary"), Mapping)
                    else format_key_number(claim.get("key_number")))
        key = f"{main} ({ci})".strip() if main != "—" else ""
        rep = claim.get("replication")
        if isinstance(rep, Mapping):
            again = VERDICT_TEXT.get(str(rep.get("verdict")), str(rep.get("verdict")))
            key = f"[replication: {again}{'' if rep.get('replicated') else ', NOT replicated'}] {key}".rstrip()
        verdict = VERDICT_TEXT.get(str(claim.get("verdict")), str(claim.get("verdict")))
        title = _clip(str(claim.get("title", "")), 52)
        lines.append(f"{str(claim.get('id', '')):<6} {verdict:<13} {title:<52} {_clip(key, 110)}".rstrip())
    if results.get("scale") == "smoke":
        lines.append(PLUMBING_NOTE)
    return "\n".join(lines)
