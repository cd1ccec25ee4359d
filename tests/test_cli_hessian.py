"""`bnlab hessian`: a built-in model and a `bnlab train` run folder, JSON and figure written; bad input exits 2."""

from __future__ import annotations

import json

from bnlab.cli import main

TINY = ["--model", "vgg", "--model-opt", "width=0.25", "--samples", "32", "--density-runs", "1",
        "--density-steps", "8", "-k", "2", "--tol", "1e-3", "--trace-rtol", "0.2", "--threads", "1"]


def test_hessian_builtin_model(tmp_path, capsys) -> None:
    assert main(["hessian", "--out", str(tmp_path), *TINY]) == 0
    data = json.loads((tmp_path / "hessian.json").read_text())
    assert set(data["modes"]) == {"train", "eval"} and (tmp_path / "density.png").stat().st_size > 1000
    for mode, entry in data["modes"].items():
        assert entry["top"]["bn_mode"] == mode and len(entry["top"]["eigenvalues"]) == 2
        assert entry["top"]["start"] == "gradient" and entry["top"]["criterion"] == "residual"
        assert entry["trace"]["se"] >= 0 and entry["density"]["bn_mode"] == mode
    assert "BN mode train: top eigenvalues" in capsys.readouterr().out


def test_hessian_of_a_train_run(tmp_path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--norm", "none", "--dataset", "digits", "--steps", "3",
                 "--batch-size", "16", "--eval-every", "0", "--model-opt", "hidden=[8]", "--out", str(run),
                 "--threads", "1"]) == 0
    out = tmp_path / "h"
    assert main(["hessian", "--run", str(run), "--out", str(out), "--samples", "16", "--density-runs", "1",
                 "--density-steps", "5", "--format", "svg"]) == 0
    data = json.loads((out / "hessian.json").read_text())
    assert not data["has_bn"] and list(data["modes"]) == ["train"] and (out / "density.svg").exists()


def test_hessian_stopping_criterion_and_start_options(tmp_path) -> None:
    """--criterion eigenvalue stops on the estimated eigenvalue error: the same top eigenvalue (to the tolerance)
    with no more products; --start random is the plain seeded start."""
    runs = {}
    for name, extra in (("residual", []), ("eigenvalue", ["--criterion", "eigenvalue"]),
                        ("random", ["--start", "random"])):
        assert main(["hessian", "--out", str(tmp_path / name), *TINY, "-k", "1", "--bn-mode", "eval", *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "hessian.json").read_text())["modes"]["eval"]["top"]
    assert runs["eigenvalue"]["criterion"] == "eigenvalue" and runs["random"]["start"] == "random"
    lam = runs["residual"]["eigenvalues"][0]
    assert abs(runs["eigenvalue"]["eigenvalues"][0] - lam) <= 1e-3 * abs(lam)
    assert runs["eigenvalue"]["products"] <= runs["residual"]["products"]


def test_hessian_bad_input(tmp_path, capsys) -> None:
    assert main(["hessian", "--out", str(tmp_path), "--bn-mode", "recalibrated"]) == 2
    assert main(["hessian", "--out", str(tmp_path), "--run", str(tmp_path / "nope")]) == 2
    assert main(["hessian", "--out", str(tmp_path), "--criterion", "loose"]) == 2
    assert main(["hessian", "--out", str(tmp_path), "--start", "best"]) == 2
    err = capsys.readouterr().err
    assert "error: bn_modes" in err and "is not a run folder" in err
    assert "criterion must be one of" in err and "start must be one of" in err
    assert not (tmp_path / "hessian.json").exists()
