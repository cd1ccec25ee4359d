"""The study's twin: only the normalisation goes; a fused norm-and-activation layer (found by structure) keeps its
activation and dropout; a layer that cannot be split is refused; GroupNorm / LayerNorm twins against an
independent float64 computation; the zero-γ init confound named and matched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.workflows.study import init_confounds, make_twin


class UsersFusedNormAct(nn.BatchNorm2d):
    """A user's own fused layer: batch norm, then dropout, then the activation (the structure timm's BatchNormAct2d
    has; the real timm layers are tested in tests/models_venv/)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.drop = nn.Dropout(0.0)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class WithExtraPart(nn.BatchNorm2d):
    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.act = nn.ReLU()
        self.pool = nn.AvgPool2d(1)


def _net(norm: type[nn.Module] = UsersFusedNormAct) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), norm(8), nn.Conv2d(8, 4, 1), nn.Flatten())


def test_a_fused_layer_keeps_its_activation_and_dropout_in_the_twin() -> None:
    torch.manual_seed(0)
    twin, replaced = make_twin(_net(), "identity")
    assert replaced[0]["kept"] == ["drop (Dropout)", "act (ReLU6)"] and replaced[0]["bias_before"] is False
    twin.eval()
    x = torch.randn(2, 3, 5, 5) * 10
    expected = twin[3](twin[2](torch.clamp(twin[0](x), 0, 6)))  # conv, ReLU6 (not an identity), conv
    torch.testing.assert_close(twin(x), expected)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.modules())


def test_a_layer_that_cannot_be_split_is_refused_by_name() -> None:
    with pytest.raises(BnlabError, match=r"cannot split BN layer 1 \(WithExtraPart\): it holds pool"):
        make_twin(_net(WithExtraPart), "identity")
    with pytest.raises(BnlabError, match="twin must be one of"):
        make_twin(_net(), "batchnorm")


@pytest.mark.parametrize("kind, groups", [("groupnorm", 24), ("layernorm", 1)])
def test_norm_twins_against_a_float64_reference(kind: str, groups: int) -> None:
    net = nn.Sequential(nn.Conv2d(3, 48, 1), nn.BatchNorm2d(48)).double()
    twin, replaced = make_twin(net, kind)
    assert replaced[0]["by"] == "GroupNorm" and twin[1].num_groups == groups  # 24: largest divisor of 48 <= 32
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    h = twin[0](x).reshape(4, groups, -1)  # (N, G, C/G * H * W)
    mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    reference = ((h - mean) / torch.sqrt(var + 1e-5)).reshape(4, 48, 5, 5)
    torch.testing.assert_close(twin(x), reference)


def test_zero_gamma_is_named_and_matched() -> None:
    net = _net(nn.BatchNorm2d)
    nn.init.zeros_(net[1].weight)  # the BN net starts with this branch off (timm's zero_init_last)
    assert init_confounds(net) == ["1"]
    x = torch.randn(2, 3, 5, 5)
    plain = make_twin(_net(nn.BatchNorm2d), "identity")[0]
    assert plain[0].weight.abs().sum() > 0
    twin, replaced = make_twin(net, "identity", match_init=True)
    assert replaced[0]["zero_gamma"] and replaced[0]["matched"]
    assert twin[0].weight.abs().sum() == 0  # the conv before the removed BN: its output starts at zero
    torch.testing.assert_close(twin[:2](x), torch.zeros(2, 8, 5, 5))
    net = _net(nn.BatchNorm2d)
    nn.init.zeros_(net[1].weight)
    gn = make_twin(net, "groupnorm", match_init=True)[0]
    assert gn[1].weight.abs().sum() == 0 and gn[0].weight.abs().sum() > 0
