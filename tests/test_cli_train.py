"""`bnlab train`: a short summary, a run folder that resumes, one-line errors (exit 2), divergence exits 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnlab.cli import main


@pytest.fixture(autouse=True)
def _restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


FAST = ["train", "--dataset", "digits", "--model-opt", "hidden=[16,16]", "--steps", "20", "--batch-size", "32",
        "--eval-every", "10", "--threads", "1"]


def test_train_prints_a_summary_and_writes_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main([*FAST, "--norm", "bn", "--lr", "0.5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mlp/bn on digits" in text and "20 steps: test acc" in text
    assert {p.name for p in out.iterdir()} >= {"config.json", "checkpoint.pt", "metrics.jsonl", "result.json"}
    first = json.loads((out / "result.json").read_text())
    assert first["final"]["steps_done"] == 20
    # the same command again resumes from the finished checkpoint: same numbers, nothing retrained
    assert main([*FAST, "--norm", "bn", "--lr", "0.5", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["history"] == first["history"]
    assert main([*FAST, "--norm", "bn", "--lr", "0.5", "--out", str(out), "--no-resume"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_huge_lr_without_bn_diverges_and_exits_0(capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--model", "deep_mlp", "--model-opt", "depth=3", "--dataset", "digits", "--lr", "1e4",
                 "--steps", "30", "--batch-size", "32", "--threads", "1"])
    assert code == 0
    assert "diverged at step" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--norm", "batchy"], "unknown norm 'batchy'"),
    (["--lr", "0"], "lr must be"),
    (["--lr", "-1"], "lr must be"),
    (["--steps", "0"], "steps must be"),
    (["--batch-size", "0"], "--batch-size must be"),
    (["--batch-size", "1", "--norm", "bn"], "batch_size 1 with norm 'bn'"),
    (["--optimizer", "lbfgs"], "optimizer"),
    (["--model-opt", "depth"], "--model-opt expects KEY=VALUE"),
    (["--model-opt", "colour=red"], "model 'mlp'"),
    (["--threads", "0"], "threads must be"),
])
def test_bad_values_are_one_line_errors(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_regression_summary_has_no_accuracy(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--model", "dln", "--model-opt", "depth=4", "--dataset", "dln_regression",
                 "--dataset-opt", "n_train=200", "--norm", "bn", "--lr", "0.01", "--steps", "10", "--threads",
                 "1"]) == 0
    text = capsys.readouterr().out
    assert "10 steps: test loss" in text and "acc" not in text
