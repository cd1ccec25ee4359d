"""The audit orchestration (`bnlab.experiments.audit`) on fake claim modules, and the claims' descriptions."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

import audit_fakes
from bnlab.data.registry import current_data_dir
from bnlab.errors import BnlabError
from bnlab.experiments import audit
from bnlab.experiments.base import CLAIM_IDS, VERDICTS, Plan
from bnlab.experiments.claims import CLAIMS

CLAIM_KEYS = {"id", "title", "verdict", "rule", "summary", "method", "key_number", "metrics", "figures",
              "caveats", "config_hash"}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    audit_fakes.install(monkeypatch)
    # the trial store is per code version; other work on this tree must not change it between two runs of a test
    monkeypatch.setattr("bnlab.sweeps.trial.code_fingerprint", lambda fn: "pinned")
    audit_fakes.CALLS.clear()
    monkeypatch.delenv("BNLAB_FAKE_INTERRUPT_AT", raising=False)
    monkeypatch.delenv("BNLAB_FAKE_SLEEP", raising=False)
    return audit_fakes.CALLS


def by_id(results: dict) -> dict[str, dict]:
    return {c["id"]: c for c in results["claims"]}


def test_claims_metadata_covers_every_claim() -> None:
    assert tuple(CLAIMS) == CLAIM_IDS
    for cid, info in CLAIMS.items():
        assert info.id == cid
        for text in (info.title, info.statement, info.how_tested, info.reference):
            assert isinstance(text, str) and len(text) > 10, (cid, text)
        assert info.references and all("20" in r or "19" in r for r in info.references)
    # the statements restate the explanation's key formulas and claims
    assert "σ²_B = (1/m) Σ (x_i − μ_B)²" in CLAIMS["C01"].statement
    assert "BN(αWx) = BN(Wx)" in CLAIMS["C09"].statement
    assert "(1/σ)(I − 11ᵀ/m − x̂x̂ᵀ/m)" in CLAIMS["C08"].statement
    assert "Dropout" in CLAIMS["C12"].statement


def test_audit_writes_all_claims_with_honest_verdicts(fakes: list[str], tmp_path: Path) -> None:
    lines: list[str] = []
    result = audit.run_audit("smoke", None, None, tmp_path / "out", "local", log=lines.append)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results == result.results
    assert results["scale"] == "smoke" and results["seeds"] == "default"
    assert set(results["versions"]) >= {"python", "torch", "numpy", "bnlab", "platform"}
    assert "git_commit" in results and isinstance(results["duration_s"], float)
    assert [c["id"] for c in results["claims"]] == list(CLAIM_IDS)
    for claim in results["claims"]:
        assert CLAIM_KEYS <= set(claim), claim["id"]
        assert claim["verdict"] in VERDICTS
        assert claim["title"] == CLAIMS[claim["id"]].title
    claims = by_id(results)
    # C07: measured; fake BN beats fake no BN for every seed -> supported, key number with a CI
    c07 = claims["C07"]
    assert c07["verdict"] == "supported"
    assert c07["key_number"]["name"] == "Δacc" and c07["key_number"]["ci_low"] is not None
    assert c07["key_number"]["value"] == pytest.approx((0.2 + 0.193) / 2)
    assert c07["primary"]["name"] == "Δacc" and c07["primary"]["n_seeds"] == 2 and c07["primary"]["mde"] > 0
    assert [v["vote"] for v in c07["votes"]] == ["supported"] and c07["secondary"] == []
    assert c07["protocol"]["endpoint"]["test"] == "t" and c07["seeds"] == [0, 1]
    assert [f["file"] for f in c07["figures"]] == ["figures/C07-curves.svg", "figures/C07-final.svg"]
    assert c07["figures"][0]["data"]["panels"][0]["series"][0]["label"] == "BN"  # spec data kept
    assert all((tmp_path / "out" / f["file"]).is_file() for f in c07["figures"])
    assert c07["config_hash"] and c07["n_trials"] == 4
    # C08: a trial raised -> inconclusive with the error, summarize not called
    assert claims["C08"]["verdict"] == "inconclusive"
    assert any("trial exploded for seed 1" in c for c in claims["C08"]["caveats"])
    # C09: summarize raised -> inconclusive with the error
    assert claims["C09"]["verdict"] == "inconclusive"
    assert any("ZeroDivisionError: summary divided by zero" in c for c in claims["C09"]["caveats"])
    # everything else has no module -> not_measured, never a guess
    for cid in set(CLAIM_IDS) - {"C07", "C08", "C09"}:
        assert claims[cid]["verdict"] == "not_measured" and claims[cid]["key_number"] is None
    # the trial shared by C07 and C09 ran once; the failing one was tried twice (retries=1)
    assert sorted(fakes) == ["bn/0", "bn/1", "bn/100", "none/0", "none/1"]
    assert results["trials"] == {"unique": 6, "cached": 0, "ran": 6, "failed": 1}
    assert sum(1 for line in lines if line.startswith("[")) == 6  # one progress line per unique trial
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "report.md").is_file()


def test_rerun_reuses_cached_trials_and_is_bit_identical(fakes: list[str], tmp_path: Path) -> None:
    first = audit.run_audit("smoke", 2, None, tmp_path / "a", "local", log=None)
    fakes.clear()
    second = audit.run_audit("smoke", 2, None, tmp_path / "a", "local", log=None)
    assert fakes == []  # every ok trial came from the store; only the failed one was retried
    assert second.results["trials"]["cached"] == 5
    fresh = audit.run_audit("smoke", 2, None, tmp_path / "b", "local", log=None)
    texts = [json.dumps(r.results["claims"], sort_keys=True) for r in (first, second, fresh)]
    assert texts[0] == texts[1] == texts[2]
    # the rendered figures are deterministic too
    for name in ("C07-curves.svg", "C07-final.svg"):
        assert (tmp_path / "a" / "figures" / name).read_bytes() == (tmp_path / "b" / "figures" / name).read_bytes()


def test_interrupted_audit_resumes_and_matches_a_clean_run(fakes: list[str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNLAB_FAKE_INTERRUPT_AT", "none/1")  # Ctrl-C during the 4th trial
    with pytest.raises(KeyboardInterrupt):
        audit.run_audit("smoke", 2, "C07", tmp_path / "a", "local", log=None)
    assert not (tmp_path / "a" / "results.json").exists()  # nothing half-written
    assert len(list((tmp_path / "a" / "trials").glob("*.json"))) == 3
    monkeypatch.delenv("BNLAB_FAKE_INTERRUPT_AT")
    fakes.clear()
    resumed = audit.run_audit("smoke", 2, "C07", tmp_path / "a", "local", log=None)
    assert fakes == ["none/1"]  # only the interrupted trial ran again
    clean = audit.run_audit("smoke", 2, "C07", tmp_path / "b", "local", log=None)
    assert json.dumps(resumed.results["claims"]) == json.dumps(clean.results["claims"])


def test_selected_claims_only(fakes: list[str], tmp_path: Path) -> None:
    result = audit.run_audit("smoke", 3, "c07", tmp_path, "local", log=None)
    claims = by_id(result.results)
    assert claims["C07"]["verdict"] == "supported"
    assert claims["C08"]["verdict"] == "not_measured" and "not among the claims selected" in claims["C08"]["summary"]
    assert result.results["claims_selected"] == ["C07"] and len(result.results["claims"]) == 14
    assert sorted(fakes) == ["bn/0", "bn/1", "bn/2", "none/0", "none/1", "none/2"]


def test_parse_claims() -> None:
    assert audit.parse_claims(None) == CLAIM_IDS
    assert audit.parse_claims("C13, c07,7") == ("C07", "C13")
    assert audit.parse_claims(["C01"]) == ("C01",)
    for bad in ("C15", "C07,X", "", " , "):
        with pytest.raises(BnlabError):
            audit.parse_claims(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": "huge"}, "unknown scale 'huge'"),
    ({"seeds": 0}, "seeds must be an integer >= 1"),
    ({"seeds": -2}, "seeds must be an integer >= 1"),
    ({"claims": "C99"}, "unknown claim id 'C99'"),
    ({"executor": "slurm"}, "unknown executor 'slurm'"),
    ({"workers": 0}, "workers must be an integer >= 1"),
    ({"address": "auto"}, "--address is for the ray executor"),
    ({"data_dir": "/nonexistent/bnlab-data"}, "data folder"),
])
def test_bad_requests_touch_nothing(kwargs: dict, message: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(BnlabError, match=message):
        audit.run_audit(**{"scale": "smoke", "out": out, "log": None, **kwargs})
    assert not out.exists()


def test_output_folder_checks(tmp_path: Path) -> None:
    file = tmp_path / "file.txt"
    file.write_text("keep me")
    with pytest.raises(BnlabError, match="is a file"):
        audit.validate_request("smoke", out=file)
    with pytest.raises(BnlabError, match="which is a file"):
        audit.validate_request("smoke", out=file / "sub" / "dir")
    assert file.read_text() == "keep me"
    with pytest.raises(BnlabError, match="not writable"):
        audit.validate_request("smoke", out=Path("/proc/bnlab-audit-test"))
    assert audit.validate_request("paper").seeds is None  # each claim's own default (experiments.base)
    assert audit.validate_request("default", seeds=4, first_seed=8).first_seed == 8
    with pytest.raises(BnlabError, match="first seed"):
        audit.validate_request("default", first_seed=-1)


def test_plan_and_import_errors_are_recorded(fakes: list[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from bnlab.experiments import registry

    def bad_plan(scale: str, seeds: int) -> object:
        return ["not a plan"]

    monkeypatch.setattr(audit_fakes.MODULES["C09"], "plan", bad_plan)
    monkeypatch.setitem(registry.CLAIM_MODULES, "C10", "bnlab.experiments.audit_missing_dependency_probe")
    real_import = registry.importlib.import_module

    def import_module(name: str) -> object:
        if name == "bnlab.experiments.audit_missing_dependency_probe":
            raise ModuleNotFoundError("No module named 'someextra'", name="someextra")
        return real_import(name)

    monkeypatch.setattr(registry.importlib, "import_module", import_module)
    claims = by_id(audit.run_audit("smoke", 2, None, tmp_path, "local", log=None).results)
    assert claims["C09"]["verdict"] == "inconclusive"
    assert any("plan() failed: TypeError" in c for c in claims["C09"]["caveats"])
    assert claims["C10"]["verdict"] == "inconclusive"
    assert any("failed to import" in c and "someextra" in c for c in claims["C10"]["caveats"])
    assert claims["C07"]["verdict"] == "supported"  # the others went on


def test_data_dir_is_bound_into_the_trials_that_read_it(fakes: list[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial that reads a folder-backed data set gets the folder and its content fingerprint in its key: another
    folder, or the same folder with other contents, recomputes; the same contents reuse the cached result."""
    seen: list[str | None] = []

    def spy(norm: str, seed: int, dataset: str = "cifar10") -> dict:
        seen.append(current_data_dir())
        return audit_fakes.accuracy(norm, seed)

    real_plan = audit_fakes.MODULES["C07"].plan

    def plan_reading_cifar(scale: str, seeds: int | None, first_seed: int = 0) -> Plan:
        p = real_plan(scale, seeds, first_seed)
        return dataclasses.replace(p, trials=tuple(dataclasses.replace(t, params={**t.params, "dataset": "cifar10"})
                                                   for t in p.trials))

    monkeypatch.setitem(audit_fakes.FAKE_FUNCS, "bnlab.fake_audit:accuracy", spy)
    monkeypatch.setattr(audit_fakes.MODULES["C07"], "plan", plan_reading_cifar)
    first, second = tmp_path / "data-a", tmp_path / "data-b"
    for folder, content in ((first, b"one"), (second, b"two")):
        folder.mkdir()
        (folder / "test_batch").write_bytes(content)
    out = tmp_path / "out"
    audit.run_audit("smoke", 1, "C07", out, "local", data_dir=first, log=None)
    assert seen == [str(first.resolve())] * 2
    audit.run_audit("smoke", 1, "C07", out, "local", data_dir=first, log=None)
    assert len(seen) == 2  # same folder, same contents: cached
    audit.run_audit("smoke", 1, "C07", out, "local", data_dir=second, log=None)
    assert seen[2:] == [str(second.resolve())] * 2  # another folder: recomputed on its data
    (second / "test_batch").write_bytes(b"changed")
    audit.run_audit("smoke", 1, "C07", out, "local", data_dir=second, log=None)
    assert len(seen) == 6  # same folder, new contents: recomputed
    records = [json.loads(p.read_text()) for p in (out / "trials").rglob("*.json")]
    assert {r["data"]["dir"] for r in records} == {str(first.resolve()), str(second.resolve())}
    assert current_data_dir() is None and "BNLAB_DATA_DIR" not in os.environ


def test_a_code_change_recomputes_and_the_store_records_the_fingerprint(fakes: list[str], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    audit.run_audit("smoke", 1, "C07", tmp_path, "local", log=None)
    records = [json.loads(p.read_text()) for p in (tmp_path / "trials").glob("*.json")]
    assert records and {r["code_fingerprint"] for r in records} == {"pinned"}
    fakes.clear()
    monkeypatch.setattr("bnlab.sweeps.trial.code_fingerprint", lambda fn: "0123456789abcdef")
    audit.run_audit("smoke", 1, "C07", tmp_path, "local", log=None)
    assert sorted(fakes) == ["bn/0", "none/0"]  # recomputed, not taken from the older code's records


def test_ray_executor_without_ray_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(BnlabError, match="needs Ray"):
        audit.validate_request("smoke", out=tmp_path / "out", executor="ray")
    assert not (tmp_path / "out").exists()


def test_paper_scale_says_plainly_where_it_ran_on_a_stand_in():
    from bnlab.experiments import c09_scale_invariance as c09
    from bnlab.experiments.audit import stand_in_caveats

    paper = stand_in_caveats(c09.plan("paper", 2))
    assert len(paper) == 1 and "'mnist5k' instead of MNIST" in paper[0] and "--data-dir" in paper[0]
    assert stand_in_caveats(c09.plan("default", 2)) == []
    from bnlab.experiments import c05_loss_smoothness as c05

    assert not any("cifar10" in c for c in stand_in_caveats(c05.plan("paper", 2)))  # CIFAR-10 is the real thing
