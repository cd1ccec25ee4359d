"""`bnlab check`: the verification table and its exit codes."""

from __future__ import annotations

import bnlab.checks as checks
from bnlab.cli import main


def test_check_prints_table_and_passes(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    for name in ("bn.forward.f64", "jacobian.eigenvalues", "thm41.identity", "invariance.orthogonality"):
        assert name in out
    assert "fail " not in out and " 0 failed" in out


def test_check_exits_1_when_a_row_fails(monkeypatch, capsys):
    def failing(seed: int = 0):
        return checks.grade({"bn.forward.f64": 1.0, "thm41.published_bound_violations": 0.5})

    monkeypatch.setattr(checks, "run_checks", failing)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "fail" in out and "note" in out and "1 failed" in out


def test_evaluate_nan_fails_and_bad_option_exits_2(capsys):
    assert checks.grade({"bn.eval.f64": float("nan")})[0].status == "fail"
    assert main(["check", "--seed", "x"]) == 2
    assert "error:" in capsys.readouterr().err
