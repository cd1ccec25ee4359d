"""`bnlab audit --replicate`: the same plan on seeds from 1000, per-claim replication in results.json and the
report, and the README table generated from it (on fake claims, and once on a real smoke audit)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import audit_fakes
from bnlab.cli import main
from bnlab.errors import BnlabError
from bnlab.experiments import replication
from bnlab.report.readme_table import main as table_main
from bnlab.report.readme_table import readme_table


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    audit_fakes.install(monkeypatch)


def test_replicated_audit_records_each_claim_and_the_report_shows_it(fakes: None, tmp_path: Path) -> None:
    main_run, replica = replication.run_replicated_audit("smoke", 3, "C07,C08", tmp_path / "a", "local", log=None)
    assert replica.out == tmp_path / "a" / "replication" and replica.results["first_seed"] == 1000
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    claims = {c["id"]: c for c in results["claims"]}
    assert claims["C07"]["replication"] == {"verdict": "supported", "first_seed": 1000, "replicated": True,
                                            "flipped": False}
    assert claims["C08"]["replication"]["replicated"]  # inconclusive (a failed trial) on both seed sets
    assert "replication" not in claims["C01"]  # not measured: nothing to replicate
    assert min(c["seeds"][0] for c in replica.results["claims"] if c["seeds"]) >= 1000
    assert results["replication"]["disagreements"] == [] and results["replication"]["flipped"] == []
    html = (tmp_path / "a" / "report.html").read_text()
    assert "replicated (supported on seeds from 1000)" in html
    assert "Replication: replicated" in (tmp_path / "a" / "report.md").read_text()


def _with_replication(verdicts: dict[str, tuple[str, str]]) -> dict:
    claims = [{"id": cid, "title": f"claim {cid}", "verdict": a, "primary": None} for cid, (a, _) in verdicts.items()]
    results = {"scale": "default", "first_seed": 0, "created": "2026-12-06T10:00:00+00:00", "git_commit": "abc1234ff",
               "duration_s": 840.0, "claims": claims}
    replica = {"created": "2026-12-06T11:00:00+00:00", "git_commit": "abc1234ff", "duration_s": 830.0,
               "claims": [{"id": cid, "verdict": b} for cid, (_, b) in verdicts.items()]}
    return replication.attach_replication(copy.deepcopy(results), replica)


def test_disagreements_and_flips_are_named() -> None:
    results = _with_replication({"C05": ("supported", "inconclusive"), "C06": ("inconclusive", "supported"),
                                 "C07": ("supported", "supported"), "C09": ("supported", "refuted")})
    rep = results["replication"]
    assert [d["id"] for d in rep["disagreements"]] == ["C05", "C06", "C09"] and rep["flipped"] == ["C09"]
    text = readme_table(results)
    assert "2026-12-06, commit abc1234, 14 min" in text and "seeds from 1000" in text
    assert "C05: supported → inconclusive" in text and "C06: inconclusive → supported" in text
    assert "Flips between supported and refuted: C09" in text
    assert text.count("⚠") == 3
    agreeing = readme_table(_with_replication({"C07": ("supported", "supported")}))
    assert "Every verdict replicated" in agreeing


def test_readme_table_refuses_an_audit_without_replication(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(BnlabError, match="--replicate"):
        readme_table({"claims": []})
    (tmp_path / "results.json").write_text(json.dumps({"claims": []}))
    assert table_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: results.json has no replication")
    assert table_main([str(tmp_path / "missing")]) == 2


def test_replication_seeds_must_not_overlap(tmp_path: Path) -> None:
    with pytest.raises(BnlabError, match="overlap"):
        replication.run_replicated_audit("default", None, "C02", tmp_path / "x", "local", first_seed=990, log=None)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_replicate_on_a_real_smoke_audit_then_the_readme_table(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "smoke"
    assert main(["audit", "--scale", "smoke", "--claims", "C09", "--executor", "local", "--replicate", "--out",
                 str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    c09 = next(c for c in results["claims"] if c["id"] == "C09")
    assert c09["replication"]["first_seed"] == 1000 and (out / "replication" / "results.json").is_file()
    capsys.readouterr()
    assert table_main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "| C09 · " in text and ("Every verdict replicated" in text or "Disagreements (1): C09" in text)
