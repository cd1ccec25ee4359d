"""Determinism: the same seed gives bitwise-identical numbers on CPU, in process and across executors, and the
report records what is needed to reproduce it (library versions, seeds, config hashes, git commit).

"Bitwise" is checked on the JSON text (``json.dumps``, which writes every float with its shortest exact repr), so a
difference in the last bit of any float fails the test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import audit_fakes
from bnlab.experiments.audit import claims_section, run_audit
from bnlab.experiments.base import CLAIM_IDS


@pytest.fixture(autouse=True)
def _one_thread_then_restore():
    """One torch thread (fast for tiny nets on a busy machine), the process-wide setting restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_history(**overrides: Any) -> str:
    from bnlab.train import TrainConfig, train

    config = TrainConfig(**{"model": "mlp", "model_kwargs": {"hidden": [16, 16]}, "dataset": "digits",
                            "steps": 25, "batch_size": 16, "eval_every": 10, "lr": 0.3, "progress": False,
                            **overrides})
    result = train(config)
    return json.dumps({"history": result.history, "final": {k: v for k, v in result.final.items()
                                                           if k not in ("seconds", "steps_per_s")}})


@pytest.mark.parametrize("overrides", [
    {"norm": "bn"},
    {"norm": "noisy_bn"},  # draws noise from the seeded RNG every step
    {"norm": "none", "model_kwargs": {"hidden": [16, 16], "dropout": 0.3}},  # dropout masks
    {"norm": "bn", "optimizer": "adam", "lr": 0.01, "momentum": 0.0},
])
def test_same_seed_same_bits_in_process(overrides: dict[str, Any]) -> None:
    first = _train_history(**overrides)
    torch.manual_seed(12345)  # whatever the global RNG holds in between must not matter
    torch.randn(100)
    assert _train_history(**overrides) == first


def test_another_seed_gives_other_numbers() -> None:
    """Control: the comparison above can fail."""
    assert _train_history(norm="bn", seed=0) != _train_history(norm="bn", seed=1)


def _trials() -> list:
    from bnlab.experiments.registry import load_experiment

    trials = []
    for claim in ("C07", "C11"):
        plan = load_experiment(claim).plan("smoke", 2)
        trials += list(plan.trials[:3]) + list(plan.trials[-2:])
    return trials


def test_local_and_process_executors_give_the_same_bits(tmp_path: Path) -> None:
    from bnlab.sweeps import TrialStore, get_executor

    trials = _trials()
    local = get_executor("local").run(trials, TrialStore(tmp_path / "local"))
    process = get_executor("process", workers=2).run(trials, TrialStore(tmp_path / "process"))
    assert set(local) == set(process) == {t.key() for t in trials}
    for key in local:
        assert local[key]["status"] == process[key]["status"] == "ok", (local[key], process[key])
        assert json.dumps(local[key]["result"], sort_keys=True) == json.dumps(process[key]["result"], sort_keys=True)


_VOLATILE = re.compile(r"second(?!ary)|duration|elapsed|timing|created|timestamp|wall|steps_per_s|cpu_s|_time$",
                       re.IGNORECASE)


def volatile_keys(data: Any, path: str = "") -> list[str]:
    """Keys in the claims section that would hold a timing or a date (must be none: it is compared bit for bit)."""
    found = []
    if isinstance(data, dict):
        for k, v in data.items():
            if _VOLATILE.search(str(k)):
                found.append(f"{path}.{k}")
            found += volatile_keys(v, f"{path}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += volatile_keys(v, f"{path}[{i}]")
    return found


def check_reproducibility_fields(results: dict[str, Any], out: Path) -> None:
    """What the report must record: library versions, seeds, config hashes, the git commit."""
    versions = results["versions"]
    assert {"python", "torch", "numpy", "bnlab", "platform"} <= set(versions)
    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"] == torch.__version__
    assert results["seeds"] == "default" or (isinstance(results["seeds"], int) and results["seeds"] >= 1)
    assert all(c["seeds"] for c in results["claims"] if c["verdict"] != "not_measured")  # the seeds each claim ran
    assert re.fullmatch(r"[0-9a-f]{40}", results["git_commit"] or ""), results["git_commit"]  # tests run in git
    assert isinstance(results["git_dirty"], bool)
    assert re.fullmatch(r"[0-9a-f]{16}|pinned", results["code_fingerprint"])
    measured = [c for c in results["claims"] if c["verdict"] != "not_measured"]
    assert measured
    for claim in measured:
        assert re.fullmatch(r"[0-9a-f]{8,64}", claim["config_hash"] or ""), (claim["id"], claim["config_hash"])
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    from bnlab.report.markdown import escape

    for text, esc in ((html, str), (markdown, escape)):
        assert results["git_commit"] in text
        assert esc(versions["torch"]) in text
        for claim in measured:
            assert claim["config_hash"] in text, claim["id"]
    assert volatile_keys(results["claims"]) == []
    assert str(out) not in json.dumps(results["claims"])  # no paths either


def test_report_records_versions_seeds_hashes_and_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audit_fakes.install(monkeypatch)
    out = tmp_path / "audit"
    result = run_audit("smoke", 2, None, out, "local", log=None)
    check_reproducibility_fields(result.results, out)
    on_disk = json.loads((out / "results.json").read_text())
    assert claims_section(on_disk) == claims_section(result.results)


def test_volatile_key_check_can_fail() -> None:
    assert volatile_keys({"metrics": {"train": {"seconds": 1.0}}, "x": [{"duration_s": 2, "cpu_s": 1}]}) == [
        ".metrics.train.seconds", ".x[0].duration_s", ".x[0].cpu_s"]


@pytest.mark.slow
def test_two_full_smoke_audits_are_bit_identical(tmp_path: Path) -> None:
    """Two complete smoke audits of every claim, one with the local executor and one with the process executor,
    in fresh folders (nothing cached): the "claims" sections of results.json are identical byte for byte."""
    import bnlab.experiments.audit as audit

    first = run_audit("smoke", None, None, tmp_path / "local", "local", log=None)
    second = run_audit("smoke", None, None, tmp_path / "process", "process", workers=2, log=None)
    assert first.trial_counts["cached"] == second.trial_counts["cached"] == 0
    assert [c["id"] for c in first.results["claims"]] == list(CLAIM_IDS)
    text_1 = claims_section(json.loads((tmp_path / "local" / "results.json").read_text()))
    text_2 = claims_section(json.loads((tmp_path / "process" / "results.json").read_text()))
    if text_1 != text_2:
        diff = [a["id"] for a, b in zip(first.results["claims"], second.results["claims"])
                if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)]
        pytest.fail(f"claims differ between two smoke audits: {diff}")
    # the rendered numbers agree too (the HTML differs only in the top-level timings and paths)
    check_reproducibility_fields(first.results, tmp_path / "local")
    assert audit.claims_section(first.results) == text_1
