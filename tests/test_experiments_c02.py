"""C02 affine parameters: identity recovery, smoke plan -> every trial -> summarize."""

import json
import math
from dataclasses import asdict

from bnlab.experiments import c02_affine as c02
from bnlab.experiments.base import VERDICTS
from experiments_smoke import run_and_check


def test_identity_recovery_is_exact_to_rounding():
    errors = c02.identity_recovery(batch=32, seed=3)["relative_error"]
    assert set(errors) == {"float64/32x8", "float64/32x4x3x3", "float32/32x8", "float32/32x4x3x3"}
    assert all(v <= 1e-14 for k, v in errors.items() if k.startswith("float64"))
    assert all(v <= 1e-6 for k, v in errors.items() if k.startswith("float32"))
    assert all(v > 0 or v == 0 for v in errors.values())


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c02)
    for name, rec in results.items():
        if name.startswith("train/"):
            assert rec["steps"][0] == 0 and rec["steps"][-1] == plan.config["steps"]
            assert all(0.0 <= f <= 1.0 for f in rec["band_fraction"])
            assert len(rec["band_fraction_per_layer_final"]) == 3  # Ioffe's 3 sigmoid layers
    assert result.verdict in VERDICTS and math.isfinite(result.key_number.value)
    assert result.metrics["identity_verdict"] == "supported"
    # BN without affine at step 0 normalises to ~N(0, 1) per unit: about 68% of inputs in |x| < 1
    no_affine = [results[f"train/BN without γ, β/seed={s}"]["band_fraction"][0] for s in (0, 1)]
    assert all(abs(f - 0.683) < 0.05 for f in no_affine)
    json.dumps(asdict(result))


def test_default_and_paper_plans_are_plain_data():
    for scale, seeds in (("default", 3), ("paper", 5)):
        plan = c02.plan(scale, seeds)
        json.dumps({"config": plan.config, "trials": [dict(t.params) for t in plan.trials]})
        assert plan.seeds == tuple(range(seeds)) and len({t.name for t in plan.trials}) == len(plan.trials)
