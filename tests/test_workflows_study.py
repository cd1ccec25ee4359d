"""`bnlab study` on a user's own model: the example end to end (CLI and Python), numbers equal to the probes on the
same trained weights, the inputs a data factory may return, checkpoints, losses, and bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import bnlab
from bnlab.cli import main
from bnlab.landscape import random_directions, random_plane, roughness
from bnlab.landscape.directions import model_origin
from bnlab.landscape.roughness import quadratic_residual
from bnlab.layers.batchnorm import BatchNorm
from bnlab.probes.gradflow import gradient_spread, layer_gradient_norms
from bnlab.probes.hessian import hessian_operator, top_and_trace, top_eigenvalues
from bnlab.workflows.study import StudyConfig, load_data, remove_bn
from bnlab.workflows.study.net import running_stats_at_init

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "residual_cnn_digits.py"
SMOKE = ["--seeds", "2", "--steps", "8", "--probe-every", "4", "--samples", "32", "--grid", "5", "--threads", "1"]
MLP = '''
import torch
from torch import nn

def model():
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16),
                         nn.ReLU(), nn.Linear(16, 3))

def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x[:200], y[:200], x[200:], y[200:]

def squared_hinge(output, y):
    return torch.clamp(1 - output.gather(1, y[:, None]) + output, min=0).pow(2).mean()
'''


def test_example_study_end_to_end_from_the_cli_and_resumed(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["study", "--model", f"{EXAMPLE}:model", "--data", f"{EXAMPLE}:data", "--target-acc", "0.3",
            "--out", str(out), *SMOKE]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert [c["id"] for c in results["claims"]] == ["C03", "C05", "C06", "C11", "C13", "C14"]
    assert [r["layer"] for r in results["study"]["replaced"]] == ["1", "3.bn", "4.bn"]
    for claim in results["claims"]:
        assert claim["verdict"] in ("supported", "refuted", "inconclusive", "mixed")
        assert all(v["n_seeds"] <= 2 for v in claim["votes"])
    assert {v["setting"] for v in results["claims"][0]["votes"]} == {"layer:3.conv", "layer:4.conv"}  # C03
    bn = results["runs"]["bn"][0]
    assert set(bn["landscape"]) == {"train", "eval", "recalibrated"} and set(bn["hessian_end"]) == {"train", "eval"}
    assert "Your model:" in (out / "report.md").read_text() and "| [C14](#claim-C14)" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "bnlab study" in html and 'class="verdicts"' in html and "data:image/svg+xml" in html
    assert '<span class="ci votes">votes: ' in html and ".ci.votes { white-space: normal; }" in html  # C03 wraps
    assert sorted(p.name for p in (out / "weights").iterdir()) == ["bn-seed0.pt", "bn-seed1.pt", "twin-seed0.pt",
                                                                   "twin-seed1.pt"]
    # a rerun in the same folder takes every net from the trial store: identical numbers
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["claims"] == results["claims"]
    # a net interrupted after training resumes from its checkpoint in OUT/nets (its init numbers kept there too)
    nets = sorted(p.name.rsplit("-", 1)[0] for p in (out / "nets").iterdir())
    assert nets == ["bn-seed0", "bn-seed1", "twin-seed0", "twin-seed1"]
    assert all((p / "init.json").is_file() and (p / "checkpoint.pt").is_file() for p in (out / "nets").iterdir())
    shutil.rmtree(out / "trials")
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["claims"] == results["claims"]


def _mlp_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp_user.py"
    path.write_text(MLP)
    return path


def test_study_numbers_equal_the_probes_on_the_same_trained_weights(tmp_path: Path) -> None:
    user = _mlp_file(tmp_path)
    model_fn = bnlab.workflows.study.load_factory(f"{user}:model")
    tensors = bnlab.workflows.study.load_factory(f"{user}:data")()
    cfg = StudyConfig(seeds=2, steps=30, probe_every=10, samples=64, landscape_points=5, lr=0.05)
    result = bnlab.study(model_fn, tensors, config=cfg)
    assert isinstance(result, bnlab.StudyResult) and set(result.verdicts) == {"C03", "C05", "C06", "C11", "C14"}
    loss = nn.functional.cross_entropy
    sample = (tensors[0][:64], tensors[1][:64])
    for arm, build in (("bn", model_fn), ("twin", lambda: remove_bn(model_fn())[0])):
        for seed in (0, 1):
            rec = result.results["runs"][arm][seed]
            torch.manual_seed(seed)
            net = build()  # at init: the C11 gradient norms, on the study's first batch
            first = torch.randperm(200, generator=torch.Generator().manual_seed(10_000 + seed))[:64]
            grads = layer_gradient_norms(net, loss, (tensors[0][first], tensors[1][first]), bn="train")
            assert rec["gradient_spread"] == pytest.approx(gradient_spread(grads["weight_grad_sq"]), rel=1e-9)
            # at init the BN net's running statistics are (0, 1): its eval-mode Hessian is not BN's, not measured
            assert set(rec["hessian_start"]) == ({"train"} if arm == "bn" else {"train", "eval"})
            net.load_state_dict(result.weights[f"{arm}/seed={seed}"])  # the trained weights
            for mode in ("train", "eval"):
                end = rec["hessian_end"][mode]
                lam = top_eigenvalues(net, loss, sample, bn_mode=mode, tol=1e-6, seed=seed).eigenvalues[0]
                assert end["lambda_max"] == pytest.approx(lam, rel=cfg.hessian_tol)  # to the stated tolerance
                with hessian_operator(net, loss, sample, bn_mode=mode) as op:  # the same seeded estimator
                    _, tr = top_and_trace(op, tol=cfg.hessian_tol, criterion=cfg.hessian_criterion, sketch=10,
                                          rtol=cfg.trace_rtol, min_samples=10, max_samples=cfg.trace_samples,
                                          seed=seed)
                assert (end["trace"], end["trace_se"]) == pytest.approx((tr.trace, tr.se), rel=1e-9)
                assert end["examples"] == 64 and end["trace_products"] == tr.products
            dirs = random_directions(model_origin(net), 3, 1000 + seed)
            for mode in ("train", "eval", "recalibrated") if arm == "bn" else ("train",):
                plane = random_plane(net, loss, sample, radius=1.0, steps=5, bn_mode=mode, directions=dirs[:2])
                assert rec["landscape"][mode]["roughness_2d"] == pytest.approx(
                    roughness(plane.loss, plane.x, plane.y, 1.0), rel=1e-9)
                assert rec["landscape"][mode]["ruggedness_2d"] == pytest.approx(
                    quadratic_residual(plane.loss, plane.x, plane.y, 1.0), rel=1e-9, abs=1e-12)
            with torch.no_grad():
                acc = float((net.eval()(tensors[2]).argmax(1) == tensors[3]).float().mean())
            assert rec["test_acc"] == pytest.approx(acc)
    # the verdict's values are the paired per-seed differences of those numbers
    c14 = next(c for c in result.results["claims"] if c["id"] == "C14")
    runs = result.results["runs"]
    expect = [math.log(t["landscape"]["train"]["roughness_2d"] / b["landscape"]["train"]["roughness_2d"])
              for b, t in zip(runs["bn"], runs["twin"])]
    assert c14["metrics"]["per_seed"]["roughness:train"] == pytest.approx(expect)
    assert [v["setting"] for v in c14["votes"]] == ["roughness:train", "roughness:eval", "ruggedness:train",
                                                    "ruggedness:eval"]
    assert ("landscapes on 64 training examples (5×5 grid), the Hessian on the first 64 (λ_max to an estimated 1%, "
            "its trace from at most 10 samples)") in " ".join(result.results["header"])
    c06 = {r["name"]: r for r in next(c for c in result.results["claims"] if c["id"] == "C06")["secondary"]}
    at_init = c06["log(Hessian lambda_max twin / BN) at initialisation, BN mode eval"]
    assert "running statistics were still their initial (0, 1)" in at_init["note"] and at_init["effect"] is None
    assert "initial" not in c06["log(Hessian lambda_max twin / BN) at initialisation, BN mode train"]["note"]
    html = result.write_report(tmp_path / "py")
    assert html.is_file() and (tmp_path / "py" / "weights" / "bn-seed0.pt").is_file()


def test_running_stats_at_init_tells_when_eval_mode_is_the_unnormalised_net() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    assert running_stats_at_init(net) and running_stats_at_init(nn.Linear(4, 2))  # no BN: nothing to tell apart
    net.train()(torch.randn(8, 4))  # one train-mode batch moves the running statistics
    assert not running_stats_at_init(net)
    untracked = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False))
    untracked.train()(torch.randn(8, 4))
    assert running_stats_at_init(untracked)  # no running statistics: eval mode normalises by the batch
    only_var = nn.BatchNorm1d(3)
    only_var.running_var.fill_(2.0)
    assert not running_stats_at_init(only_var)


def test_checkpoints_are_measured_instead_of_trained_and_custom_losses(tmp_path: Path) -> None:
    user = _mlp_file(tmp_path)
    first = tmp_path / "first"
    common = ["--model", f"{user}:model", "--data", f"{user}:data", "--seeds", "1", "--steps", "10", "--samples",
              "32", "--grid", "5", "--threads", "1"]
    assert main(["study", *common, "--out", str(first)]) == 0
    trained = json.loads((first / "results.json").read_text())["runs"]
    again = tmp_path / "again"
    assert main(["study", *common, "--out", str(again), "--checkpoint", str(first / "weights" / "bn-seed0.pt"),
                 "--checkpoint", str(first / "weights" / "twin-seed0.pt")]) == 0
    loaded = json.loads((again / "results.json").read_text())
    assert loaded["study"]["checkpoints"] and not loaded["runs"]["bn"][0]["trained"]
    for arm in ("bn", "twin"):  # the same weights, the same seeded measurements
        assert loaded["runs"][arm][0]["hessian_end"] == trained[arm][0]["hessian_end"]
    for loss in ("mse", f"{user}:squared_hinge"):
        out = tmp_path / loss.replace("/", "_").replace(":", "_")
        assert main(["study", *common, "--loss", loss, "--out", str(out)]) == 0
        assert json.loads((out / "results.json").read_text())["study"]["loss"] == loss


def test_datasets_and_dataloaders_give_the_same_data_as_tensors() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=g), torch.randint(0, 4, (20,), generator=g)
    tensors = load_data((x[:12], y[:12], x[12:], y[12:]))
    datasets = load_data((TensorDataset(x[:12], y[:12]), TensorDataset(x[12:], y[12:])))
    loaders = load_data((DataLoader(TensorDataset(x[:12], y[:12]), batch_size=5),
                         DataLoader(TensorDataset(x[12:], y[12:]), batch_size=3)))
    for other in (datasets, loaders):
        for key in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(tensors, key), getattr(other, key))
    assert tensors.num_classes == int(y.max()) + 1 and tensors.task == "classification"
    regression = load_data((x[:12], x[:12, :1], x[12:], x[12:, :1]))
    assert regression.task == "regression"


def test_remove_bn_replaces_torch_and_bnlab_bn_and_reports_the_bias() -> None:
    net = nn.Sequential(nn.Linear(3, 4), BatchNorm(4), nn.ReLU(), nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4))
    twin, replaced = remove_bn(net)
    assert [(r["layer"], r["kind"], r["by"], r["bias_before"], r["kept"]) for r in replaced] == [
        ("1", "BatchNorm", "Identity", True, []), ("4", "BatchNorm1d", "Identity", False, [])]
    assert isinstance(twin[1], nn.Identity) and isinstance(twin[4], nn.Identity)
    x = torch.randn(5, 3)
    torch.testing.assert_close(twin(x), twin[3](torch.relu(twin[0](x))))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.py"
    path.write_text(text)
    return path


@pytest.mark.parametrize("code, model, data, extra, msg", [
    ("", "missing.py:model", None, [], "no such file"),
    ("def data():\n    return None\n", "{p}:nope", "{p}:data", [], "no function 'nope'"),
    ("def model():\n    raise ValueError('bad width')\n", "{p}:model", f"{EXAMPLE}:data", [],
     "'model' in {p} raised ValueError: bad width"),
    ("import torch\ndef model():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n",
     "{p}:model", f"{EXAMPLE}:data", [], "needs a model with BatchNorm layers"),
    ("import torch\ndef model():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 3))\n",
     "{p}:model", f"{EXAMPLE}:data", [], "does not accept the data"),
    ("import torch\ndef data():\n    x = torch.randn(10, 4)\n    x[0, 0] = float('nan')\n"
     "    return x, torch.zeros(10, dtype=torch.long), x, torch.zeros(10, dtype=torch.long)\n",
     f"{EXAMPLE}:model", "{p}:data", [], "NaN"),
    ("import torch\ndef data():\n    x = torch.randn(10, 1, 8, 8)\n    return x, torch.zeros(9, dtype=torch.long), x, "
     "torch.zeros(10, dtype=torch.long)\n", f"{EXAMPLE}:model", "{p}:data", [], "same number"),
    ("import torch\ndef data():\n    x = torch.randn(10, 1, 8, 8)\n    y = torch.full((10,), 12)\n"
     "    return x, y, x, y\n",
     f"{EXAMPLE}:model", "{p}:data", [], "does not fit 13 classes"),
    ("syntax error here\n", "{p}:model", f"{EXAMPLE}:data", [], "importing"),
    ("", f"{EXAMPLE}:model", f"{EXAMPLE}:data", ["--checkpoint", "nope.pt", "--checkpoint", "nope2.pt"],
     "no such checkpoint file: nope.pt"),
    ("", f"{EXAMPLE}:model", f"{EXAMPLE}:data", ["--checkpoint", "{p}"], "give two checkpoints"),
    ("", f"{EXAMPLE}:model", f"{EXAMPLE}:data", ["--loss", "hinge"], "loss must be one of"),
    ("", f"{EXAMPLE}:model", f"{EXAMPLE}:data", ["--executor", "threads"], "unknown executor"),
    ("", f"{EXAMPLE}:model", f"{EXAMPLE}:data", ["--lr", "-1"], "--lr must be"),
    ("", f"{EXAMPLE}:model", f"{EXAMPLE}:data", ["--probe-every", "0"], "--probe-every must be an integer >= 1"),
    # StudyConfig.landscape_points, named by its option
    ("", f"{EXAMPLE}:model", f"{EXAMPLE}:data", ["--grid", "3"], "--grid must be an integer >= 5"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str], code,
                                                      model, data, extra, msg) -> None:
    path = _write(tmp_path, code)
    out = tmp_path / "out"
    args = ["study", "--model", model.format(p=path), "--data", (data or f"{EXAMPLE}:data").format(p=path),
            "--seeds", "1", "--steps", "2", "--out", str(out), *[e.format(p=path) for e in extra]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and msg.format(p=path) in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"weights": [1, 2, 3]}, bad)
    wrong = tmp_path / "wrong.pt"
    torch.save(nn.Linear(2, 2).state_dict(), wrong)
    for ckpt, msg in ((bad, "holds no state dict"), (wrong, "does not fit the model")):
        out = tmp_path / f"out_{ckpt.stem}"
        assert main(["study", "--model", f"{EXAMPLE}:model", "--data", f"{EXAMPLE}:data", "--seeds", "1",
                     "--steps", "2", "--out", str(out), "--checkpoint", str(ckpt), "--checkpoint", str(ckpt)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and msg in err and len(err.splitlines()) == 1, err


def test_python_objects_cannot_go_to_another_process() -> None:
    with pytest.raises(bnlab.errors.BnlabError, match="give the model, data, twin and loss as FILE.py:NAME"):
        bnlab.study(lambda: nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), (torch.randn(4, 2),) * 4,
                    executor="process")


@pytest.mark.slow
def test_process_executor_gives_the_local_numbers(tmp_path: Path) -> None:
    user = _mlp_file(tmp_path)
    common = ["--model", f"{user}:model", "--data", f"{user}:data", "--seeds", "2", "--steps", "10", "--samples",
              "32", "--grid", "5", "--threads", "1"]
    assert main(["study", *common, "--out", str(tmp_path / "local")]) == 0
    assert main(["study", *common, "--out", str(tmp_path / "proc"), "--executor", "process", "--workers", "2"]) == 0
    local, proc = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("local", "proc"))
    assert local["claims"] == proc["claims"]


@pytest.mark.slow
def test_the_study_report_opens_in_chromium_with_its_verdict_table(tmp_path: Path) -> None:
    from test_report_browser import chromium

    out = tmp_path / "study"
    assert main(["study", "--model", f"{EXAMPLE}:model", "--data", f"{EXAMPLE}:data", "--out", str(out),
                 *SMOKE]) == 0
    dom = chromium(tmp_path, (out / "report.html").as_uri(), "--dump-dom").stdout
    assert "<table class=\"verdicts\">" in dom and "C14" in dom and "Your model:" in dom
