import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bnlab.sweeps.trial import Trial

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_paper_check", ROOT / "bench" / "gpu_paper_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(records):
    trials = [Trial("C07", name, "bnlab.x:y", {"i": i}) for i, name in enumerate(records)]
    recs = {t.key(): {**rec, "key": t.key()} for t, rec in zip(trials, records.values())}
    return SimpleNamespace(trials=trials, records=recs)


def _ok(losses, device="cuda", diverged=None):
    return {"status": "ok", "error": None, "duration_s": 2.0,
            "result": {"device": device, "diverged_at_step": diverged, "final": {"steps_done": 100},
                       "curves": {"train_loss": losses}}}


def test_check_records_flags_wrong_device_failures_and_no_learning():
    check = _load().check_records
    good = _run({"norm=bn/lr=0.1/seed=0": _ok([2.3, 2.0, 1.5, 1.0]),
                 "norm=none/lr=0.5/seed=0": _ok([2.3, float("nan")], diverged=1)})
    failures, rates = check(good, cuda=True)
    assert failures == [] and rates == [50.0, 50.0]
    bad = _run({"norm=bn/lr=0.1/seed=0": _ok([2.3, 2.4, 2.5, 2.6]),
                "norm=none/lr=0.1/seed=0": _ok([2.3, 2.2], device="cpu"),
                "norm=none/lr=0.5/seed=0": _ok([2.3, float("inf")]),
                "norm=none/lr=0.01/seed=0": {"status": "failed", "error": "RuntimeError: CUDA OOM",
                                             "duration_s": 1.0, "result": None}})
    failures, _ = check(bad, cuda=True)
    assert len(failures) == 4
    assert any("did not reduce the training loss" in f for f in failures)
    assert any("ran on cpu, expected cuda" in f for f in failures)
    assert any("non-finite loss without a recorded divergence" in f for f in failures)
    assert any("CUDA OOM" in f for f in failures)


def test_fake_cifar10_is_read_by_the_real_loader(tmp_path):
    from bnlab.data.cifar10 import load_cifar10

    folder = _load().write_fake_cifar10(tmp_path / "c", train=50, test=20)
    data = load_cifar10(folder)
    assert tuple(data.train_x.shape) == (50, 3, 32, 32) and tuple(data.test_x.shape) == (20, 3, 32, 32)
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0


@pytest.mark.slow
def test_gpu_check_script_runs_the_paper_sweep_plumbing_on_cpu(tmp_path, capsys):
    code = _load().main(["--allow-cpu", "--steps", "3", "--config", "narrow", "--batch-size", "16",
                         "--fake-train", "100", "--fake-test", "40", "--executor", "local", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["trials"] == 6 and summary["cuda"] is False and summary["paper_trials"] == 30
    # 3 steps cannot show learning; every other check must pass on CPU
    assert all("did not reduce" in f for f in summary["failures"]), summary["failures"]
    assert code == (1 if summary["failures"] else 0)
    assert "paper sweep (30 trials x 15000 steps)" in capsys.readouterr().out
