from dataclasses import dataclass
from typing import Literal

import pytest

from bnlab.config import config_hash, from_mapping, to_mapping
from bnlab.errors import BnlabError


@dataclass(frozen=True)
class Demo:
    lr: float
    steps: int = 10
    norm: Literal["bn", "none"] = "bn"
    widths: tuple[int, ...] = (8, 16)
    note: str | None = None


def test_builds_and_coerces():
    cfg = from_mapping(Demo, {"lr": 1, "widths": [4, 5], "norm": "none"})
    assert cfg == Demo(lr=1.0, widths=(4, 5), norm="none")
    assert isinstance(cfg.lr, float) and isinstance(cfg.widths, tuple)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"lr": 0.1, "stpes": 3}, "unknown config key 'x.stpes'"),
        ({"lr": "fast"}, "config key 'x.lr' must be float"),
        ({"lr": 0.1, "steps": 2.5}, "config key 'x.steps' must be int"),
        ({"lr": 0.1, "steps": True}, "config key 'x.steps' must be int"),
        ({"lr": 0.1, "norm": "gn"}, "config key 'x.norm'"),
        ({"lr": 0.1, "widths": [1, "a"]}, "config key 'x.widths'"),
        ({}, "missing"),
    ],
)
def test_rejects_bad_input_naming_the_key(data, fragment):
    with pytest.raises(BnlabError, match=None) as info:
        from_mapping(Demo, data, where="x.")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_not_a_table():
    with pytest.raises(BnlabError, match="expected a table"):
        from_mapping(Demo, [1, 2])


def test_hash_is_stable_and_order_free():
    a = to_mapping(Demo(lr=0.1))
    b = dict(reversed(list(a.items())))
    assert config_hash(a) == config_hash(b) == config_hash(Demo(lr=0.1))
    assert config_hash(Demo(lr=0.1)) != config_hash(Demo(lr=0.2))


def test_check_choice_names_the_choices_and_the_bad_value() -> None:
    from bnlab.config import check_choice

    check_choice("start", "random", ("auto", "random"))
    with pytest.raises(BnlabError, match=r"^start must be one of auto, random, got 'zero'$"):
        check_choice("start", "zero", ("auto", "random"))
