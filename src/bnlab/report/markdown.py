"""The Markdown report (report.md): the same content as the HTML page, with figures linked as files.

Text that bnlab did not write is escaped so that it renders as text: Markdown punctuation gets a backslash and
``< > &`` become entities (Markdown renderers pass raw HTML through, so an unescaped ``<script>`` would be live).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bnlab.report.view import report_view

_MD_INLINE = re.compile(r"([\\`*_\[\]|~])")  # emphasis, code, links/images, table cells, strike-through
_MD_LINE_START = re.compile(r"^([#+\-=]|\d+(?=[.)]))")  # headings, bullets, setext lines, "1." / "1)" lists


def escape(text: Any) -> str:
    """`text` as literal Markdown text on one line (inline markup, raw HTML and line-start markup escaped)."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = " ".join(_MD_INLINE.sub(r"\\\1", s).split())
    # a leading marker loses its meaning with a backslash before it (after the digits of "1.")
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" if m.group(1)[0].isdigit() else "\\" + m.group(1), s)


def _code(text: Any) -> str:
    """`text` as a code span when it is a plain token (a hash, a commit), else as escaped text."""
    text = str(text)
    return f"`{text}`" if re.fullmatch(r"[A-Za-z0-9._ -]*", text) else escape(text)


def _claim_section(c: Mapping[str, Any], plumbing: str) -> list[str]:
    """One claim's section of report.md: summary, votes, secondary results, figures, rule, protocol, caveats."""
    out: list[str] = []
    out += ["", f'<a id="{c["anchor"]}"></a>', "",
            f"## {escape(c['id'])} · {escape(c['title'])} — {c['verdict_text']}"
            + (" (smoke scale: a plumbing check, not evidence)" if plumbing else ""), ""]
    if c["summary"]:
        out += [escape(c["summary"]), ""]
    if c["reason"]:
        capped = f" Undecided at the seed cap: {escape(', '.join(c['capped']))}." if c["capped"] else ""
        out += [f"How the settings combined: {escape(c['reason'])}.{capped}", ""]
    if c["replication"]:
        out += [f"Replication: {escape(c['replication'])}.", ""]
    if c["votes"]:
        out += ["**Primary endpoint** (the only thing that votes):", ""]
        out += [f"- {escape(r['main'])} ({escape(r['ci'])}): **{escape(r['vote'])}**"
                + (f" — {escape(r['look'])}" if r["look"] else "") for r in c["votes"]]
        out += [""] + [escape(line) for line in c["power"]] + ([""] if c["power"] else [])
    elif c["key_main"] != "—":
        out += [f"Key number: {escape(c['key_main'])}" + (f" ({escape(c['key_ci'])})" if c["key_ci"] else ""),
                ""]
    if c["secondary"]:
        out += ["**Secondary results** (reported, never voting):", ""]
        out += [f"- {escape(r['main'])} ({escape(r['ci'])})" + (f" — {escape(r['note'])}" if r["note"] else "")
                for r in c["secondary"]] + [""]
    if c["verifications"]:
        out += ["**Verifications** (identities checked to a tolerance):", ""]
        out += [f"- {escape(x['name'])}: {'passed' if x['passed'] else 'FAILED'}, worst error ÷ tolerance "
                f"{escape(x['worst'])} over {escape(x['cases'])} cases" for x in c["verifications"]] + [""]
    out += ["**What the explanation says.** " + escape(c["about"]["statement"]), "",
            "**How it is tested.** " + escape(c["about"]["how_tested"]), ""]
    if c["method"]:
        out += ["*At this scale:* " + escape(c["method"]), ""]
    if c["about"]["reference"]:
        out += ["*Compare with:* " + escape(c["about"]["reference"]), ""]
    for f in c["figures"]:
        if f["error"]:
            out += [f"*{escape(f['title'])}*: {escape(f['error'])}", ""]
        else:
            out += [f"![{escape(f['title'])}]({f['file']})", "",
                    f"*{escape(f['title'])}*" + (f" — {escape(f['caption'])}" if f["caption"] else ""), ""]
    if c["metrics"]:
        out += ["| Metric | Value |", "|---|---|"]
        out += [f"| {escape(name)} | {escape(value)} |" for name, value in c["metrics"]]
        out.append("")
    out += ["**Rule.** " + escape(c["rule_text"]), ""]
    p = c["protocol"]
    if p["endpoint"]:
        out += [f"**Pre-registered protocol.** Primary endpoint: {escape(p['endpoint'])} ({escape(p['measure'])}); "
                f"test {escape(p['test'])}, threshold {escape(p['threshold'])} — {escape(p['threshold_source'])}."
                + (f" What ran ({escape(p['scale'])} scale): {escape(p['ran'])}" if p["ran"] else "")
                + (f" What runs at the default scale: {escape(p['runs'])}." if p["runs"] else "")
                + (f" The paper, and how this differs: {escape(p['paper'])}" if p["paper"] else "")
                + (f" Why this endpoint: {escape(p['why'])}" if p["why"] else ""), ""]
    if c["caveats"]:
        out += ["**Caveats.**", ""] + [f"- {escape(x)}" for x in c["caveats"]] + [""]
    if c["about"]["references"]:
        out += ["**References.**", ""] + [f"- {escape(r)}" for r in c["about"]["references"]] + [""]
    return out


def render_markdown(results: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    """report.md for `results`; `images` as for `bnlab.report.html.render_html` (only errors are used)."""
    v = report_view(results, images)
    out: list[str] = [f"# {escape(v['title'])}", ""]
    for line in v["header"]:
        out += [escape(line), ""]
    out += [
        f"Scale **{escape(v['scale'])}**, {escape(v['seeds_text'])}, duration {escape(v['duration'])}. "
        "Each verdict was decided by a rule written before the run, on one pre-registered primary endpoint; "
        "secondary results never vote, and identities are verified apart.",
        "",
        *([f"**{escape(v['plumbing'])}**", ""] if v["plumbing"] else []),
        "| Claim | What it says | Verdict | Primary endpoint |",
        "|---|---|---|---|",
    ]
    for c in v["claims"]:
        key = escape(c["key_main"]) + (f" ({escape(c['key_ci'])})" if c["key_ci"] else "")
        key += f"; votes: {escape(c['votes_brief'])}" if c["votes_brief"] else ""
        key += "".join(f"; finding: {escape(f)}" for f in c["findings"])
        key += f"; {escape(c['replication'])}" if c["replication"] else ""
        out.append(f"| [{escape(c['id'])}](#{c['anchor']}) | {escape(c['title'])} | **{c['verdict_text']}** "
                   f"| {key} |")
    out += ["", "Verdicts: " + "; ".join(f"**{text}**: {meaning}" for text, _, meaning in v["legend"]) + "."]
    for c in v["claims"]:
        out += _claim_section(c, v["plumbing"])
    out += ["---", "",
            f"Generated by bnlab{(' on ' + escape(v['created'])) if v['created'] else ''}; git commit "
            f"{_code(v['git_commit'])}{' (with uncommitted changes)' if v['git_dirty'] else ''}.", "",
            "Versions: " + ", ".join(f"{escape(k)} {escape(x)}" for k, x in v["versions"]) + ".", "",
            "Config hashes: " + ", ".join(f"{escape(k)} {_code(h)}" for k, h in v["hashes"]) + ".", ""]
    return "\n".join(out)
