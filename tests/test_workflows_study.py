"""`bnlab study` on a user's own model: the example end to end, the BN-free twin, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bnlab.cli import main
from bnlab.layers.batchnorm import BatchNorm
from bnlab.workflows.study import check_data, remove_bn

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "residual_cnn_digits.py"


def test_example_study_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "study"
    assert main(["study", "--model", f"{EXAMPLE}:model", "--data", f"{EXAMPLE}:data", "--seeds", "2", "--steps",
                 "20", "--out", str(out), "--threads", "1"]) == 0
    study = json.loads((out / "study.json").read_text())
    assert set(study["claims"]) == {"C05", "C06", "C11", "C14"}
    assert [r["layer"] for r in study["replaced"]] == ["1", "3.bn", "4.bn"]
    for claim in study["claims"].values():
        assert claim["vote"] in ("supported", "refuted", "inconclusive") and len(claim["values"]) == 2
    assert "| C05 |" in (out / "report.md").read_text()


def test_remove_bn_replaces_torch_and_bnlab_bn_and_reports_the_bias() -> None:
    net = nn.Sequential(nn.Linear(3, 4), BatchNorm(4), nn.ReLU(), nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4))
    twin, replaced = remove_bn(net)
    assert replaced == [{"layer": "1", "kind": "BatchNorm", "bias_before": True},
                        {"layer": "4", "kind": "BatchNorm1d", "bias_before": False}]
    assert isinstance(twin[1], nn.Identity) and isinstance(twin[4], nn.Identity)
    x = torch.randn(5, 3)
    torch.testing.assert_close(twin(x), twin[3](torch.relu(twin[0](x))))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.py"
    path.write_text(text)
    return path


@pytest.mark.parametrize("code, model, data, msg", [
    ("", "missing.py:model", None, "no such file"),
    ("def data():\n    return None\n", "{p}:nope", "{p}:data", "no function 'nope'"),
    ("def model():\n    raise ValueError('bad width')\n", "{p}:model", f"{EXAMPLE}:data",
     "raised ValueError: bad width"),
    ("import torch\ndef model():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n",
     "{p}:model", f"{EXAMPLE}:data", "needs a model with BatchNorm layers"),
    ("import torch\ndef model():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 3))\n",
     "{p}:model", f"{EXAMPLE}:data", "does not accept the data"),
    ("import torch\ndef data():\n    x = torch.randn(10, 4)\n    x[0, 0] = float('nan')\n"
     "    return x, torch.zeros(10, dtype=torch.long), x, torch.zeros(10, dtype=torch.long)\n",
     f"{EXAMPLE}:model", "{p}:data", "NaN"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str], code,
                                                      model, data, msg) -> None:
    path = _write(tmp_path, code)
    out = tmp_path / "out"
    args = ["study", "--model", model.format(p=path), "--data", (data or f"{EXAMPLE}:data").format(p=path),
            "--seeds", "1", "--steps", "2", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and msg in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_check_data_names_the_problem() -> None:
    x = torch.randn(6, 2)
    with pytest.raises(Exception, match="four tensors"):
        check_data((x, x))
    with pytest.raises(Exception, match="same number"):
        check_data((x, torch.zeros(5, dtype=torch.long), x, torch.zeros(6, dtype=torch.long)))
    with pytest.raises(Exception, match="integer class labels"):
        check_data((x, torch.zeros(6), x, torch.zeros(6)))


def test_a_user_file_with_a_dataclass_imports(tmp_path: Path) -> None:
    """dataclasses look the defining module up in sys.modules while the file runs."""
    from bnlab.workflows.study import load_factory

    path = _write(tmp_path, "from dataclasses import dataclass\n\n@dataclass\nclass Size:\n    width: int = 4\n\n"
                            "def model():\n    return Size()\n")
    assert load_factory(f"{path}:model")().width == 4
