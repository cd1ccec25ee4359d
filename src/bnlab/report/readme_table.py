"""The README's verdict table: the default audit and its replication side by side, from a results.json alone.

    python -m bnlab.report.readme_table runs/audit        # `make readme-table`; prints Markdown to paste

The folder must hold a results.json written by ``bnlab audit --replicate`` (`bnlab.experiments.replication`). The
table names the date, commit, scale and duration of both runs, each claim's verdict on both seed sets with the
primary endpoint's headline, and every disagreement by claim (a flip between supported and refuted apart).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bnlab.errors import BnlabError
from bnlab.report.markdown import escape
from bnlab.report.numbers import format_duration, format_result
from bnlab.report.view import VERDICT_TEXT


def _run_line(label: str, created: Any, commit: Any, duration: Any, dirty: Any = None) -> str:
    day = str(created or "?")[:10]
    sha = str(commit or "not in git")[:7] + (" (uncommitted changes)" if dirty else "")
    return f"{label}: {day}, commit {sha}, {format_duration(duration)}"


def readme_table(results: Mapping[str, Any]) -> str:
    """Markdown: a header naming both runs, one row per claim, and the disagreements named."""
    rep = results.get("replication")
    if not isinstance(rep, Mapping):
        raise BnlabError("results.json has no replication: run `bnlab audit --replicate` (or `make audit-replicate`)")
    header = (f"**The {results.get('scale', '?')} audit and its replication on disjoint seeds** — "
              + _run_line(f"audit (seeds from {results.get('first_seed', 0)})", results.get("created"),
                          results.get("git_commit"), results.get("duration_s"), results.get("git_dirty"))
              + "; " + _run_line(f"replication (seeds from {rep.get('first_seed')})", rep.get("created"),
                                 rep.get("git_commit"), rep.get("duration_s")) + ".")
    rows = ["| Claim | Verdict | Replication | Primary endpoint (headline setting) |", "|---|---|---|---|"]
    for claim in results.get("claims", []):
        if claim.get("verdict") == "not_measured":
            continue
        verdict = VERDICT_TEXT.get(str(claim.get("verdict")), str(claim.get("verdict")))
        other = claim.get("replication") or {}
        again = VERDICT_TEXT.get(str(other.get("verdict")), "—") if other else "—"
        mark = "" if other.get("replicated", True) else " ⚠"
        main, ci = format_result(claim["primary"]) if isinstance(claim.get("primary"), Mapping) else ("—", "")
        rows.append(f"| {escape(claim['id'])} · {escape(claim.get('title', ''))} | **{verdict}** | {again}{mark} | "
                    f"{escape(main)}" + (f" ({escape(ci)})" if ci else "") + " |")
    disagreements = rep.get("disagreements") or []
    named = "; ".join(f"{d['id']}: {VERDICT_TEXT.get(d['verdict'], d['verdict'])} → "
                      f"{VERDICT_TEXT.get(d['replication'], d['replication'])}" for d in disagreements)
    flips = ", ".join(rep.get("flipped") or []) or "none"
    tail = (f"Disagreements ({len(disagreements)}): {named}. Flips between supported and refuted: {flips}."
            if disagreements else "Every verdict replicated; no flips between supported and refuted.")
    return "\n".join([header, "", *rows, "", tail]) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bnlab.report.readme_table AUDIT_FOLDER", file=sys.stderr)
        return 2
    path = Path(argv[0]) / "results.json"
    try:
        if not path.is_file():
            raise BnlabError(f"no results.json in {argv[0]!r}")
        print(readme_table(json.loads(path.read_text())), end="")
    except (BnlabError, json.JSONDecodeError) as exc:
        print(f"error: {exc} ({path})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
