"""The sharpness tracker in a user's own SGD loop: records per BN mode, JSONL, a figure, and no state left behind."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import BnlabError
from bnlab.probes.hessian import hessian_operator, lanczos_eigenpairs
from bnlab.probes.hessian.batch_sharpness import rayleigh_along_gradient
from bnlab.probes.hessian.scale import invariant_sharpness
from bnlab.report.figures import log_axis_problems
from bnlab.tracking.jsonl import read_jsonl
from bnlab.workflows.sharpness_tracker import SharpnessTracker, sharpness_figure


def _state(model: nn.Module) -> dict:
    return {"sd": {k: v.clone() for k, v in model.state_dict().items()},
            "modes": {k: m.training for k, m in model.named_modules()},
            "bn": [(m.momentum, m.track_running_stats) for m in model.modules() if isinstance(m, nn.BatchNorm1d)],
            "grad": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
            "rng": (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())}


def _same(a: dict, b: dict) -> bool:
    return (all(torch.equal(a["sd"][k], b["sd"][k]) for k in a["sd"]) and a["modes"] == b["modes"]
            and a["bn"] == b["bn"] and all((a["grad"][k] is None and b["grad"][k] is None)
                                           or torch.equal(a["grad"][k], b["grad"][k]) for k in a["grad"])
            and torch.equal(a["rng"][0], b["rng"][0]) and a["rng"][1] == b["rng"][1]
            and np.array_equal(a["rng"][2], b["rng"][2]))


def test_tracker_in_an_sgd_loop(tmp_path: Path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    tracker = SharpnessTracker(tmp_path / "run", F.cross_entropy, lr=0.5, every=2, bn_modes=("train", "eval"),
                               threshold=1.0, tol=1e-4)
    model.train()
    for step in range(5):
        idx = torch.arange(step * 12, step * 12 + 12)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        before = _state(model)  # .grad set, train mode, running statistics moved: all must survive
        out = tracker.step(model, (x[idx], y[idx]))
        assert _same(before, _state(model))
        assert (out is None) == (step % 2 == 1)
        if out is not None:
            rec = {r["bn_mode"]: r for r in out}
            with hessian_operator(model, F.cross_entropy, (x[idx], y[idx]), bn_mode="train") as op:
                want = lanczos_eigenpairs(op, tol=1e-8).eigenvalues[0]
            assert rec["train"]["lambda_max"] == pytest.approx(want, rel=1e-3)
            assert rec["train"]["batch_sharpness"] == pytest.approx(
                rayleigh_along_gradient(model, F.cross_entropy, (x[idx], y[idx]), bn_mode="train")[0], rel=1e-9)
            assert all(v >= 1.0 for v in rec["train"]["above_threshold"])
            assert rec["train"]["bn_batch_size"] == 12 and rec["eval"]["bn_batch_size"] is None
            for mode in ("train", "eval"):  # spherical sharpness: on by default for a BN net, = scale.py's numbers
                want = invariant_sharpness(model, F.cross_entropy, (x[idx], y[idx]), bn_mode=mode, tol=1e-8)
                got = rec[mode]["spherical"]
                assert [e["param"] for e in got] == [e["param"] for e in want] == ["0.weight"]
                assert got[0]["invariant"] == pytest.approx(want[0]["invariant"], rel=1e-3)
                assert got[0]["weight_norm_sq"] == pytest.approx(want[0]["weight_norm_sq"], rel=1e-12)
                assert got[0]["bn_mode"] == mode and got[0]["products"] > 0
    figure = tracker.close()
    assert figure.stat().st_size > 0
    lines = read_jsonl(tmp_path / "run" / "sharpness.jsonl")
    assert [(r["step"], r["bn_mode"]) for r in lines] == [(s, m) for s in (0, 2, 4) for m in ("train", "eval")]


def test_tracker_spherical_sharpness_is_scale_invariant_and_optional(tmp_path: Path):
    """λ_max(H_WW)·‖W‖² of a BN-preceded weight does not move when W is rescaled (BN mode train), while λ_max(H_WW)
    falls as 1/α²; the field is absent when switched off or (by default) for a net without BN, and [] when asked
    for on a net with no scale-invariant weight."""
    torch.manual_seed(1)
    # eps 1e-12: scale invariance is exact up to BN's ε, so the default 1e-5 would blur it at 1e-4
    model = nn.Sequential(nn.Linear(5, 8, bias=False), nn.BatchNorm1d(8, eps=1e-12), nn.Tanh(), nn.Linear(8, 3))
    model = model.double()
    batch = (torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,)))
    tracker = SharpnessTracker(tmp_path / "a", F.cross_entropy, lr=0.5, tol=1e-8)
    before = tracker.step(model, batch)[0]["spherical"][0]
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    tracker_b = SharpnessTracker(tmp_path / "b", F.cross_entropy, lr=0.5, tol=1e-8)
    after = tracker_b.step(model, batch)[0]["spherical"][0]
    assert after["weight_norm_sq"] == pytest.approx(9 * before["weight_norm_sq"], rel=1e-12)
    assert after["top_eigenvalue"] == pytest.approx(before["top_eigenvalue"] / 9, rel=1e-5)
    assert after["invariant"] == pytest.approx(before["invariant"], rel=1e-5)
    off = SharpnessTracker(tmp_path / "c", F.cross_entropy, lr=0.5, spherical=False).step(model, batch)[0]
    assert "spherical" not in off
    plain = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    assert "spherical" not in SharpnessTracker(tmp_path / "d", F.cross_entropy, lr=0.5).step(plain, batch)[0]
    forced = SharpnessTracker(tmp_path / "e", F.cross_entropy, lr=0.5, spherical=True).step(plain, batch)[0]
    assert forced["spherical"] == []
    for t in (tracker, tracker_b):
        t.close()
    assert read_jsonl(tmp_path / "a" / "sharpness.jsonl")[0]["spherical"][0]["param"] == "0.weight"


def test_tracker_bad_input(tmp_path: Path):
    with pytest.raises(BnlabError, match="lr"):
        SharpnessTracker(tmp_path, F.cross_entropy, lr=0.0)
    with pytest.raises(BnlabError, match="bn_modes"):
        SharpnessTracker(tmp_path, F.cross_entropy, lr=0.1, bn_modes=("running",))
    with pytest.raises(BnlabError, match="spherical"):
        SharpnessTracker(tmp_path, F.cross_entropy, lr=0.1, spherical="yes")
    model = nn.Sequential(nn.Linear(5, 3))
    used = SharpnessTracker(tmp_path / "used", F.cross_entropy, lr=0.1)
    used.step(model, (torch.randn(8, 5), torch.randint(0, 3, (8,))))
    used.close()
    before = (tmp_path / "used" / "sharpness.jsonl").read_text()
    with pytest.raises(BnlabError, match="already holds a run"):  # a second run would be drawn as one with it
        SharpnessTracker(tmp_path / "used", F.cross_entropy, lr=0.1)
    assert (tmp_path / "used" / "sharpness.jsonl").read_text() == before  # nothing overwritten
    (tmp_path / "file").write_text("x")
    with pytest.raises(BnlabError, match="not a folder"):
        SharpnessTracker(tmp_path / "file", F.cross_entropy, lr=0.1)


def _bn_net(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).to(dtype)
    with torch.no_grad():  # move the running statistics off their (0, 1) start, so mode eval is its own function
        model(torch.randn(16, 4, dtype=dtype) * 2 + 1)
    return model


def test_tracker_full_batch_lambda_max_is_lanczos_on_the_full_data(tmp_path: Path):
    """full_batch_lambda_max = λ_max of the loss on the full data in the record's BN mode (an independent Lanczos to
    1e-8), its BN batch size is len(x) in mode train and None in mode eval, its products are counted, and the
    model's state survives; a net without BN records one mode with no BN batch size."""
    model = _bn_net()
    full = (torch.randn(40, 4), torch.randint(0, 3, (40,)))
    batch = (full[0][:10], full[1][:10])
    tracker = SharpnessTracker(tmp_path / "fb", F.cross_entropy, lr=0.5, bn_modes=("train", "eval"), tol=1e-6,
                               full_batch=full, spherical=False)
    plain = SharpnessTracker(tmp_path / "plain", F.cross_entropy, lr=0.5, bn_modes=("train", "eval"), tol=1e-6,
                             spherical=False)
    before = _state(model)
    got = {r["bn_mode"]: r for r in tracker.step(model, batch)}
    assert _same(before, _state(model))
    without = {r["bn_mode"]: r for r in plain.step(model, batch)}
    for mode, size in (("train", 40), ("eval", None)):
        with hessian_operator(model, F.cross_entropy, full, bn_mode=mode) as op:
            want = lanczos_eigenpairs(op, tol=1e-8).eigenvalues[0]
        with hessian_operator(model, F.cross_entropy, full, bn_mode=mode) as op:
            cost = lanczos_eigenpairs(op, k=1, tol=1e-6, seed=0).products  # the tracker's call: step 0, seed 0
        assert got[mode]["full_batch_lambda_max"] == pytest.approx(want, rel=1e-5)
        assert got[mode]["full_batch_bn_batch_size"] == size and got[mode]["bn_batch_size"] == (10 if size else None)
        assert got[mode]["products"] == without[mode]["products"] + cost
        assert "full_batch_lambda_max" not in without[mode]
    # the full-batch and the batch λ_max are different numbers (different data, different BN statistics)
    assert abs(got["train"]["full_batch_lambda_max"] - got["train"]["lambda_max"]) > 1e-3
    no_bn = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    recs = SharpnessTracker(tmp_path / "nobn", F.cross_entropy, lr=0.5, bn_modes=("train", "eval"),
                            full_batch=full).step(no_bn, batch)
    assert len(recs) == 1 and recs[0]["full_batch_bn_batch_size"] is None and recs[0]["full_batch_lambda_max"] > 0
    for t in (tracker, plain):
        t.close()
    assert read_jsonl(tmp_path / "fb" / "sharpness.jsonl")[0]["full_batch_bn_batch_size"] == 40


def test_tracker_full_batch_lambda_max_matches_the_dense_hessian(tmp_path: Path):
    """float64, 57 parameters: the tracker's full-batch λ_max = the top eigenvalue of the dense Hessian
    (torch.autograd.functional.hessian, double backward through BN) in both BN modes."""
    model = _bn_net(torch.float64)
    full = (torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,)))
    tracker = SharpnessTracker(tmp_path, F.cross_entropy, lr=0.5, bn_modes=("train", "eval"), tol=1e-10,
                               full_batch=full, spherical=False)
    got = {r["bn_mode"]: r["full_batch_lambda_max"] for r in tracker.step(model, (full[0][:6], full[1][:6]))}
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])  # (57,)

    for mode in ("train", "eval"):
        buffers = {n: b.clone() for n, b in model.named_buffers()}  # a fresh copy: mode train moves running stats

        def loss(theta: torch.Tensor, buffers: dict = buffers) -> torch.Tensor:
            params, at = {}, 0
            for name, shape in zip(names, shapes):
                params[name] = theta[at:at + shape.numel()].reshape(shape)
                at += shape.numel()
            out = torch.func.functional_call(model, {**params, **buffers}, (full[0],))  # (12, 3)
            return F.cross_entropy(out, full[1])

        model.train(mode == "train")
        dense = torch.autograd.functional.hessian(loss, flat)  # (57, 57)
        assert got[mode] == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-8)
    tracker.close()


def test_tracker_refuses_a_bad_full_batch(tmp_path: Path):
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    for bad, match in ((x, r"pair \(x, y\) of tensors, got Tensor"),
                       ((x, y, y), r"got tuple \(Tensor, Tensor, Tensor\)"),
                       ((x, y.tolist()), r"got tuple \(Tensor, list\)"),
                       ((x, torch.tensor(1)), "0-d tensor"),
                       ((x, y[:5]), r"first dimension \(8 vs 5\)"),
                       ((x[:1], y[:1]), "at least 2 examples .*got 1")):
        with pytest.raises(BnlabError, match=match):
            SharpnessTracker(tmp_path / "run", F.cross_entropy, lr=0.1, full_batch=bad)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_sharpness_figure_draws_full_batch_and_spherical_sharpness(tmp_path: Path):
    """Per BN mode: the sharpness panel gains "λ_max, full batch" when recorded, and a spherical panel follows with
    one line per weight; more than 6 weights: the 6 with the largest last value, the title says so; weights orders
    of magnitude apart get a log axis."""
    model = _bn_net()
    full = (torch.randn(24, 4), torch.randint(0, 3, (24,)))
    tracker = SharpnessTracker(tmp_path / "run", F.cross_entropy, lr=0.5, bn_modes=("train", "eval"),
                               full_batch=full, tol=1e-2, max_k=2)
    for step in range(2):
        tracker.step(model, (full[0][step * 8:step * 8 + 8], full[1][step * 8:step * 8 + 8]))
    path = tracker.close()
    assert path.stat().st_size > 0
    records = read_jsonl(tmp_path / "run" / "sharpness.jsonl")
    spec = sharpness_figure(records, ("train", "eval"), 4.0)
    panels = spec["data"]["panels"]
    assert [p["title"].split(":")[0] for p in panels] == ["BN mode train"] * 2 + ["BN mode eval"] * 2
    sharp, spherical = panels[0], panels[1]
    full_series = next(s for s in sharp["series"] if s["label"] == "λ_max, full batch")
    assert full_series["x"] == [0, 1]
    assert full_series["y"] == [r["full_batch_lambda_max"] for r in records if r["bn_mode"] == "train"]
    assert "spherical sharpness" in spherical["title"] and "λ_max(H_WW)·‖W‖²" in spherical["title"]
    assert [s["label"] for s in spherical["series"]] == ["0.weight"]
    assert spherical["series"][0]["y"] == [r["spherical"][0]["invariant"] for r in records if r["bn_mode"] == "train"]
    assert log_axis_problems(spec) == []
    # without full batch or spherical entries: the tracker's original one panel per mode
    bare = [{k: v for k, v in r.items() if not k.startswith(("full_batch", "spherical"))} for r in records]
    panels = sharpness_figure(bare, ("train", "eval"), 4.0)["data"]["panels"]
    assert len(panels) == 2 and all("full batch" not in s["label"] for p in panels for s in p["series"])
    # 8 weights, 1 to 10^7 apart, one that only appears at the last step: the 6 largest last values, a log axis
    last = {f"w{i}": 10.0 ** i for i in range(8)}
    rows = [{"step": s, "bn_mode": "train", "lambda_max": 5.0, "batch_sharpness": 3.0,
             "spherical": [{"param": n, "invariant": v * (1 + s)} for n, v in last.items() if s or n != "w0"]}
            for s in range(3)]
    panel = sharpness_figure(rows, ("train",), 4.0)["data"]["panels"][1]
    assert [s["label"] for s in panel["series"]] == ["w7", "w6", "w5", "w4", "w3", "w2"]
    assert "the 6 largest of 8 weights" in panel["title"] and panel["yscale"] == "log"
    rows[0]["spherical"][-1]["invariant"] = -1.0  # a drawn negative value: a log axis would drop it, so linear
    assert "yscale" not in sharpness_figure(rows, ("train",), 4.0)["data"]["panels"][1]
