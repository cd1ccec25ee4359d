"""The bad-input battery: every mistake a user can make is a one-line error naming the problem, and touches nothing.

Each CLI case runs `bnlab.cli.main` in process and must give exit code 2, exactly one stderr line starting with
``error: `` that contains the expected words, no traceback, and leave the test's folder byte-for-byte as it was
(a sentinel ``out/results.json`` and every prepared file are compared before and after, and no file may appear).
Each API case must raise `BnlabError` (a ValueError) with a one-line message and likewise touch nothing. A few
cases also go through a real ``python -m bnlab.cli`` process, to see the exit status and stderr a shell sees.

Count: len(CLI_CASES) + len(API_CASES) + len(PROCESS_CASES) bad inputs (printed by test_battery_size).
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from bnlab.cli import main
from bnlab.errors import BnlabError

# the tiny run every checkpoint case starts from (CLI flags and the same settings as a TrainConfig mapping)
RUN_FLAGS = ["train", "--dataset", "digits", "--model-opt", "hidden=[8]", "--steps", "4", "--batch-size", "16",
             "--eval-every", "2", "--threads", "1"]
RUN_CONFIG = {"model": "mlp", "dataset": "digits", "model_kwargs": {"hidden": [8]}, "steps": 4, "batch_size": 16,
              "eval_every": 2, "progress": False}
FAST = ["train", "--dataset", "digits", "--steps", "2", "--batch-size", "8", "--threads", "1"]


class _Bomb:
    """Unpickling this runs a shell command: a checkpoint holding it must be refused, never executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step run folder (config.json, checkpoint.pt, ...) written through the API."""
    from bnlab.config import from_mapping
    from bnlab.train import TrainConfig, train

    out = tmp_path_factory.mktemp("good") / "run"
    train(from_mapping(TrainConfig, RUN_CONFIG), out_dir=out)
    return out


@pytest.fixture(scope="module")
def other_model_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of another model (deep_mlp) on the same data: its checkpoint must not load into the mlp run."""
    from bnlab.config import from_mapping
    from bnlab.train import TrainConfig, train

    out = tmp_path_factory.mktemp("other") / "run"
    train(from_mapping(TrainConfig, {**RUN_CONFIG, "model": "deep_mlp", "model_kwargs": {"depth": 2, "width": 8}}),
          out_dir=out)
    return out


@pytest.fixture
def world(tmp_path: Path, good_run: Path, other_model_run: Path) -> Path:
    """The folder every case runs against: a sentinel output, files, broken inputs of every kind."""
    w = tmp_path
    (w / "out").mkdir()
    (w / "out" / "results.json").write_text("previous results")
    (w / "afile").write_text("keep")
    (w / "bad.toml").write_text('name = "x"\nseeds = 1\n[base\nmodel = "mlp"\n')
    full = 'name = "x"\nseeds = 1\n[base]\nmodel = "mlp"\ndataset = "digits"\nsteps = 2\n[axes]\nnorm = ["bn"]\n'
    (w / "ok.toml").write_text(full)
    (w / "truncated.toml").write_text(full[: full.index("[axes]") + 4])  # cut inside a table header
    (w / "unknown_key.toml").write_text(full.replace('steps = 2', 'steps = 2\ncolour = "red"'))
    (w / "wrong_type.toml").write_text(full.replace('steps = 2', 'steps = "many"'))
    (w / "unknown_model.toml").write_text(full.replace('model = "mlp"', 'model = "resnet"'))
    (w / "nested_bad.toml").write_text(full.replace("[axes]", "[axes]\nlr = [0.1, -1.0]"))
    # run folders with broken checkpoints, all copies of a real one
    ckpt = (good_run / "checkpoint.pt").read_bytes()
    variants: dict[str, Callable[[Path], None]] = {
        "garbage": lambda p: p.write_bytes(b"this is not a checkpoint " * 40),
        "truncated": lambda p: p.write_bytes(ckpt[: len(ckpt) // 2]),
        "empty": lambda p: p.write_bytes(b""),
        "foreign": lambda p: torch.save({"state_dict": {"w": torch.zeros(3)}}, p),
        "bomb": lambda p: p.write_bytes(pickle.dumps({"format": "bnlab-checkpoint-v1",
                                                      "x": _Bomb(w / "PWNED")})),
        "other_model": lambda p: shutil.copy(other_model_run / "checkpoint.pt", p),
    }
    for name, damage in variants.items():
        shutil.copytree(good_run, w / f"run_{name}")
        damage(w / f"run_{name}" / "checkpoint.pt")
    shutil.copytree(good_run, w / "run_good")
    shutil.copytree(good_run, w / "run_badjson")
    (w / "run_badjson" / "config.json").write_text("{not json")
    # CIFAR-10 folders: empty, a garbage test batch, and one missing its training batches
    (w / "cifar_empty").mkdir()
    (w / "cifar_garbage").mkdir()
    for name in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6))):
        (w / "cifar_garbage" / name).write_bytes(b"\x80\x04garbage")
    (w / "cifar_partial").mkdir()
    with open(w / "cifar_partial" / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, handle)
    return w


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its content (None for folders): equal snapshots mean nothing was touched."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def assert_one_line_error(rc: int, err: str, out: str, needle: str) -> None:
    assert rc == 2, (rc, err, out)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert needle.lower() in lines[0].lower(), (needle, err)
    assert "Traceback" not in err + out


# (case id, argv with {w} for the world folder, words the one-line error must contain)
CLI_CASES: list[tuple[str, list[str], str]] = [
    ("unknown-command", ["frobnicate"], "No such command 'frobnicate'"),
    ("unknown-flag", ["train", "--frobnicate"], "No such option: --frobnicate"),
    ("unknown-flag-audit", ["audit", "--scale", "smoke", "--out", "{w}/out", "--fast"], "No such option: --fast"),
    ("unknown-model", [*FAST, "--model", "resnet"], "unknown model 'resnet'"),
    ("unknown-model-landscape", ["landscape", "--model", "resnet", "--out", "{w}/out"], "unknown model 'resnet'"),
    ("unknown-dataset", [*FAST, "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    ("unknown-norm", [*FAST, "--norm", "batchy"], "unknown norm 'batchy'"),
    ("unknown-norm-landscape", ["landscape", "--norms", "batchy", "--model", "mlp", "--out", "{w}/out"],
     "unknown norm 'batchy'"),
    ("unknown-claim", ["audit", "--scale", "smoke", "--claims", "C07,C99", "--out", "{w}/out"],
     "unknown claim id 'C99'"),
    ("unknown-scale", ["audit", "--scale", "huge", "--out", "{w}/out"], "unknown scale 'huge'"),
    ("unknown-optimizer", [*FAST, "--optimizer", "lbfgs"], "'optimizer' must be one of 'sgd', 'adam', got 'lbfgs'"),
    ("unknown-tracker", [*RUN_FLAGS, "--tracker", "mlflow", "--out", "{w}/run_good"], "unknown tracker 'mlflow'"),
    ("unknown-device", [*FAST, "--device", "tpu"], "device must be"),
    ("malformed-toml", ["sweep", "{w}/bad.toml", "--out", "{w}/out"], "malformed sweep file"),
    ("truncated-toml", ["sweep", "{w}/truncated.toml", "--out", "{w}/out"], "malformed sweep file"),
    ("missing-toml", ["sweep", "{w}/nope.toml", "--out", "{w}/out"], "sweep file not found"),
    ("unknown-config-key", ["sweep", "{w}/unknown_key.toml", "--out", "{w}/out"],
     "unknown config key 'sweep.base.colour'"),
    ("unknown-model-toml", ["sweep", "{w}/unknown_model.toml", "--out", "{w}/out", "--executor", "local"],
     "unknown model 'resnet'"),
    ("wrong-type-toml", ["sweep", "{w}/wrong_type.toml", "--out", "{w}/out"], "'sweep.base.steps' must be int"),
    ("negative-lr-in-axis", ["sweep", "{w}/nested_bad.toml", "--out", "{w}/out"], "lr must be a finite number > 0"),
    ("wrong-type-flag", [*FAST, "--steps", "many"], "Invalid value for '--steps'"),
    ("wrong-type-model-opt", [*FAST, "--model-opt", "hidden=abc"], "mlp hidden sizes must be a list of positive"),
    ("zero-lr", [*FAST, "--lr", "0"], "--lr must be a finite number > 0"),
    ("negative-lr", [*FAST, "--lr", "-0.1"], "lr must be a finite number > 0"),
    ("nan-lr", [*FAST, "--lr", "nan"], "lr must be a finite number > 0"),
    ("zero-steps", [*FAST, "--steps", "0"], "--steps must be an integer >= 1"),
    ("negative-steps", [*FAST, "--steps", "-3"], "--steps must be an integer >= 1"),
    ("zero-batch", [*FAST, "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    ("negative-batch", [*FAST, "--batch-size", "-8"], "--batch-size must be an integer >= 1"),
    ("batch-1-with-bn", [*FAST, "--batch-size", "1", "--norm", "bn"], "batch_size 1 with norm 'bn'"),
    ("batch-1-with-bn-gradflow", ["gradflow", "--batch-size", "1"], "--batch-size must be an integer >= 2"),
    ("batch-larger-than-data", [*FAST, "--batch-size", "100000"], "larger than the training set"),
    ("zero-eps", [*FAST, "--norm", "bn", "--norm-opt", "eps=0"], "eps must be > 0"),
    ("negative-eps", [*FAST, "--norm", "bn", "--norm-opt", "eps=-1e-5"], "eps must be > 0"),
    ("zero-seeds", ["audit", "--scale", "smoke", "--seeds", "0", "--out", "{w}/out"],
     "--seeds must be an integer >= 1"),
    ("even-grid", ["landscape", "--grid", "4", "--out", "{w}/out"], "--grid must be an odd number"),
    ("out-is-file-train", [*FAST, "--out", "{w}/afile"], "is a file"),
    ("out-under-file-train", [*FAST, "--out", "{w}/afile/run"], "which is a file"),
    ("out-is-file-audit", ["audit", "--scale", "smoke", "--out", "{w}/afile"], "is a file"),
    ("out-under-file-audit", ["audit", "--scale", "smoke", "--out", "{w}/afile/x"], "which is a file"),
    ("out-is-file-sweep", ["sweep", "{w}/ok.toml", "--out", "{w}/afile", "--executor", "local"], "is a file"),
    ("out-under-file-sweep", ["sweep", "{w}/ok.toml", "--out", "{w}/afile/x", "--executor", "local"],
     "Not a directory"),
    ("out-is-file-landscape", ["landscape", "--model", "mlp", "--dataset", "digits", "--norms", "bn",
                               "--train-steps", "1", "--grid", "3", "--line", "3", "--out", "{w}/afile"],
     "is a file or lies inside a file"),
    # root passes every permission check, so "unwritable" is a file system that refuses writes: /proc
    ("out-unwritable-audit", ["audit", "--scale", "smoke", "--out", "/proc/bnlab-audit"], "not writable"),
    ("out-unwritable-train", [*FAST, "--out", "/proc/bnlab-run"], "is not writable"),
    ("out-unwritable-landscape", ["landscape", "--model", "mlp", "--dataset", "digits", "--norms", "bn",
                                  "--out", "/proc/bnlab-landscape"], "cannot be created"),
    ("out-unwritable-sweep", ["sweep", "{w}/ok.toml", "--out", "/proc/bnlab-sweep", "--executor", "local"],
     "cannot create trial store folder"),
    ("report-of-a-file", ["report", "{w}/afile"], "is a file"),
    ("report-without-results", ["report", "{w}/cifar_empty"], "no results.json"),
    ("checkpoint-garbage", [*RUN_FLAGS, "--out", "{w}/run_garbage"], "cannot read checkpoint"),
    ("checkpoint-truncated", [*RUN_FLAGS, "--out", "{w}/run_truncated"], "cannot read checkpoint"),
    ("checkpoint-empty", [*RUN_FLAGS, "--out", "{w}/run_empty"], "cannot read checkpoint"),
    ("checkpoint-foreign", [*RUN_FLAGS, "--out", "{w}/run_foreign"], "is not a bnlab checkpoint"),
    ("checkpoint-pickle-bomb", [*RUN_FLAGS, "--out", "{w}/run_bomb"], "cannot read checkpoint"),
    ("checkpoint-other-model", [*RUN_FLAGS, "--out", "{w}/run_other_model"], "was written with model='deep_mlp'"),
    ("landscape-run-other-model", ["landscape", "--run", "{w}/run_other_model", "--model", "mlp", "--dataset",
                                   "digits", "--out", "{w}/out"], "was written with model='deep_mlp'"),
    ("landscape-run-truncated", ["landscape", "--run", "{w}/run_truncated", "--model", "mlp", "--dataset", "digits",
                                 "--out", "{w}/out"], "cannot read checkpoint"),
    ("landscape-run-bad-config", ["landscape", "--run", "{w}/run_badjson", "--model", "mlp", "--dataset", "digits",
                                  "--out", "{w}/out"], "is not valid JSON"),
    ("landscape-run-not-a-run", ["landscape", "--run", "{w}/cifar_empty", "--model", "mlp", "--dataset", "digits",
                                 "--out", "{w}/out"], "is not a run folder"),
    ("cifar-no-folder-given", [*FAST, "--dataset", "cifar10"], "cifar10 needs a data folder"),
    ("cifar-missing-folder", [*FAST, "--dataset", "cifar10", "--data-dir", "{w}/nowhere"],
     "no CIFAR-10 python-format batches"),
    ("cifar-empty-folder", [*FAST, "--dataset", "cifar10", "--data-dir", "{w}/cifar_empty"],
     "no CIFAR-10 python-format batches"),
    ("cifar-malformed-batch", [*FAST, "--dataset", "cifar10", "--data-dir", "{w}/cifar_garbage"],
     "malformed CIFAR-10 batch"),
    ("cifar-missing-batches", [*FAST, "--dataset", "cifar10", "--data-dir", "{w}/cifar_partial"],
     "CIFAR-10 folder is missing 'data_batch_1'"),
    ("audit-missing-data-dir", ["audit", "--scale", "smoke", "--data-dir", "{w}/nowhere", "--out", "{w}/out"],
     "data folder"),
]


@pytest.mark.parametrize("case, argv, needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case: str, argv: list[str], needle: str, world: Path,
                       capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # --threads must not leak into other tests
    before = snapshot(world)
    rc = main([a.replace("{w}", str(world)) for a in argv])
    captured = capsys.readouterr()
    assert_one_line_error(rc, captured.err, captured.out, needle)
    assert snapshot(world) == before, "a bad input changed or created a file"
    assert not (world / "PWNED").exists()


def _api_cases() -> list[tuple[str, Callable[[Path], object], str]]:
    from bnlab.config import from_mapping
    from bnlab.train import TrainConfig

    def landscape_of_another_model(w: Path) -> object:
        from bnlab.landscape.plane import random_line
        from bnlab.landscape.points import evaluate_points
        from bnlab.landscape.surface import Curve
        from bnlab.models import build_model

        x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
        small = build_model("mlp", in_shape=(4,), hidden=[3], num_classes=2)
        random_line(small, torch.nn.CrossEntropyLoss(), (x, y), steps=3, seed=0).save(w / "out" / "line.npz")
        saved = Curve.load(w / "out" / "line.npz")
        wide = build_model("mlp", in_shape=(4,), hidden=[5], num_classes=2)  # same parameter names, wider
        from bnlab.landscape.directions import model_origin

        return evaluate_points(wide, torch.nn.CrossEntropyLoss(), (x, y), model_origin(wide), saved.directions,
                        np.array([[0.5]]))

    def checkpoint_into_another_model(w: Path) -> object:
        from bnlab.models import build_model
        from bnlab.train import train

        other = build_model("mlp", in_shape=(64,), hidden=[5], num_classes=10)
        return train(from_mapping(TrainConfig, RUN_CONFIG), out_dir=w / "run_good", model=other)

    def garbage_landscape(w: Path) -> object:
        from bnlab.landscape.surface import Surface

        (w / "afile.npz").write_bytes(b"PK\x03\x04 not a zip")  # the case's own input, removed from the check
        try:
            return Surface.load(w / "afile.npz")
        finally:
            (w / "afile.npz").unlink()

    def empty_checkpoint(w: Path) -> object:
        from bnlab.train.checkpoint import load_checkpoint

        return load_checkpoint(w / "run_empty" / "checkpoint.pt", from_mapping(TrainConfig, RUN_CONFIG))

    def bomb_checkpoint(w: Path) -> object:
        from bnlab.train.checkpoint import load_checkpoint

        return load_checkpoint(w / "run_bomb" / "checkpoint.pt", from_mapping(TrainConfig, RUN_CONFIG))

    def model_of_other_checkpoint(w: Path) -> object:
        from bnlab.train.checkpoint import load_checkpoint

        return load_checkpoint(w / "run_other_model" / "checkpoint.pt", from_mapping(TrainConfig, RUN_CONFIG))

    def sweep_unknown_key(w: Path) -> object:
        from bnlab.sweeps.spec import load_sweep

        return load_sweep(w / "unknown_key.toml")

    def audit_bad_scale(w: Path) -> object:
        from bnlab.experiments.audit import run_audit

        return run_audit("huge", None, None, w / "out", "local", log=None)

    def audit_bad_claim(w: Path) -> object:
        from bnlab.experiments.audit import run_audit

        return run_audit("smoke", None, ["C07", "C15"], w / "out", "local", log=None)

    return [
        ("api-unknown-config-key", lambda w: from_mapping(TrainConfig, {"colour": "red"}),
         "unknown config key 'colour'"),
        ("api-wrong-type", lambda w: from_mapping(TrainConfig, {"lr": "fast"}), "config key 'lr' must be float"),
        ("api-wrong-type-bool-for-int", lambda w: from_mapping(TrainConfig, {"steps": True}),
         "config key 'steps' must be int"),
        ("api-not-a-table", lambda w: from_mapping(TrainConfig, ["lr", 0.1]), "expected a table of settings"),
        ("api-zero-lr", lambda w: TrainConfig(lr=0.0), "lr must be a finite number > 0"),
        ("api-inf-lr", lambda w: TrainConfig(lr=float("inf")), "lr must be a finite number > 0"),
        ("api-zero-steps", lambda w: TrainConfig(steps=0), "steps must be an integer >= 1"),
        ("api-zero-batch", lambda w: TrainConfig(batch_size=0), "batch_size must be an integer >= 1"),
        ("api-batch-1-bn", lambda w: TrainConfig(batch_size=1, norm="bn"), "batch_size 1 with norm 'bn'"),
        ("api-batch-1-bn-forward", lambda w: _bn_forward(torch.randn(1, 3)), "more than 1 value per channel"),
        ("api-zero-eps", lambda w: _bn(eps=0.0), "eps must be > 0"),
        ("api-negative-eps", lambda w: _bn(eps=-1e-3), "eps must be > 0"),
        ("api-unknown-model", lambda w: _build("resnet"), "unknown model 'resnet'"),
        ("api-unknown-norm", lambda w: _build("mlp", norm="batchy"), "unknown norm 'batchy'"),
        ("api-unknown-dataset", lambda w: _load("imagenet"), "unknown dataset 'imagenet'"),
        ("api-cifar-missing", lambda w: _load("cifar10", data_dir=w / "nowhere"), "no CIFAR-10 python-format"),
        ("api-cifar-malformed", lambda w: _load("cifar10", data_dir=w / "cifar_garbage"), "malformed CIFAR-10"),
        ("api-landscape-direction-of-another-model", landscape_of_another_model, "does not match the model's"),
        ("api-garbage-landscape-file", garbage_landscape, "is not a bnlab landscape file"),
        ("api-checkpoint-into-another-model", checkpoint_into_another_model, "does not fit the model"),
        ("api-empty-checkpoint", empty_checkpoint, "cannot read checkpoint"),
        ("api-pickle-bomb-checkpoint", bomb_checkpoint, "cannot read checkpoint"),
        ("api-checkpoint-of-another-model", model_of_other_checkpoint, "was written with model='deep_mlp'"),
        ("api-sweep-unknown-key", sweep_unknown_key, "unknown config key 'sweep.base.colour'"),
        ("api-audit-bad-scale", audit_bad_scale, "unknown scale 'huge'"),
        ("api-audit-bad-claim", audit_bad_claim, "unknown claim id 'C15'"),
    ]


def _bn(**kw: object) -> object:
    from bnlab.layers import BatchNorm

    return BatchNorm(3, **kw)


def _bn_forward(x: torch.Tensor) -> object:
    from bnlab.layers import BatchNorm

    return BatchNorm(x.shape[1]).train()(x)


def _build(name: str, **kw: object) -> object:
    from bnlab.models import build_model

    return build_model(name, in_shape=(4,), **kw)


def _load(name: str, **kw: object) -> object:
    from bnlab.data import load_dataset

    return load_dataset(name, **kw)


API_CASES = _api_cases()


@pytest.mark.parametrize("case, call, needle", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(case: str, call: Callable[[Path], object], needle: str, world: Path) -> None:
    before = snapshot(world)
    with pytest.raises(BnlabError) as info:
        call(world)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message and needle.lower() in message.lower(), message
    after = snapshot(world)
    if case == "api-landscape-direction-of-another-model":  # the case wrote its own input first
        after.pop("out/line.npz")
    assert after == before, "a bad input changed or created a file"
    assert not (world / "PWNED").exists()


PROCESS_CASES: list[tuple[str, list[str], str]] = [
    ("process-unknown-command", ["frobnicate"], "No such command"),
    ("process-malformed-toml", ["sweep", "{w}/bad.toml", "--out", "{w}/out"], "malformed sweep file"),
    ("process-pickle-bomb", [*RUN_FLAGS, "--out", "{w}/run_bomb"], "cannot read checkpoint"),
]


@pytest.mark.parametrize("case, argv, needle", PROCESS_CASES, ids=[c[0] for c in PROCESS_CASES])
def test_process_bad_input(case: str, argv: list[str], needle: str, world: Path) -> None:
    before = snapshot(world)
    proc = subprocess.run([sys.executable, "-m", "bnlab.cli", *[a.replace("{w}", str(world)) for a in argv]],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    assert_one_line_error(proc.returncode, proc.stderr, proc.stdout, needle)
    assert snapshot(world) == before
    assert not (world / "PWNED").exists()


def test_battery_size() -> None:
    """The issue asks for at least 30 bad inputs; the count is printed so a CI log shows it (pytest -s)."""
    total = len(CLI_CASES) + len(API_CASES) + len(PROCESS_CASES)
    print(f"bad-input battery: {len(CLI_CASES)} CLI + {len(API_CASES)} API + {len(PROCESS_CASES)} process = {total}")
    assert total >= 30
    assert len({c[0] for c in CLI_CASES + API_CASES + PROCESS_CASES}) == total  # every case id is distinct


def test_pickle_bomb_is_not_a_toy(tmp_path: Path) -> None:
    """Control for the bomb cases: unpickled without weights_only, the same bytes do run the command."""
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"x": _Bomb(marker)})
    pickle.load(io.BytesIO(payload))  # noqa: S301 - the point of the control
    assert marker.exists()
