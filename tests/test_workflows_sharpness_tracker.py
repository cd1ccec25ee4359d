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
from bnlab.tracking.jsonl import read_jsonl
from bnlab.workflows.sharpness_tracker import SharpnessTracker


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
