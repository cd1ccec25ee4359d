"""`bnlab sharpness`: the edge of stability on a no-BN net under full-batch GD, BN beside it, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnlab.cli import main
from bnlab.errors import BnlabError
from bnlab.workflows.sharpness_command import SharpnessConfig, half_mse, run_sharpness


def test_no_bn_net_hovers_at_two_over_eta(tmp_path: Path):
    """Cohen et al.: under full-batch GD λ_max reaches 2/η and stays there (measured here: no-BN tanh MLP on 500
    digits, ½-MSE; λ_max starts at 70.6, so lr 0.04 (2/η = 50) and 0.03 (66.7) are at the edge within ~200 steps)."""
    cfg = SharpnessConfig(norms=("none", "bn"), lrs=(0.03, 0.04), steps=600, every=100, bn_modes=("train",))
    result = run_sharpness(cfg, tmp_path, log=None)
    runs = {(r["norm"], r["lr"]): r for r in result["runs"]}
    for lr in (0.03, 0.04):
        plain = runs["none", lr]
        assert plain["first_at_limit"] is not None and plain["diverged_at"] is None
        assert plain["late_ratio_to_limit"] == pytest.approx(1.0, abs=0.1), plain["top"]["train"]
        assert runs["bn", lr]["late_ratio_to_limit"] is not None  # reported, whatever it shows
    assert (tmp_path / "sharpness.png").stat().st_size > 0
    on_disk = json.loads((tmp_path / "sharpness.json").read_text())
    assert on_disk["config"]["lrs"] == [0.03, 0.04]


def test_half_mse():
    import torch

    out = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert float(half_mse(out, torch.tensor([0, 1]))) == pytest.approx(0.25)  # (0 + 1) / 2 examples / 2


@pytest.mark.parametrize("kw, msg", [({"optimizer": "adam"}, "optimizer"), ({"loss": "l1"}, "loss"),
                                     ({"lrs": (0.1, -1.0)}, "learning rates"), ({"bn_modes": ("x",)}, "bn_modes"),
                                     ({"every": 0}, "every"), ({"norms": ()}, "at least one")])
def test_bad_config(kw, msg):
    with pytest.raises(BnlabError, match=msg):
        SharpnessConfig(**kw)


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["sharpness", "--lr", "0.1,abc", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--lr" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


USER_FILES = '''
import torch
from torch import nn


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 2, 3, generator=g)
    y = (x.flatten(1).sum(1) > 0).long() + (x[:, 0, 0] > 1).long()
    return x[:64], y[:64], x[64:], y[64:]
'''


def test_cli_on_a_users_model_under_sgd(tmp_path: Path):
    """`bnlab sharpness --model FILE.py:FACTORY --data FILE.py:FACTORY --optimizer sgd`: per BN mode λ_max and the
    batch sharpness beside 2/η, each with the batch size its BN statistics used; the twin without BN, one mode."""
    src = tmp_path / "user.py"
    src.write_text(USER_FILES)
    out = tmp_path / "s"
    argv = ["sharpness", "--model", f"{src}:model", "--data", f"{src}:data", "--optimizer", "sgd",
            "--batch-size", "16", "--sgd-batches", "3", "--lr", "0.5", "--steps", "20", "--every", "10",
            "--train-size", "48", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "sharpness.json").read_text())
    runs = {r["norm"]: r for r in result["runs"]}
    bn, none = runs["bn"], runs["none"]
    assert bn["has_bn"] and not none["has_bn"] and set(none["top"]) == {"train"}
    for mode in ("train", "eval"):
        assert len(bn["top"][mode]) == len(bn["batch_sharpness"][mode]) == len(bn["steps"]) == 3
        assert all(v is not None and v > 0 for v in bn["batch_sharpness"][mode])
    assert bn["bn_batch_size"] == {"train": {"top": 48, "batch_sharpness": 16},
                                   "eval": {"top": None, "batch_sharpness": None}}
    assert none["bn_batch_size"]["train"] == {"top": None, "batch_sharpness": None}
    assert bn["sgd_batch_size"] == 16 and bn["late_batch_ratio_to_limit"] is not None
    assert (out / "sharpness.png").stat().st_size > 0
    assert main(["sharpness", "--model", f"{src}:nope", "--data", f"{src}:data", "--out", str(tmp_path / "t")]) == 2
    assert not (tmp_path / "t").exists()


def test_user_model_takes_bn_and_none_only():
    with pytest.raises(BnlabError, match="twin"):
        SharpnessConfig(model_file="m.py:f", norms=("bn", "gn"))
