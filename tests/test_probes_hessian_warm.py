"""Warm-started Lanczos through training: the same answers as cold starts, for fewer Hessian-vector products."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import BnlabError
from bnlab.layers.batchnorm import BatchNorm
from bnlab.probes.hessian import hessian_operator, lanczos_eigenpairs
from bnlab.probes.hessian.sharpness import SharpnessProbe


def _run(warm: bool):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), BatchNorm(16), nn.ReLU(), nn.Linear(16, 16), BatchNorm(16), nn.ReLU(),
                          nn.Linear(16, 4)).double()
    x, y = torch.randn(64, 8, dtype=torch.float64), torch.randint(0, 4, (64,))
    probe = SharpnessProbe(every=1, bn_modes=("train", "eval"), trace=False, tol=1e-6, max_steps=200, warm_start=warm)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    records, points = [], []
    for step in range(0, 60):
        if step % 6 == 0:
            records.append(probe.measure(model, F.cross_entropy, (x, y), step=step))
            points.append({k: v.clone() for k, v in model.state_dict().items()})
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, (x, y), records, points


def test_warm_starts_agree_with_cold_starts_and_cost_less():
    model, batch, warm, points = _run(True)
    _, _, cold, _ = _run(False)
    assert [r["train"]["start"] for r in warm][1:] == ["warm"] * (len(warm) - 1)
    assert all(r["train"]["start"] == "gradient" for r in cold)
    for i, (w, c) in enumerate(zip(warm, cold)):
        model.load_state_dict(points[i])
        for mode in ("train", "eval"):
            with hessian_operator(model, F.cross_entropy, batch, bn_mode=mode) as op:
                ref = lanczos_eigenpairs(op, tol=1e-10, max_steps=400).eigenvalues[0]
            assert w[mode]["top_eigenvalue"] == pytest.approx(ref, rel=1e-3), (i, mode)
            assert c[mode]["top_eigenvalue"] == pytest.approx(ref, rel=1e-3), (i, mode)
            assert w[mode]["converged"] and c[mode]["converged"]
    used = {name: sum(r[m]["lanczos_products"] for r in recs[1:] for m in ("train", "eval"))
            for name, recs in (("warm", warm), ("cold", cold))}
    assert used["warm"] < used["cold"], used


def test_warm_start_vector_checks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    batch = (torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,)))
    with hessian_operator(model, F.cross_entropy, batch) as op:
        with pytest.raises(BnlabError, match="warm start"):
            lanczos_eigenpairs(op, start=torch.ones(op.dim + 1, dtype=torch.float64))
        res = lanczos_eigenpairs(op, start=torch.zeros(op.dim, dtype=torch.float64), tol=1e-8)
        assert res.info["start"] == "random" and res.converged  # a zero vector carries no direction
