"""`bnlab landscape`: trains a BN / no-BN pair (tiny), writes grids and figures, loads run folders, rejects bad
input with exit 2 and one line."""

from __future__ import annotations

import json

import numpy as np

from bnlab.cli import main
from bnlab.landscape import Curve, Surface

TINY = ["--grid", "5", "--line", "5", "--train-steps", "4", "--samples", "64", "--model-opt", "width=0.25",
        "--threads", "1"]


def test_train_pair_and_write_everything(tmp_path, capsys) -> None:
    out = tmp_path / "ls"
    assert main(["landscape", "--out", str(out), *TINY, "--format", "svg"]) == 0
    for name in ("contours.svg", "contour_lines.svg", "surface.png", "lines.svg", "interpolation.svg",
                 "summary.json", "plane_bn_train.npz", "plane_bn_eval.npz", "plane_no_bn_train.npz",
                 "line_bn_eval.npz", "interp_no_bn.npz"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["nets"]) == {"BN", "no BN"} and set(summary["nets"]["BN"]) == {"train", "eval"}
    plane = Surface.load(out / "plane_bn_eval.npz")
    assert plane.bn_mode == "eval" and plane.loss.shape == (5, 5) and np.isfinite(plane.loss).all()
    assert Curve.load(out / "interp_bn.npz").kind == "interpolation"
    # rerun: every grid is complete, so nothing is recomputed and the values are identical
    assert main(["landscape", "--out", str(out), *TINY, "--format", "svg"]) == 0
    np.testing.assert_array_equal(Surface.load(out / "plane_bn_eval.npz").loss, plane.loss)
    # load the trained runs instead of training
    out2 = tmp_path / "loaded"
    assert main(["landscape", "--out", str(out2), *TINY, "--run", str(out / "train_bn"), "--run",
                 str(out / "train_none"), "--bn-mode", "recalibrated"]) == 0
    assert (out2 / "plane_bn_recalibrated.npz").is_file() and not (out2 / "interp_bn.npz").exists()


def test_bad_input_exit_2(tmp_path, capsys) -> None:
    assert main(["landscape", "--out", str(tmp_path), "--grid", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "odd" in err and len(err.strip().splitlines()) == 1
    assert main(["landscape", "--out", str(tmp_path), "--bn-mode", "frozen"]) == 2
    assert main(["landscape", "--out", str(tmp_path), "--run", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
