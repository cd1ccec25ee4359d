"""Replication: a cheap subset of claims on two disjoint seed sets must not flip between supported and refuted.

`bnlab audit --first-seed N` runs seeds N ... N+k-1 and records it in results.json. Verdicts may move between
supported/refuted and inconclusive (power), or to mixed; a claim supported on one seed set and refuted on the other
would mean the rule decides on noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnlab.cli import main

CHEAP = "C02,C10"  # statistical claims of a few CPU-minutes each at the default scale (C09 now runs 16 long
# float64 trajectories for its angular-update endpoint: no longer cheap)


@pytest.mark.slow
def test_no_verdict_flips_between_disjoint_seed_sets(tmp_path: Path) -> None:
    verdicts = []
    for first in (0, 100):
        out = tmp_path / f"seeds-from-{first}"
        assert main(["audit", "--scale", "default", "--claims", CHEAP, "--first-seed", str(first), "--out",
                     str(out), "--quiet"]) == 0
        results = json.loads((out / "results.json").read_text())
        assert results["first_seed"] == first
        claims = {c["id"]: c for c in results["claims"] if c["verdict"] != "not_measured"}
        assert all(min(c["seeds"]) >= first for c in claims.values())
        verdicts.append({cid: c["verdict"] for cid, c in claims.items()})
    first, second = verdicts
    assert set(first) == set(second) == set(CHEAP.split(","))
    for cid in first:
        assert {first[cid], second[cid]} != {"supported", "refuted"}, f"{cid} flipped: {first[cid]} vs {second[cid]}"
