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
    figure = tracker.close()
    assert figure.stat().st_size > 0
    lines = read_jsonl(tmp_path / "run" / "sharpness.jsonl")
    assert [(r["step"], r["bn_mode"]) for r in lines] == [(s, m) for s in (0, 2, 4) for m in ("train", "eval")]


def test_tracker_bad_input(tmp_path: Path):
    with pytest.raises(BnlabError, match="lr"):
        SharpnessTracker(tmp_path, F.cross_entropy, lr=0.0)
    with pytest.raises(BnlabError, match="bn_modes"):
        SharpnessTracker(tmp_path, F.cross_entropy, lr=0.1, bn_modes=("running",))
    (tmp_path / "file").write_text("x")
    with pytest.raises(BnlabError, match="not a folder"):
        SharpnessTracker(tmp_path / "file", F.cross_entropy, lr=0.1)
