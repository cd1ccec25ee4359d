"""`bnlab study` on real models from timm 1.0.31 and torchvision 0.29.1 (never written for bnlab), in the models
venv (make test-models; make test calls it): faithful twins, every failure named, the lr grid and resuming. Kept
lean (about 3-4 CPU minutes): real models on 3×16×16 digits, one seed, few steps, `--probes` limited where a test
is about something else. The end-to-end resnet10t study is in test_study_real_models_full.py (make
test-models-full)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import real_models
import torch
from torch import nn

from bnlab.cli import main
from bnlab.state import is_batchnorm
from bnlab.workflows.study import init_confounds, make_twin

pytestmark = pytest.mark.slow
HERE = Path(real_models.__file__)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU)
TINY = ["--data", f"{HERE}:digits16", "--seeds", "1", "--steps", "4", "--probe-every", "2", "--samples", "8",
        "--grid", "5", "--threads", "2", "--quiet"]


def _activations(net: nn.Module) -> list[str]:
    return [type(m).__name__ for m in net.modules() if isinstance(m, ACTIVATIONS)]


@pytest.mark.parametrize("name, fused_kept", [("resnet10t", 0), ("mobilenetv2_035", 35),
                                              ("mobilenetv3_small_050", 23), ("tv_resnet18", 0),
                                              ("tv_mobilenet_v2", 0)])
@pytest.mark.parametrize("kind", ["identity", "groupnorm"])
def test_the_twin_removes_only_the_normalisation(name: str, fused_kept: int, kind: str) -> None:
    build = getattr(real_models, name)
    net = build()
    twin, replaced = make_twin(build(), kind)
    assert len(replaced) == sum(is_batchnorm(m) for m in net.modules()) > 0
    assert not any(is_batchnorm(m) for m in twin.modules())
    assert sorted(_activations(twin)) == sorted(_activations(net))  # MobileNetV2's 35 ReLU6 stay (issue 27)
    assert sum(len(r["kept"]) for r in replaced) == fused_kept  # the acts inside timm's BatchNormAct2d
    x = torch.randn(2, 3, 32, 32)
    assert twin(x).shape == (2, 10)


def test_timm_resnets_zero_gamma_is_named_and_matched() -> None:
    net = real_models.resnet10t()
    zero = init_confounds(net)
    assert zero == [f"layer{i}.0.bn2" for i in range(1, 5)]  # timm's zero_init_last
    twin = make_twin(real_models.resnet10t(), "identity", match_init=True)[0]
    for i in range(1, 5):
        assert not twin.get_submodule(f"layer{i}.0.conv2").weight.any()
    assert twin.get_submodule("layer1.0.conv1").weight.any()


def test_mobilenetv3_study_names_the_hessian_it_cannot_measure_and_goes_on(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "mnv3"
    assert main(["study", "--model", f"{HERE}:mobilenetv3_small_050", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    reason = results["runs"]["bn"][0]["not_measured"]["hessian"]
    assert "hardsigmoid_backward" in reason  # no double backward through timm's hard sigmoid
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert set(verdicts) == {"C03", "C05", "C06", "C11", "C14"} and "not_measured" not in verdicts.values()
    c06 = next(c for c in results["claims"] if c["id"] == "C06")
    assert all(r["effect"] is None for r in c06["secondary"] if "Hessian" in r["name"])
    assert "Final accuracy" in text and "23 activation/dropout parts of fused layers kept" in text


def test_mobilenetv2_study_runs_end_to_end_with_every_probe_and_a_twin_that_keeps_its_relu6(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """timm's MobileNetV2 fuses BN and ReLU6 (BatchNormAct2d): the twin keeps all 35 ReLU6, and every default probe,
    the Hessian included (ReLU6 has a double backward), measures both nets."""
    out = tmp_path / "mnv2"
    assert main(["study", "--model", f"{HERE}:mobilenetv2_035", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    for arm in ("bn", "twin"):
        run = results["runs"][arm][0]
        assert run["not_measured"] == {} and run["not_selected"] == [], (arm, run["not_measured"])
        assert run["hessian_end"]["train"]["lambda_max"] > 0
    assert {c["id"] for c in results["claims"]} == {"C03", "C05", "C06", "C11", "C14"}
    assert "35 activation/dropout parts of fused layers kept" in text and "Final accuracy" in text


def test_lr_grid_picks_each_nets_lr_and_a_rerun_resumes_from_the_cache(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "grid"
    args = ["study", "--model", f"{HERE}:mobilenetv3_small_050", "--out", str(out), "--lr", "0.01,0.1",
            "--probes", "gradient_flow", *TINY]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    choice = results["study"]["lr_choice"]
    assert {arm: len(c["grid"]) for arm, c in choice.items()} == {"bn": 2, "twin": 2}
    for arm in ("bn", "twin"):
        assert all(r["lr"] == choice[arm]["lr"] for r in results["runs"][arm])
        assert results["runs"][arm][0]["not_selected"] == ["ics", "along_gradient", "hessian", "landscape",
                                                           "eval_modes"]
    capsys.readouterr()
    assert main([a for a in args if a != "--quiet"]) == 0  # every net cached: resumed, not recomputed
    again = capsys.readouterr().out
    assert "resuming: 4 of 4 lr-grid runs cached" in again and "resuming: 2 of 2 nets cached" in again


def test_resnet10t_header_names_the_zero_gamma_confound_and_match_init(tmp_path: Path) -> None:
    out = tmp_path / "resnet"
    assert main(["study", "--model", f"{HERE}:resnet10t", "--out", str(out), "--match-init",
                 "--probes", "gradient_flow", *TINY]) == 0
    header = " ".join(json.loads((out / "results.json").read_text())["header"])
    assert "Init confound: 4 BN layers start with γ = 0" in header and "and the twin too (--match-init)" in header
