"""Write the documentation's claim pages (docs/claims/<family>.md) from a default audit's results.json.

    python docs/claims/generate.py runs/audit      # after `make audit`; then `make docs`

One page per family of claims: per claim its verdict, the primary endpoint's votes and the secondary results as
the audit measured them, the audit's figures (copied into docs/claims/img/), and the hand-written reading of what
they show (docs/claims/readings/CXX.md, included as a snippet). tests/test_docs.py checks that the pages agree with
bnlab/experiments/measured.json (the same audit), so a newer audit without regenerated pages fails the tests.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bnlab.report.view import claim_view

HERE = Path(__file__).resolve().parent
FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "mechanics": ("BN's computation", ("C01", "C02", "C08", "C09"),
                  "What BN computes, and the identities that follow: the forward and backward pass, γ and β, the "
                  "Jacobian and scale invariance."),
    "ics": ("Internal covariate shift", ("C03", "C04"),
            "Ioffe & Szegedy's reason for BN, and Santurkar et al.'s test of it."),
    "smoothness": ("A smoother landscape", ("C05", "C06", "C14"),
                   "Santurkar et al.'s reason: the loss and its gradient change less along the gradient, and the "
                   "landscape is less rugged."),
    "training": ("Learning rates, initialisation, gradients, speed", ("C07", "C10", "C11", "C13"),
                 "What BN is said to allow in training."),
    "regularisation": ("Regularisation", ("C12",), "The noise of batch statistics as a regulariser."),
}


def _rows(rows: list[dict[str, str]], with_vote: bool) -> list[str]:
    out = []
    for r in rows:
        vote = f" — **{r['vote']}**" if with_vote and r["vote"] else ""
        note = f" ({r['note']})" if not with_vote and r["note"] else ""
        out.append(f"- {r['main']} · {r['ci']}{vote}{note}")
    return out


def claim_section(claim: dict, audit: Path, img: Path) -> list[str]:
    images = {f["file"]: "ok" for f in claim.get("figures") or []}
    v = claim_view(claim, images)
    out = [f"## {v['id']} · {v['title']} — {v['verdict_text']}", "", v["summary"], ""]
    out += ["**Primary endpoint** (the only thing that votes):", "", *_rows(v["votes"], True), ""]
    if v["secondary"]:
        out += ['<details markdown="1"><summary>Secondary results (reported, never voting)</summary>', "",
                *_rows(v["secondary"], False), "", "</details>", ""]
    for f in v["figures"]:
        source = audit / f["file"]
        if not source.is_file():
            continue
        target = img / Path(f["file"]).name  # already named CXX-<figure>
        shutil.copyfile(source, target)
        out += [f"![{f['title']}](img/{target.name})", "", f"*{f['title']}* — {f['caption']}", ""]
    reading = HERE / "readings" / f"{v['id']}.md"
    if reading.is_file():
        out += ["**What the figures show.**", "", f'--8<-- "docs/claims/readings/{v["id"]}.md"', ""]
    return out


def main(audit: Path) -> None:
    results = json.loads((audit / "results.json").read_text())
    if results.get("scale") != "default":
        raise SystemExit(f"{audit} is a {results.get('scale')} audit; the pages show the default one")
    claims = {c["id"]: c for c in results["claims"]}
    img = HERE / "img"
    shutil.rmtree(img, ignore_errors=True)
    img.mkdir()
    stamp = (f"Measured by the default audit (`make audit`) at commit {str(results.get('git_commit'))[:7]} on "
             f"{str(results.get('created'))[:10]}, {results.get('duration_s', 0) / 60:.0f} min on 2 CPU cores; "
             "every number with its 95% CI over seeds. The rules are on the [protocol page](../protocol.md).")
    for name, (title, ids, lede) in FAMILIES.items():
        lines = [f"# {title}", "", lede, "", stamp, ""]
        for cid in ids:
            lines += claim_section(claims[cid], audit, img)
        (HERE / f"{name}.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {len(FAMILIES)} pages and {len(list(img.iterdir()))} figures under {HERE}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/audit"))
