"""The command line's option help names exactly the registries' models, data sets and norms (it was typed by hand in
11 help strings and had drifted: `sharpness --model vgg` was offered, and fails, since vgg takes no activation)."""

from __future__ import annotations

import re

import pytest
import typer

from bnlab.cli import app, main, registry_names
from bnlab.data import DATASETS
from bnlab.layers.factory import NORM_KINDS
from bnlab.models import MODELS

_REGISTRY = {"model": set(MODELS), "dataset": set(DATASETS), "norm": set(NORM_KINDS)}
_WORD = re.compile(r"[a-z][a-z0-9_]*")


def _filled_help() -> dict[tuple[str, str], str]:
    """(command, option) -> its help as shown, for every option named model / dataset / norm."""
    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        with typer.Context(command, info_name=name) as ctx:
            command.get_help(ctx)  # fills the registry marks
        for param in command.params:
            if param.name in _REGISTRY and param.help and " | " in param.help:
                found[(name, param.name)] = param.help
    return found


def test_every_listed_name_is_in_its_registry_and_full_lists_are_complete(capsys: pytest.CaptureFixture[str]) -> None:
    helps = _filled_help()
    assert {("train", "model"), ("train", "dataset"), ("train", "norm"), ("landscape", "model"),
            ("hessian", "dataset"), ("sharpness", "model"), ("gradflow", "dataset")} <= set(helps)
    for (command, option), text in helps.items():
        listed = text.split(": ")[-1].split(" (")[0].split(" | ")  # "[what: ]a | b | c[ (note)]"
        assert "{" not in text and all(_WORD.fullmatch(w) for w in listed), (command, option, text)
        assert set(listed) <= _REGISTRY[option], (command, option, set(listed) - _REGISTRY[option])
    # the commands that take every built-in name list every one, in registry order
    assert helps[("train", "model")] == " | ".join(MODELS)
    assert helps[("train", "dataset")] == " | ".join(DATASETS)
    assert helps[("train", "norm")] == " | ".join(NORM_KINDS)
    assert helps[("hessian", "dataset")] == " | ".join(DATASETS)
    assert helps[("landscape", "model")] == " | ".join(MODELS)


def test_narrowed_lists_follow_the_registries_flags() -> None:
    assert registry_names("models", ("activation",)) == tuple(m for m in MODELS if m in ("mlp", "deep_mlp"))
    assert "dln_regression" not in registry_names("datasets", ("classification",))
    assert "cifar10" in registry_names("datasets", ("classification",))
    assert registry_names("datasets", ("classification", "packaged")) == ("mnist5k", "digits", "mnist1d", "synthetic")


@pytest.mark.parametrize("command", ["train", "landscape", "hessian", "gradflow", "sharpness"])
def test_help_as_printed_names_the_registry(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    shown = capsys.readouterr().out
    assert "{models" not in shown and "{datasets" not in shown and "{norms" not in shown
    assert "mnist5k" in shown
