"""The training engine: seeding, resume, divergence, probes, evaluation, user models and config validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.config import from_mapping
from bnlab.data import load_dataset
from bnlab.errors import BnlabError
from bnlab.train import ProbeContext, TrainConfig, train
from bnlab.train.metrics import loss_and_accuracy


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: faster for these tiny nets on a shared 2-core machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = dict(model="mlp", dataset="digits", model_kwargs={"hidden": [16, 16]}, batch_size=32, steps=30,
             eval_every=10, lr=0.2, progress=False)


def cfg(**over) -> TrainConfig:
    return TrainConfig(**{**SMALL, **over})


def test_same_seed_is_bit_identical_and_seed_matters() -> None:
    c = cfg(norm="bn", momentum=0.9, model_kwargs={"hidden": [16, 16], "dropout": 0.1})
    a, b = train(c), train(c)
    assert a.history == b.history
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    other = train(cfg(norm="bn", momentum=0.9, seed=1, model_kwargs={"hidden": [16, 16], "dropout": 0.1}))
    assert other.history["train_loss"] != a.history["train_loss"]


class _StopAt:
    """Simulates a crash: raises at a given step (the last checkpoint is the one before it)."""

    name, every = "stop", 1

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, ctx: ProbeContext) -> dict:
        if ctx.step == self.step:
            raise KeyboardInterrupt
        return {}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, optimizer: str) -> None:
    c = cfg(norm="noisy_bn", optimizer=optimizer, momentum=0.0 if optimizer == "adam" else 0.9, lr=0.01 if
            optimizer == "adam" else 0.2, steps=50, checkpoint_every=7, weight_decay=1e-3,
            sync_every=6 if optimizer == "adam" else 0,  # losses read back in blocks (as on CUDA)
            model_kwargs={"hidden": [16, 16], "dropout": 0.2})
    full = train(c)
    with pytest.raises(KeyboardInterrupt):
        train(c, out_dir=tmp_path, probes=[_StopAt(31)])
    assert (tmp_path / "checkpoint.pt").exists()
    resumed = train(c, out_dir=tmp_path)
    assert resumed.history == full.history
    assert all(torch.equal(p, q) for p, q in zip(full.model.state_dict().values(),
                                                  resumed.model.state_dict().values()))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    eval_steps = [r["step"] for r in records if r["kind"] == "eval"]
    assert eval_steps == [0, 10, 20, 30, 40, 50]  # no duplicates after the resume
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["history"]["test_acc"] == full.history["test_acc"]


def test_resume_refuses_another_config_and_no_resume_refuses_overwrite(tmp_path: Path) -> None:
    train(cfg(steps=5), out_dir=tmp_path)
    with pytest.raises(BnlabError, match="lr=0.2"):
        train(cfg(steps=5, lr=0.3), out_dir=tmp_path)
    with pytest.raises(BnlabError, match="already holds a run"):
        train(cfg(steps=5), out_dir=tmp_path, resume=False)
    again = train(cfg(steps=5), out_dir=tmp_path)  # a finished run: nothing retrained, same numbers and records
    assert again.history == train(cfg(steps=5)).history
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("eval", 0), ("eval", 5), ("summary", 5)]
    longer = train(cfg(steps=12), out_dir=tmp_path)  # more steps on the same run continues it
    assert longer.history == train(cfg(steps=12)).history


def test_huge_lr_without_bn_diverges_as_a_result() -> None:
    r = train(cfg(norm="none", model="deep_mlp", model_kwargs={"depth": 3, "width": 32, "activation": "relu"},
                  lr=1e4, steps=50))
    assert r.diverged_at_step is not None and r.diverged_at_step < 50
    assert r.final["diverged"] and r.final["steps_done"] == r.diverged_at_step + 1
    assert len(r.history["train_loss"]) == r.diverged_at_step + 1
    last = r.history["train_loss"][-1]
    assert not math.isfinite(last) or last > 1000 * r.history["train_loss"][0]
    assert all(math.isfinite(v) and v <= 1000 * r.history["train_loss"][0] for v in r.history["train_loss"][:-1])


def test_diverge_factor_sets_the_explosion_threshold() -> None:
    base = dict(norm="none", model="deep_mlp", model_kwargs={"depth": 2, "width": 16}, lr=3.0, steps=20)
    strict = train(cfg(**base, diverge_factor=1.01))
    lenient = train(cfg(**base))
    first = strict.history["train_loss"][0]
    assert strict.diverged_at_step is not None
    assert strict.history["train_loss"][-1] > 1.01 * first
    assert all(v <= 1.01 * first for v in strict.history["train_loss"][:-1])
    assert lenient.history["train_loss"][: strict.diverged_at_step + 1] == strict.history["train_loss"]


def test_sync_every_does_not_change_the_numbers() -> None:
    a, b = train(cfg(sync_every=1)), train(cfg(sync_every=8))
    assert a.history == b.history
    c = train(cfg(norm="none", lr=1e4, sync_every=8, model="deep_mlp", model_kwargs={"depth": 3, "width": 32}))
    d = train(cfg(norm="none", lr=1e4, sync_every=1, model="deep_mlp", model_kwargs={"depth": 3, "width": 32}))
    assert c.diverged_at_step == d.diverged_at_step is not None
    assert c.history["train_loss"][:-1] == d.history["train_loss"][:-1]


class _Recorder:
    """Draws random numbers, flips to eval mode and runs a forward pass: the run must not notice."""

    name, every = "rec", 4

    def __call__(self, ctx: ProbeContext) -> dict:
        torch.randn(100)
        ctx.model.eval()
        with torch.no_grad():
            loss = ctx.loss_fn(ctx.model(ctx.batch[0]), ctx.batch[1])
        assert ctx.config.steps == 30 and isinstance(ctx.optimizer, torch.optim.SGD)
        return {"batch_loss": loss.item(), "n": len(ctx.batch[0])}


def test_probes_run_on_schedule_before_the_update_and_leave_no_trace() -> None:
    c = cfg(model_kwargs={"hidden": [16, 16], "dropout": 0.3})
    plain = train(c)
    probed = train(c, probes=[_Recorder()])
    assert probed.history == plain.history
    records = probed.probes["rec"]
    assert [r["step"] for r in records] == list(range(0, 30, 4))
    # called before the step's update: the eval-mode loss on that batch is what the step then starts from
    assert records[0]["n"] == 32 and math.isfinite(records[0]["batch_loss"])


def test_evaluate_matches_a_float64_reference() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    model(torch.randn(64, 5))  # move the running statistics
    x, y = torch.randn(101, 5), torch.randint(0, 3, (101,))
    loss, acc = loss_and_accuracy(model, x, y, F.cross_entropy, batch_size=17)
    assert model.training  # mode restored
    ref = model.double().eval()
    out = ref(x.double())
    assert loss == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
    assert acc == pytest.approx((out.argmax(1) == y).double().mean().item())


def test_history_layout_and_final() -> None:
    r = train(cfg(norm="bn"))
    h = r.history
    assert h["step"] == list(range(30)) and len(h["train_loss"]) == 30
    assert h["eval_step"] == [0, 10, 20, 30]
    assert all(0 <= a <= 1 for a in h["test_acc"] + h["train_acc"])
    assert r.final["steps_done"] == 30 and r.final["test_acc"] == h["test_acc"][-1] and not r.final["diverged"]
    assert h["test_acc"][-1] > 0.3  # it learns
    json.dumps(r.to_dict())


def test_regression_task_uses_mse() -> None:
    r = train(TrainConfig(model="dln", dataset="dln_regression", norm="bn", steps=40, eval_every=20, lr=0.05,
                          batch_size=64, dataset_kwargs={"n_train": 256, "n_test": 64}, model_kwargs={"depth": 5},
                          progress=False))
    assert r.history["test_loss"][-1] < r.history["test_loss"][0]
    assert all(math.isnan(a) for a in r.history["test_acc"])


def test_user_model_and_dataset_plug_in() -> None:
    ds = load_dataset("synthetic", n_train=200, n_test=50, dim=6, num_classes=3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    r = train(cfg(dataset="synthetic"), model=model, dataset=ds, loss_fn=F.cross_entropy)
    assert r.model is model and r.history["test_acc"][-1] > r.history["test_acc"][0]


@pytest.mark.parametrize("bad, match", [
    ({"lr": 0.0}, "lr"), ({"lr": float("inf")}, "lr"), ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 1, "norm": "bn"}, "batch_size 1"), ({"norm": "bogus"}, "unknown norm"),
    ({"optimizer": "lbfgs"}, "optimizer"), ({"momentum": 1.0}, "momentum"), ({"device": "tpu"}, "device"),
])
def test_bad_configs(bad: dict, match: str) -> None:
    with pytest.raises(BnlabError, match=match):
        from_mapping(TrainConfig, {**SMALL, **bad})
    with pytest.raises(BnlabError, match="unknown config key 'colour'"):
        from_mapping(TrainConfig, {"colour": 1})


def test_unknown_names_fail_before_training() -> None:
    with pytest.raises(BnlabError, match="unknown model"):
        train(cfg(model="resnet"))
    with pytest.raises(BnlabError, match="unknown dataset"):
        train(cfg(dataset="imagenet"))
    with pytest.raises(BnlabError, match="larger than the training set"):
        train(cfg(batch_size=5000))


def test_config_round_trips_through_plain_data() -> None:
    from bnlab.config import to_mapping

    c = cfg(norm="bn", model_kwargs={"hidden": [16, 16]}, trackers=("jsonl",))
    assert from_mapping(TrainConfig, json.loads(json.dumps(to_mapping(c)))) == c


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_or_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(BnlabError, match="cannot read checkpoint"):
        train(cfg(steps=3), out_dir=tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"x": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(BnlabError, match="not a bnlab checkpoint"):
        train(cfg(steps=3), out_dir=tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BnlabError, match="cannot read checkpoint"):  # weights_only: no code runs
        train(cfg(steps=3), out_dir=tmp_path)
