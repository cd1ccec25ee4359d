"""Replication as part of the audit: the same pre-registered plan run again on disjoint seeds.

    run_replicated_audit(scale, seeds, claims, out, executor, ...) -> (AuditResult, AuditResult)

runs `bnlab.experiments.audit.run_audit` twice: into OUT on seeds from `first_seed` (default 0), and into
OUT/replication on seeds from `REPLICATION_FIRST_SEED` (1000), the same sequential plan (or the same fixed `--seeds`)
and code. Then OUT/results.json records, for every measured claim, the replication's verdict and whether it
replicated (the same verdict), and whether it *flipped* (supported on one seed set, refuted on the other: the rule
would be deciding on noise); the top level gets a summary naming every disagreement. The report is re-rendered from
that file, so a verdict that did not replicate is shown as such in the table and in the claim's section.

Seeds are disjoint by construction: the main audit's seeds, up to its largest cap, must end before 1000 (checked
before anything runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from bnlab.atomic import write_json
from bnlab.errors import BnlabError
from bnlab.experiments.audit import RESULTS_FILE, AuditResult, run_audit, validate_request
from bnlab.experiments.base import LOOKS
from bnlab.report.build import write_report

REPLICATION_FIRST_SEED = 1000
REPLICATION_DIR = "replication"


def compare(verdict: str, replica: str) -> dict[str, Any]:
    """Did `replica` (the verdict on disjoint seeds) replicate `verdict`?"""
    return {"verdict": replica, "first_seed": REPLICATION_FIRST_SEED, "replicated": verdict == replica,
            "flipped": {verdict, replica} == {"supported", "refuted"}}


def replication_summary(results: Mapping[str, Any], replica: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level record: where the replication is, when and at which commit it ran, and every disagreement."""
    claims = [c for c in results.get("claims", []) if isinstance(c.get("replication"), Mapping)]
    return {"first_seed": REPLICATION_FIRST_SEED, "out": REPLICATION_DIR, "created": replica.get("created"),
            "git_commit": replica.get("git_commit"), "duration_s": replica.get("duration_s"),
            "replicated": [c["id"] for c in claims if c["replication"]["replicated"]],
            "disagreements": [{"id": c["id"], "verdict": c["verdict"], "replication": c["replication"]["verdict"]}
                              for c in claims if not c["replication"]["replicated"]],
            "flipped": [c["id"] for c in claims if c["replication"]["flipped"]]}


def attach_replication(results: dict[str, Any], replica: Mapping[str, Any]) -> dict[str, Any]:
    """`results` with each measured claim's replication and the summary (mutated and returned)."""
    other = {c["id"]: c["verdict"] for c in replica.get("claims", [])}
    for claim in results.get("claims", []):
        if claim["verdict"] != "not_measured" and claim["id"] in other:
            claim["replication"] = compare(claim["verdict"], other[claim["id"]])
    results["replication"] = replication_summary(results, replica)
    return results


def _check_disjoint(scale: str, seeds: int | None, first_seed: int) -> None:
    cap = seeds if seeds is not None else max(looks[-1] for looks in LOOKS[scale].values())
    if first_seed + cap > REPLICATION_FIRST_SEED:
        raise BnlabError(f"seeds {first_seed}..{first_seed + cap - 1} overlap the replication's seeds from "
                         f"{REPLICATION_FIRST_SEED}: choose --first-seed below {REPLICATION_FIRST_SEED - cap + 1}")


def run_replicated_audit(scale: str = "default", seeds: int | None = None,
                         claims: str | Sequence[str] | None = None, out: str | os.PathLike = "runs/audit",
                         executor: str = "process", *, first_seed: int = 0, **kw: Any) -> tuple[AuditResult,
                                                                                                 AuditResult]:
    """The audit and its replication on seeds from 1000 (see the module docstring); keyword arguments go to
    `run_audit` for both."""
    request = validate_request(scale, seeds, claims, out, executor, kw.get("workers"), kw.get("address"),
                               kw.get("data_dir"), first_seed)
    _check_disjoint(request.scale, request.seeds, request.first_seed)
    main = run_audit(scale, seeds, claims, out, executor, first_seed=first_seed, **kw)
    replica = run_audit(scale, seeds, claims, main.out / REPLICATION_DIR, executor,
                        first_seed=REPLICATION_FIRST_SEED, **kw)
    attach_replication(main.results, replica.results)
    write_json(main.out / RESULTS_FILE, main.results)
    files = write_report(main.out, main.results)
    return AuditResult(main.results, main.out, main.results_path, files.html, files.markdown, files.figure_errors,
                       main.trial_counts), replica
