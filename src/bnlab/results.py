"""The results.json vocabulary, in one place: claim ids, verdict names, figure kinds, the claim entry and the
provenance of a run (versions, git state, date).

The audit (`bnlab.experiments.audit`), the study (`bnlab.workflows.study`) and the report (`bnlab.report`) all read
and write results.json; they take its words and its shape from here, so the three cannot drift apart. This module
sits on the ground floor (it imports nothing of bnlab but the version), so every floor can use it.

A claim entry (one per claim under ``"claims"``) is plain data:

    {"id", "title", "verdict", "rule", "summary", "method", "key_number", "primary", "votes", "secondary",
     "verifications", "protocol", "seeds", "metrics", "figures", "caveats", "config_hash", "n_trials", "about"}

``primary`` is the headline setting of the primary endpoint; ``votes`` the endpoint in every setting with the vote
each cast (with its sequential ``look``, ``looks``, ``decided_n`` and ``history``); ``key_number`` (the older
contract) is the headline again as {name, value, ci_low, ci_high, unit}. An audit adds `OPTIONAL_ENTRY_KEYS` to a
claim it summarised: ``reason`` (how the settings combined), ``sequential`` (the plan, the looks reached and the
settings ``capped`` undecided) and, with ``--replicate``, ``replication`` (the verdict on seeds from 1000 and
whether it replicated or flipped).
"""

from __future__ import annotations

import datetime
import math
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bnlab.version import __version__

CLAIM_IDS: tuple[str, ...] = tuple(f"C{i:02d}" for i in range(1, 15))
VERDICTS: tuple[str, ...] = ("supported", "refuted", "mixed", "inconclusive", "not_measured")
FIGURE_KINDS: tuple[str, ...] = ("lines", "bars", "contours", "surface", "heatmap")
ENTRY_KEYS: tuple[str, ...] = ("id", "title", "verdict", "rule", "summary", "method", "key_number", "primary",
                               "votes", "secondary", "verifications", "protocol", "seeds", "metrics", "figures",
                               "caveats", "config_hash", "n_trials", "about")

OPTIONAL_ENTRY_KEYS: tuple[str, ...] = ("reason", "sequential", "replication")


def finite_or_none(x: float | None) -> float | None:
    """A number as results.json stores it: a float, or None for NaN, ±inf or no value (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


def figure_entry(fig: Any) -> dict[str, Any]:
    """A figure spec (anything with id, kind, title, caption, data, e.g. `experiments.base.Figure`) as plain data."""
    if fig.kind not in FIGURE_KINDS:
        raise ValueError(f"figure {fig.id!r}: unknown kind {fig.kind!r} (known: {', '.join(FIGURE_KINDS)})")
    return {"id": fig.id, "kind": fig.kind, "title": fig.title, "caption": fig.caption, "data": fig.data}


def claim_entry(claim_id: str, title: str, verdict: str, summary: str, *, rule: str = "", method: str = "",
                primary: Mapping[str, Any] | None = None, votes: Sequence[Mapping[str, Any]] = (),
                secondary: Sequence[Mapping[str, Any]] = (), verifications: Sequence[Mapping[str, Any]] = (),
                protocol: Mapping[str, Any] | None = None, seeds: Sequence[int] = (),
                metrics: Mapping[str, Any] | None = None, figures: Sequence[Mapping[str, Any]] = (),
                caveats: Sequence[str] = (), config_hash: str | None = None, n_trials: int = 0,
                about: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One claim's entry in results.json (keys `ENTRY_KEYS`); `primary` is a result's ``to_dict()`` (its name,
    effect, ci_low, ci_high, unit ...), repeated as the older ``key_number``. A claim that was not measured or that
    failed has no primary: its key_number and primary are None."""
    if claim_id not in CLAIM_IDS:
        raise ValueError(f"unknown claim id {claim_id!r}")
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r} (known: {', '.join(VERDICTS)})")
    key_number = None if primary is None else {
        "name": primary["name"], "value": primary["effect"], "ci_low": primary["ci_low"],
        "ci_high": primary["ci_high"], "unit": primary["unit"]}
    return {
        "id": claim_id, "title": title, "verdict": verdict, "rule": rule, "summary": summary, "method": method,
        "key_number": key_number, "primary": None if primary is None else dict(primary),
        "votes": [dict(v) for v in votes], "secondary": [dict(r) for r in secondary],
        "verifications": [dict(v) for v in verifications], "protocol": None if protocol is None else dict(protocol),
        "seeds": list(seeds), "metrics": dict(metrics or {}), "figures": [dict(f) for f in figures],
        "caveats": list(caveats), "config_hash": config_hash, "n_trials": n_trials, "about": dict(about or {}),
    }


# ------------------------------------------------------------------------------------------------ provenance


def versions() -> dict[str, str]:
    """Versions of Python, the libraries results depend on, bnlab and the platform (read from package
    metadata, so nothing heavy is imported)."""
    found = {"python": platform.python_version()}
    for name in ("torch", "numpy", "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found.update({"bnlab": __version__, "platform": platform.platform()})
    return found


def git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, has uncommitted changes) of the checkout bnlab runs from; (None, None) outside git."""
    where = Path(__file__).resolve().parent  # the bnlab package folder
    try:
        tracked = subprocess.run(["git", "-C", str(where), "ls-files", "--error-unmatch", "__init__.py"],
                                 capture_output=True, text=True, timeout=10)
        if tracked.returncode != 0:
            return None, None
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    commit = head.stdout.strip() if head.returncode == 0 else None
    return commit or None, (bool(dirty.stdout.strip()) if dirty.returncode == 0 else None)


def created_now() -> str:
    """The date a run was made: UTC, to the second, ISO 8601 (e.g. 2026-12-06T11:20:00+00:00)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def provenance() -> dict[str, Any]:
    """The top-level provenance keys of results.json: versions, git_commit, git_dirty."""
    commit, dirty = git_state()
    return {"versions": versions(), "git_commit": commit, "git_dirty": dirty}
