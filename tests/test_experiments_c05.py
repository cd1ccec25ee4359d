from bnlab.experiments import c05_loss_smoothness as c05
from bnlab.experiments.probed_training import geometric_etas, run_trial, seed_band
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end():
    plan, result = run_smoke(c05)
    check_result(c05, plan, result)
    assert [r.setting for r in result.decision.primary] == ["vgg", "dln"]
    lv = result.metrics["log_mean_loss_variation"]["vgg"]
    assert set(lv) == {"bn", "none", "l1", "l2", "linf"}
    assert len(result.decision.secondary) == 9  # three ℓp nets; per net: the relative variation, divergences


def test_one_heavy_tailed_probe_time_does_not_decide():
    """Issue 14: averaging raw loss variations over probe times let one huge value decide; the mean of logs (the
    log of the geometric mean) weighs it as one probe time among many."""
    from bnlab.experiments import stats

    bn = [1.0] * 10
    none = [0.5] * 9 + [200.0]  # half BN's band at nine probe times, one spike
    raw = sum(none) / 10 > sum(bn) / 10
    assert raw and stats.log_mean(none) - stats.log_mean(bn) < 0


def test_rule_prose_cases():
    up = [1.0, 1.3, 0.8, 1.1, 0.9, 1.2, 0.7, 1.05]  # 8 seeds: the signed-rank test needs 6 to reach p < 0.05
    down, flat = [-v for v in up], [0.2, -0.3, 0.1, -0.1, 0.05, -0.15, 0.12, -0.02]
    assert c05.decide({"primary": {"vgg": up, "dln": up}}).verdict == "supported"
    assert c05.decide({"primary": {"vgg": down, "dln": down}}).verdict == "refuted"
    assert c05.decide({"primary": {"vgg": up, "dln": flat}}).verdict == "inconclusive"
    assert c05.decide({"primary": {"vgg": up, "dln": down}}).verdict == "mixed"


def test_deep_linear_net_runs_santurkars_protocol():
    """Issue 15: Gaussian inputs, a random Gaussian target map, the summed squared loss, full-batch GD at lr 1e-6 at
    every scale; the default scale only runs fewer steps."""
    from bnlab.experiments.probed_training import run_settings

    for scale in ("smoke", "default", "paper"):
        cfg = run_settings("dln", scale)["config"]
        assert cfg["lr"] == 1e-6 and cfg["loss"] == "sum_squared" and cfg["dataset"] == "dln_regression"
        assert cfg["batch_size"] == cfg["dataset_kwargs"]["train_size"] == 1000  # full batch


def test_runs_are_shared_between_claims():
    a = run_trial("C05", "vgg", "default", "bn", 1)
    b = run_trial("C04", "vgg", "default", "bn", 1)
    assert a.key() == b.key() and a.claim != b.claim
    assert run_trial("C05", "vgg", "default", "bn", 2).key() != a.key()
    etas = a.params["eta_factors"]
    assert etas[0] == 0.5 and abs(etas[-1] - 4.0) < 1e-12 and len(etas) == 8


def test_helpers():
    etas = geometric_etas(0.01, 30.0, 3)
    assert etas[0] == 0.01 and abs(etas[1] - (0.01 * 30) ** 0.5) < 1e-12
    band = seed_band([[0, 1, 2], [0, 1]], [[1.0, 2.0, 9.0], [3.0, None]], "x")
    assert band["x"] == [0, 1] and band["y"] == [2.0, 2.0] and band["lo"] == [1.0, 2.0] and band["hi"] == [3.0, 2.0]


def test_every_scale_plans_valid_training_configs():
    import pytest

    from bnlab.config import from_mapping
    from bnlab.experiments import c03_ics, c04_noisy
    from bnlab.train import TrainConfig

    for module in (c03_ics, c04_noisy, c05):
        for scale in ("smoke", "default", "paper"):
            plan = module.plan(scale, 2)
            for trial in plan.trials:
                cfg = from_mapping(TrainConfig, trial.params["config"])
                assert cfg.seed in plan.seeds and cfg.steps >= 1
    paper = {t.name: t.params for t in c05.plan("paper", 5).trials}
    assert paper["vgg/bn/seed=4"]["config"]["dataset"] == "cifar10"
    assert paper["vgg/bn/seed=4"]["config"]["steps"] == 15000 and paper["vgg/bn/seed=4"]["config"]["lr"] == 0.1
    assert paper["dln/none/seed=0"]["config"]["steps"] == 10000
    with pytest.raises(Exception, match="unknown scale"):
        c05.plan("huge", 2)


def test_the_paper_protocol_deep_linear_net_trains_with_and_without_bn():
    """Issue 15: at Santurkar's lr 1e-6 on the summed loss the no-BN DLN lowers its loss by at least half within the
    default budget, the BN DLN lowers it too, and the probes' step sizes (up to 30 × lr) keep the no-BN loss along
    −g finite."""
    import math

    import torch
    from torch.func import functional_call

    from bnlab.config import from_mapping
    from bnlab.experiments.probed_training import ETA_RANGES, run_settings
    from bnlab.train import TrainConfig, train
    from bnlab.train.loop import sum_squared_error

    base = run_settings("dln", "default")["config"]
    losses = {}
    for norm in ("none", "bn"):
        cfg = from_mapping(TrainConfig, {**base, "norm": norm, "seed": 0, "progress": False, "trackers": [],
                                         "steps": 2000, "eval_every": 0})
        result = train(cfg)
        losses[norm] = result.history["train_loss"]
        assert result.diverged_at_step is None
        if norm == "none":
            model, data = result.model, None
    assert losses["none"][-1] <= 0.5 * losses["none"][0]
    assert losses["bn"][-1] < losses["bn"][0]
    from bnlab.train.loop import load_for_config

    data = load_for_config(from_mapping(TrainConfig, {**base, "norm": "none", "seed": 0}))
    x, y = data.train_x, data.train_y
    model.zero_grad()
    sum_squared_error(model(x), y).backward()
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads = {k: v.grad.detach() for k, v in model.named_parameters()}
    with torch.no_grad():
        for factor in ETA_RANGES["dln"]:
            moved = {k: params[k] - factor * base["lr"] * grads[k] for k in params}
            assert math.isfinite(float(sum_squared_error(functional_call(model, moved, (x,)), y)))


def test_a_diverged_run_is_the_worst_outcome_not_a_dropped_seed():
    """Issue 25: C05 dropped the seed whose no-BN deep linear net diverged, C06 kept it. Now both count it as the
    worst outcome for the net that diverged: +inf (no BN), −inf (BN), a tie (both); so does a probe time with no
    finite band."""
    import copy
    import math

    from experiments_smoke import smoke_results

    plan, results = smoke_results(c05)
    s = plan.config["seeds"]["dln"][0]
    for nets, want in ((("none",), math.inf), (("bn",), -math.inf), (("bn", "none"), 0.0)):
        edited = copy.deepcopy(results)
        for net in nets:
            edited[f"dln/{net}/seed={s}"]["diverged_at_step"] = 7
        assert c05.measure(plan, edited)["primary"]["dln"][0] == want, nets
    edited = copy.deepcopy(results)
    series = edited[f"vgg/none/seed={plan.config['seeds']['vgg'][0]}"]["along_gradient"]
    series["loss_variation"][-1] = None  # a probe time whose band diverged
    assert c05.measure(plan, edited)["primary"]["vgg"][0] == math.inf
    assert all(math.isfinite(v) for v in c05.measure(plan, results)["primary"]["vgg"])
