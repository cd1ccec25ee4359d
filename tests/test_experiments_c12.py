"""C12 regularisation: population-statistics control vs a reference, smoke plan -> trials -> summarize."""

import json
import math
from dataclasses import asdict

import torch
from torch import nn

from bnlab.experiments import c12_regularisation as c12
from bnlab.experiments.base import VERDICTS
from experiments_smoke import run_and_check


def test_population_statistics_model_normalises_with_the_data_statistics():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2)).double()
    data = torch.randn(50, 3, dtype=torch.float64) * 2 + 1
    model = c12.PopulationStatisticsModel(inner, data, refresh_every=3).train()
    x = torch.randn(8, 3, dtype=torch.float64)
    model(x)
    z = inner[0](data).detach()  # (50, 4)
    torch.testing.assert_close(inner[1].running_mean, z.mean(0))
    torch.testing.assert_close(inner[1].running_var, z.var(0, unbiased=True))
    assert inner[1].momentum == 0.1 and inner[1].training and inner[3].training  # modes restored
    # the training forward used the population statistics: equal to eval-mode BN with Dropout in train mode
    torch.manual_seed(5)
    out = model(x)
    inner[1].eval()
    torch.manual_seed(5)
    ref = inner(x)
    inner[1].train()
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert inner[0].weight.grad is not None
    model.eval()
    torch.testing.assert_close(model(x), inner(x))


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c12)
    assert all(math.isfinite(r["gap"]) for r in results.values())
    assert result.verdict in VERDICTS and math.isfinite(result.key_number.value)
    assert set(result.metrics["effects"]) == {"regularisation", "batch_noise", "ghost_slope", "dropout"}
    assert "BN, population statistics" in result.metrics["per_variant"]
    json.dumps(asdict(result))


def test_default_and_paper_plans_are_plain_data():
    for scale, seeds in (("default", 3), ("paper", 5)):
        plan = c12.plan(scale, seeds)
        json.dumps({"config": plan.config, "trials": [dict(t.params) for t in plan.trials]})
        assert plan.seeds == tuple(range(seeds)) and len({t.name for t in plan.trials}) == len(plan.trials)
