"""The curvature part of C06 / C14: smoke trials end to end, and the verdict rule on hand-made results."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bnlab.errors import BnlabError
from bnlab.experiments.curvature import (
    CONFIGS,
    curvature_caveats,
    curvature_trials,
    sharpness_effects,
    sharpness_figures,
    trial_name,
)
from bnlab.sweeps.trial import execute_trial


@pytest.fixture(scope="module")
def smoke_results() -> dict[str, dict]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {t.name: execute_trial(t) for t in curvature_trials("C06", "smoke", (0, 1))}
    finally:
        torch.set_num_threads(before)


def _finite_numbers(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_numbers(v) for v in obj)
    return True


def test_trials_are_shared_between_c06_and_c14() -> None:
    a, b = curvature_trials("C06", "default", (0, 1, 2)), curvature_trials("C14", "default", (0, 1, 2))
    assert [t.key() for t in a] == [t.key() for t in b] and len({t.key() for t in a}) == 6
    assert all(t.name == trial_name(t.params["config"]["norm"], t.params["config"]["seed"]) for t in a)
    for scale in ("smoke", "default", "paper"):
        assert CONFIGS[scale].hessian_samples >= 32
    with pytest.raises(BnlabError):
        curvature_trials("C06", "huge", (0,))


def test_smoke_trials_and_summaries(smoke_results: dict[str, dict]) -> None:
    bn = smoke_results[trial_name("bn", 0)]
    none = smoke_results[trial_name("none", 0)]
    assert bn["has_bn"] and not none["has_bn"] and bn["modes"] == ["train", "eval"] and none["modes"] == ["train"]
    assert bn["steps"][0] == 0 and bn["steps"][-1] == 8  # probe at step 0 and the extra end point
    assert bn["weights"] and all(w.endswith(".weight") for w in bn["weights"])
    assert none["weights"] == bn["weights"]  # the same conv weights in both nets
    for run in (bn, none):
        assert _finite_numbers(run)
        assert all(v is not None and v > 0 for v in run["series"]["train"]["top"])
        grid, dens = run["density"]["train"]["grid"], run["density"]["train"]["density"]
        area = torch.trapezoid(torch.tensor(dens, dtype=torch.float64), torch.tensor(grid, dtype=torch.float64))
        assert float(area) == pytest.approx(1.0, abs=1e-9)
    json.dumps(smoke_results)
    for at_end in (False, True):
        effects = sharpness_effects(smoke_results, (0, 1), at_end)
        assert len(effects) == 5
        for name, values in effects.items():  # a trace can be negative: no log ratio for that seed
            assert all(math.isfinite(x) for x in values) and (len(values) == 2 or name.startswith("log(trace"))
        figs = sharpness_figures(smoke_results, (0, 1), at_end)
        assert figs and all(f.kind in ("lines", "bars") for f in figs)
        json.dumps([f.data for f in figs])
    assert [f.id for f in sharpness_figures(smoke_results, (0, 1), True)] == ["sharpness_end", "spectral_density"]
    assert any("scale invariance" in c for c in curvature_caveats("smoke"))


def _fake(norm: str, seed: int, top: list[float], eval_top: list[float] | None = None) -> dict:
    series = {"train": {"top": top, "trace": [10 * t for t in top], "trace_se": [1.0] * len(top),
                        "products": [10] * len(top)}}
    modes = ["train"]
    if eval_top is not None:
        series["eval"] = {"top": eval_top, "trace": eval_top, "trace_se": [1.0] * len(top),
                          "products": [10] * len(top)}
        modes.append("eval")
    return {"norm": norm, "has_bn": norm == "bn", "seed": seed, "modes": modes, "weights": ["0.weight"],
            "diverged_at_step": None, "final_test_acc": 0.9, "steps": list(range(0, 10 * len(top), 10)),
            "series": series, "normalised": [2 * t for t in top], "weight_norm_sq": [1.0] * len(top),
            "density": {}, "hessian_samples": 8}


def test_effects_on_hand_made_runs() -> None:
    """Per seed log(no BN / BN), positive when the no-BN net is the sharper; averaged over probe times or taken at
    the end; a diverged pair has no end-of-training value and is skipped, not guessed."""
    seeds = (0, 1, 2)
    res = {}
    for s in seeds:
        res[trial_name("bn", s)] = _fake("bn", s, [1.0, 2.0], [4.0, 4.0])
        res[trial_name("none", s)] = _fake("none", s, [10.0, 20.0])
    over = sharpness_effects(res, seeds, at_end=False)
    assert over["log(λ_max no BN / BN), BN mode train"] == pytest.approx([math.log(10)] * 3)
    assert over["log(λ_max no BN / BN), BN mode eval"] == pytest.approx([(math.log(2.5) + math.log(5)) / 2] * 3)
    end = sharpness_effects(res, seeds, at_end=True)
    assert end["log(λ_max no BN / BN), BN mode eval"] == pytest.approx([math.log(5)] * 3)
    res[trial_name("bn", 1)]["diverged_at_step"] = 5
    assert len(sharpness_effects(res, seeds, at_end=True)["log(λ_max no BN / BN), BN mode train"]) == 2
    assert len(sharpness_effects(res, seeds, at_end=False)["log(λ_max no BN / BN), BN mode train"]) == 3
    missing = {k: v for k, v in res.items() if k.endswith("seed=0")}
    assert len(sharpness_effects(missing, seeds, at_end=True)["log(λ_max no BN / BN), BN mode train"]) == 1


def test_smoke_trials_measure_batch_sharpness_beside_lambda_max(smoke_results: dict[str, dict]) -> None:
    """Every run records the batch sharpness per BN mode over SGD mini-batches, with the batch size BN's
    statistics used; the edge-of-stability secondaries report it beside λ_max against 2/η."""
    from bnlab.experiments.curvature import edge_of_stability

    bn, none = smoke_results[trial_name("bn", 0)], smoke_results[trial_name("none", 0)]
    assert bn["sgd_batch_size"] == 32 and bn["sgd_batches"] == CONFIGS["smoke"].sgd_batches
    for run in (bn, none):
        for mode in run["modes"]:
            assert all(v is not None and v > 0 for v in run["series"][mode]["batch_sharpness"])
    assert bn["bn_batch_size"]["train"] == {"top": 32, "batch_sharpness": 32}
    assert bn["bn_batch_size"]["eval"] == {"top": None, "batch_sharpness": None}
    assert none["bn_batch_size"]["train"] == {"top": None, "batch_sharpness": None}
    eos = edge_of_stability(smoke_results, (0, 1), "smoke")
    names = [n for n in eos if n.startswith("log(batch sharpness")]
    assert len(names) == 3 and all(len(eos[n]["values"]) == 2 for n in names)
    assert "BN statistics over 32 examples" in eos["log(batch sharpness / (2/η)), BN, BN mode train, last third of "
                                                  "training"]["note"]
    old = {k: {**v, "series": {m: {kk: vv for kk, vv in s.items() if not kk.startswith("batch")}
                               for m, s in v["series"].items()}} for k, v in smoke_results.items()}
    assert not any(n.startswith("log(batch") for n in edge_of_stability(old, (0, 1), "smoke"))
    panels = sharpness_figures(smoke_results, (0, 1), False, threshold=1.0)[0].data["panels"]
    assert panels[-1]["title"].startswith("batch sharpness")
