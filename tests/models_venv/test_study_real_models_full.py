"""The end-to-end `bnlab study` on timm's resnet10t (3×32×32 digits, two seeds, an lr grid, --match-init): slow
(tens of CPU minutes on 2 cores), so it runs in `make test-models-full`, not in `make test`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import real_models

from bnlab.cli import main

pytestmark = pytest.mark.slow
HERE = Path(real_models.__file__)
TINY = ["--data", f"{HERE}:digits32", "--seeds", "2", "--steps", "6", "--probe-every", "3", "--samples", "16",
        "--grid", "5", "--threads", "2", "--quiet"]


def test_resnet10t_study_with_an_lr_grid_matched_init_and_selected_probes(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "resnet"
    args = ["study", "--model", f"{HERE}:resnet10t", "--out", str(out),
            "--lr", "0.01,0.1", "--match-init", "--probes", "gradient_flow,ics,along_gradient,landscape", *TINY]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    choice = results["study"]["lr_choice"]
    assert {arm: len(c["grid"]) for arm, c in choice.items()} == {"bn": 2, "twin": 2}
    for arm in ("bn", "twin"):
        assert all(r["lr"] == choice[arm]["lr"] for r in results["runs"][arm])
        assert results["runs"][arm][0]["not_selected"] == ["hessian", "eval_modes"]
    header = " ".join(results["header"])
    assert "Init confound: 4 BN layers start with γ = 0" in header and "and the twin too (--match-init)" in header
    assert "Final accuracy" in header
    capsys.readouterr()
    assert main([a for a in args if a != "--quiet"]) == 0  # every net cached: resumed, not recomputed
    again = capsys.readouterr().out
    assert "resuming: 4 of 4 lr-grid runs cached" in again and "resuming: 4 of 4 nets cached" in again
