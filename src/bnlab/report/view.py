"""What the report shows: plain view data built from a results.json mapping, for the HTML and Markdown renderers.

Every string here is still raw (user- or experiment-provided text included); escaping is the renderers' job
(Jinja2 autoescape for HTML, `markdown.escape` for Markdown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.report.numbers import (
    format_duration,
    format_key_number,
    format_number,
    format_result,
    metric_rows,
    power_sentence,
)
from bnlab.results import VERDICTS

# how each verdict of results.json (bnlab.results.VERDICTS) reads in the report
VERDICT_TEXT: dict[str, str] = {v: v.replace("_", " ") for v in VERDICTS}

PLUMBING_NOTE = ("Smoke scale: these verdicts are a plumbing check (every trial, rule and figure ran end to end on "
                 "tiny runs), not evidence about the claims; run the default scale for verdicts.")

VERDICT_MEANING: dict[str, str] = {
    "supported": "the pre-written rule found the effect the claim predicts in every setting, beyond noise across seeds",
    "refuted": "at least one setting showed the opposite, beyond noise across seeds, and none supported the claim",
    "mixed": "the claim holds in some settings and fails in others",
    "inconclusive": "no setting refutes the claim but not every setting supports it (undecided at its seed cap), a "
                    "gate did not pass, or the experiment could not decide",
    "not_measured": "no experiment ran for this claim in this audit",
}


def _about(claim: Mapping[str, Any]) -> dict[str, Any]:
    """The claim's description, as results.json records it (the report renders that file and nothing else)."""
    about = claim.get("about") if isinstance(claim.get("about"), Mapping) else {}
    refs = about.get("references")
    return {"statement": str(about.get("statement", "")), "how_tested": str(about.get("how_tested", "")),
            "reference": str(about.get("reference", "")),
            "references": [str(r) for r in refs] if isinstance(refs, (list, tuple)) else []}


def look_text(r: Mapping[str, Any]) -> str:
    """Where the sequential plan decided a vote: "decided at n = 13, look 2 of 4", "undecided at its cap, n = 16
    (look 3 of 3)"; "" for a vote without looks (a verification, or a results.json from before the plan)."""
    look, looks = r.get("look"), r.get("looks")
    if not isinstance(look, int) or not isinstance(looks, int):
        return ""
    if isinstance(r.get("decided_n"), int):
        return f"decided at n = {r['decided_n']}, look {look} of {looks}"
    where = "at its cap" if look == looks else "at"
    return f"undecided {where}, n = {format_number(r.get('n_seeds'))} (look {look} of {looks})"


def _rows(results: Any) -> list[dict[str, str]]:
    """Result dicts (votes or secondary) as rows: name = effect, CI · seeds · MDE, vote, note, look."""
    rows = []
    for r in results if isinstance(results, list) else []:
        if isinstance(r, Mapping):
            main, ci = format_result(r)
            rows.append({"main": main, "ci": ci, "vote": str(r.get("vote") or ""), "note": str(r.get("note") or ""),
                         "p": format_number(r.get("p")) if r.get("p") is not None else "", "look": look_text(r)})
    return rows


def replication_text(claim: Mapping[str, Any]) -> str:
    """"replicated (supported on seeds from 1000)" / "NOT replicated: ..."; "" when no replication ran."""
    rep = claim.get("replication")
    if not isinstance(rep, Mapping):
        return ""
    other = VERDICT_TEXT.get(str(rep.get("verdict")), str(rep.get("verdict")))
    where = f"seeds from {rep.get('first_seed')}"
    if rep.get("replicated"):
        return f"replicated ({other} on {where})"
    flip = " — a flip between supported and refuted" if rep.get("flipped") else ""
    return f"NOT replicated: {other} on {where}{flip}"


def _findings(claim: Mapping[str, Any]) -> list[str]:
    """Secondary results a claim marks as findings in their own right (note "finding ..."): shown in the table."""
    out = []
    for r in claim.get("secondary") or []:
        if isinstance(r, Mapping) and str(r.get("note", "")).lower().startswith("finding"):
            main, ci = format_result(r)
            out.append(f"{main} ({ci})" if ci else main)
    return out


def _protocol(claim: Mapping[str, Any], scale: str = "") -> dict[str, str]:
    """The pre-registered protocol as the report shows it: `ran` is what ran at the audit's own scale (the claim's
    method), `runs` what runs at the default scale (the protocol's), shown apart when the scales differ."""
    protocol = claim.get("protocol") if isinstance(claim.get("protocol"), Mapping) else {}
    endpoint = protocol.get("endpoint") if isinstance(protocol.get("endpoint"), Mapping) else {}
    return {k: str(v) for k, v in (("endpoint", endpoint.get("name", "")), ("measure", endpoint.get("measure", "")),
                                   ("test", endpoint.get("test", "")),
                                   ("threshold", format_number(endpoint.get("threshold"))),
                                   ("threshold_source", endpoint.get("threshold_source", "")),
                                   ("runs", protocol.get("runs", "") if scale != "default" or not claim.get("method")
                                    else ""),
                                   ("ran", claim.get("method", "")), ("scale", scale or "this"),
                                   ("paper", protocol.get("paper", "")), ("why", protocol.get("why", "")))}


def _power(claim: Mapping[str, Any]) -> list[str]:
    """For every undecided statistical vote: the minimum-detectable-effect sentence."""
    protocol = claim.get("protocol") if isinstance(claim.get("protocol"), Mapping) else {}
    endpoint = protocol.get("endpoint") if isinstance(protocol.get("endpoint"), Mapping) else {}
    per_setting = endpoint.get("per_setting") if isinstance(endpoint.get("per_setting"), Mapping) else {}
    settings = endpoint.get("settings") or []
    out = []
    for i, vote in enumerate(claim.get("votes") or []):
        if not isinstance(vote, Mapping) or vote.get("vote") != "inconclusive" or vote.get("test") == "verification":
            continue
        setting = settings[i] if i < len(settings) else ""
        threshold = per_setting.get(setting, [None, endpoint.get("threshold", 0.0)])[1]
        out.append(power_sentence(vote, float(threshold or 0.0)))
    return out


def claim_view(claim: Mapping[str, Any], images: Mapping[str, Any], scale: str = "") -> dict[str, Any]:
    """View data of one claim at the audit's `scale`; `images` maps a figure's file name to its data URI (str) or an
    Exception."""
    key_main, key_ci = (format_result(claim["primary"]) if isinstance(claim.get("primary"), Mapping)
                        else format_key_number(claim.get("key_number")))
    figures = []
    for fig in claim.get("figures") or []:
        if not isinstance(fig, Mapping):
            continue
        image = images.get(str(fig.get("file")))
        figures.append({
            "title": str(fig.get("title", "")),
            "caption": str(fig.get("caption", "")),
            "file": str(fig.get("file", "")),
            "src": image if isinstance(image, str) else None,
            "error": None if isinstance(image, str) else f"figure could not be drawn: {image}",
        })
    verdict = str(claim.get("verdict", "not_measured"))
    return {
        "id": str(claim.get("id", "")),
        "anchor": f"claim-{claim.get('id', '')}",
        "title": str(claim.get("title", "")),
        "verdict": verdict if verdict in VERDICT_TEXT else "inconclusive",
        "verdict_text": VERDICT_TEXT.get(verdict, verdict),
        "key_main": key_main,
        "key_ci": key_ci,
        "summary": str(claim.get("summary", "")),
        "method": str(claim.get("method", "")),
        "rule": str(claim.get("rule", "")),
        "rule_text": str(claim.get("rule") or (
            "no rule: this claim was not measured" if verdict == "not_measured"
            else "no rule was applied: the experiment stopped before its verdict rule (see the caveats)")),
        "about": _about(claim),
        "caveats": [str(c) for c in claim.get("caveats") or []],
        "votes": _rows(claim.get("votes")),
        "votes_brief": " · ".join(f"{v.get('setting')}: {v.get('vote')}" for v in claim.get("votes") or []
                                  if isinstance(v, Mapping) and v.get("setting") and len(claim["votes"]) > 1),
        "secondary": _rows(claim.get("secondary")),
        "verifications": [{"name": str(v.get("name", "")), "passed": bool(v.get("passed")),
                           "worst": format_number(v.get("worst_ratio")), "cases": format_number(v.get("cases")),
                           "note": str(v.get("note") or "")}
                          for v in claim.get("verifications") or [] if isinstance(v, Mapping)],
        "findings": _findings(claim),
        "reason": str(claim.get("reason") or ""),
        "capped": [str(s) for s in (claim.get("sequential") or {}).get("capped") or []]
        if isinstance(claim.get("sequential"), Mapping) else [],
        "replication": replication_text(claim),
        "power": _power(claim),
        "protocol": _protocol(claim, scale),
        "seed_list": ", ".join(str(s) for s in claim.get("seeds") or []),
        "metrics": metric_rows(claim.get("metrics") or {}),
        "figures": figures,
        "config_hash": claim.get("config_hash"),
    }


def _seeds_text(results: Mapping[str, Any]) -> str:
    seeds, first = results.get("seeds"), results.get("first_seed")
    start = f" from seed {first}" if isinstance(first, int) and first else ""
    if isinstance(seeds, int):
        return f"{seeds} seeds per setting{start}"
    return f"each claim's default number of seeds (listed in its protocol){start}"


def report_view(results: Mapping[str, Any], images: Mapping[str, Any]) -> dict[str, Any]:
    """View data of the whole report, claims sorted by id (C01..C14)."""
    claims = [c for c in results.get("claims", []) if isinstance(c, Mapping)]
    claims.sort(key=lambda c: str(c.get("id")))
    scale = str(results.get("scale", ""))
    views = [claim_view(c, images, scale) for c in claims]
    counts = {v: sum(1 for c in views if c["verdict"] == v) for v in VERDICT_TEXT}
    versions = results.get("versions") if isinstance(results.get("versions"), Mapping) else {}
    trials = results.get("trials") if isinstance(results.get("trials"), Mapping) else {}
    header = results.get("header")
    return {
        "title": str(results.get("title") or "Why does Batch Normalization help? — the claims audit"),
        "header": [str(line) for line in header] if isinstance(header, list) else [],
        "study": results.get("kind") == "study",
        "claims": views,
        "counts": [(VERDICT_TEXT[v], v, n) for v, n in counts.items() if n],
        "legend": [(VERDICT_TEXT[v], v, VERDICT_MEANING[v]) for v in VERDICT_TEXT],
        "scale": scale,
        "plumbing": PLUMBING_NOTE if scale == "smoke" else "",
        "seeds": format_number(results.get("seeds")),
        "seeds_text": _seeds_text(results),
        "duration": format_duration(results.get("duration_s")),
        "created": str(results.get("created", "") or ""),
        "executor": str(results.get("executor", "") or ""),
        "git_commit": str(results.get("git_commit") or "not in a git checkout"),
        "git_dirty": bool(results.get("git_dirty")),
        "code_fingerprint": str(results.get("code_fingerprint") or ""),
        "versions": [(str(k), str(v)) for k, v in versions.items()],
        "trials": [(str(k), format_number(v)) for k, v in trials.items()],
        "hashes": [(v["id"], str(v["config_hash"])) for v in views if v["config_hash"]],
    }
