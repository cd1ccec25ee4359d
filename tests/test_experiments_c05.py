from bnlab.experiments import c05_loss_smoothness as c05
from bnlab.experiments.probed_training import geometric_etas, run_trial, seed_band
from experiments_smoke import check_result, run_smoke


def test_smoke_end_to_end():
    plan, result = run_smoke(c05)
    check_result(c05, plan, result)
    assert set(result.metrics["verdicts"]) == {"vgg", "dln"}
    lv = result.metrics["loss_variation"]["vgg"]["per_run"]
    assert set(lv) == {"bn", "none", "l1", "l2", "linf"}


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
