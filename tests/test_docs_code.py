"""Every code block of the README and the docs is checked by the test suite, so the examples cannot drift.

* ```python blocks run, top to bottom, one namespace per page (a later block may use an earlier one's names), in a
  temporary folder, with the names the API sketches assume (`model`, `x`, `y`, `loss_fn`, ...: `_names`) bound to
  a small BN net. A block that only includes a tutorial (``--8<--``) is the tutorial: tests/test_tutorials.py runs it.
* ```bash blocks run, top to bottom, one temporary folder per page (holding `examples/` and `sweeps/`, and an empty
  `data/` that `~/data` stands for), so a command may use what an earlier one on the page wrote (`--run runs/vgg-bn`).
  Every `bnlab ...` command runs as written through `bnlab.cli.main`, with the budget options of `SMOKE` appended
  (click keeps an option's last value): the same subcommand, files, modes, formats and executors, at a few seconds
  each instead of the audit's 13 minutes -- as the tutorials run at a smoke budget. `make X` is run as `make -n X`
  (the target and its prerequisites resolve; running it would be the audit or this suite); `pip install
  "bnlab[extras]"` names extras of pyproject.toml (tests/test_wheel.py installs the wheel); `python F.py` names a
  file.
* Before anything runs, every command of every block is also parsed by the real command line (click's own parser:
  the subcommand exists, every option exists and takes its value), the illustrative ones included.
* A block right after ``<!-- illustrative: why -->`` is not run (GPU, cluster); its bnlab commands are still parsed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections import OrderedDict
from pathlib import Path
from typing import Any

import click
import pytest
import tomllib
import torch
import typer
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[a-z]*)\s*$")
ILLUSTRATIVE = re.compile(r"<!--\s*illustrative:\s*(?P<why>[^-]+?)\s*-->")


def blocks(page: Path) -> list[tuple[str, str, int, str | None]]:
    """(language, code, line number, why-illustrative or None) of every fenced block of `page`."""
    out, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m["lang"]:
            indent, start, body = len(m["indent"]), i + 1, []
            i += 1
            while not FENCE.match(lines[i]) or FENCE.match(lines[i])["lang"]:
                body.append(lines[i][indent:])
                i += 1
            before = next((lines[j] for j in range(start - 2, -1, -1) if lines[j].strip()), "")
            why = ILLUSTRATIVE.search(before)
            out.append((m["lang"], "\n".join(body), start, why["why"] if why else None))
        i += 1
    return out


def _names() -> dict[str, Any]:
    """What the API sketches in the docs call `model`, `x`, `y`, ...: a small BN net and its data."""
    from bnlab.landscape import random_plane
    from bnlab.train import TrainConfig

    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16),
                               nn.BatchNorm1d(16), nn.ReLU()),
        head=nn.Linear(16, 3)))
    plain = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    loss_fn = nn.functional.cross_entropy
    surface = {"radius": 1.0, "steps": 5}
    return {"model": model, "x": x, "y": y, "x_test": torch.randn(32, 10), "loss_fn": loss_fn,
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1), "batches": [(x[:32], y[:32]), (x[32:], y[32:])],
            "config": TrainConfig(model="mlp", norm="bn", dataset="digits", steps=20, batch_size=32, eval_every=0,
                                  progress=False, trackers=()),
            "s_bn": random_plane(model, loss_fn, (x, y), **surface),
            "s_plain": random_plane(plain, loss_fn, (x, y), **surface)}


def _python_pages() -> list[Path]:
    return [p for p in PAGES if any(lang == "python" and "--8<--" not in code and why is None
                                    for lang, code, _, why in blocks(p))]


@pytest.mark.parametrize("page", _python_pages(), ids=lambda p: p.name)
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}", **_names()}
    torch.set_num_threads(1)
    for lang, code, line, why in blocks(page):
        if lang != "python" or why is not None or "--8<--" in code:
            continue
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)  # noqa: S102 - our own docs' code
        except Exception as exc:
            raise AssertionError(f"{page.name}, the python block at line {line} failed: {exc!r}") from exc


def _commands(code: str) -> list[list[str]]:
    """The shell commands of a block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def _check_bnlab(words: list[str], where: str) -> None:
    from bnlab.cli import app

    group = typer.main.get_command(app)
    if words[1:] in (["--version"], ["--help"]):
        return
    with click.Context(group, info_name="bnlab") as ctx:
        sub = group.get_command(ctx, words[1])
        assert sub is not None, f"{where}: no command 'bnlab {words[1]}'"
        try:
            sub.make_context(words[1], list(words[2:]), parent=ctx)
        except click.UsageError as exc:
            raise AssertionError(f"{where}: {' '.join(words)}: {exc.format_message()}") from None


def test_shell_blocks_name_real_commands_options_targets_and_extras() -> None:
    makefile = (ROOT / "Makefile").read_text()
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    checked = 0
    for page in PAGES:
        for lang, code, line, _why in blocks(page):
            if lang not in ("bash", "sh", "console"):
                continue
            for words in _commands(code):
                where = f"{page.name}:{line}"
                if words[0] == "bnlab":
                    _check_bnlab(words, where)
                elif words[0] == "make":
                    assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), f"{where}: no make target {words[1]}"
                elif words[:2] == ["pip", "install"]:
                    wanted = re.findall(r"\[([^\]]+)\]", words[2])
                    assert all(e in extras for w in wanted for e in w.split(",")), f"{where}: unknown extra {words}"
                elif words[0] in ("python", "jupytext"):
                    path = next((w for w in words[1:] if w.endswith(".py")), None)
                    assert path is None or (ROOT / path).is_file(), f"{where}: no file {path}"
                else:
                    raise AssertionError(f"{where}: a shell command the docs test does not know: {words}")
                checked += 1
    assert checked >= 25


def test_every_illustrative_block_says_why() -> None:
    marked = [(p.name, line, why) for p in PAGES for _, _, line, why in blocks(p) if why is not None]
    assert all(len(why) > 10 for _, _, why in marked) and len(marked) <= 3, marked


# The budget each documented command runs with here: ALWAYS (argv words) appended; IF_GIVEN replaces a value the
# command sets (appending --train-steps to `bnlab hessian` would turn a measurement at initialisation into one after
# training). A list, not a dict, for ALWAYS: `bnlab sweep --set` is repeated.
SMOKE: dict[str, tuple[list[str], dict[str, str]]] = {
    "train": (["--steps", "20", "--eval-every", "10"], {}),
    "landscape": (["--train-steps", "10", "--grid", "5", "--line", "9", "--samples", "64"], {}),
    "hessian": (["--samples", "64", "--density-runs", "1", "--density-steps", "10", "--trace-rtol", "0.25"],
                {"--train-steps": "10"}),
    "sharpness": (["--steps", "20", "--every", "10", "--train-size", "100"], {}),
    "study": (["--seeds", "2", "--steps", "30", "--samples", "64", "--grid", "5"], {}),
    "audit": (["--scale", "smoke"], {"--seeds": "2"}),
    "sweep": (["--set", "base.steps=20", "--set", "base.eval_every=10", "--set", "seeds=1"], {}),
    "gradflow": ([], {}),
    "report": ([], {}),
    "check": ([], {}),
}


def smoke(words: list[str]) -> list[str]:
    """The argv (after `bnlab`) a documented command runs with in this test: as written, plus SMOKE's budget."""
    always, if_given = SMOKE[words[1]]
    given = [w for option, value in if_given.items() if option in words for w in (option, value)]
    return words[1:] + always + given


def _runnable_shell_pages() -> list[Path]:
    return [p for p in PAGES if any(lang == "bash" and why is None for lang, _, _, why in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", _runnable_shell_pages(), ids=lambda p: p.name)
def test_shell_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capfd: pytest.CaptureFixture[str]) -> None:
    from bnlab.cli import main

    for folder in ("examples", "sweeps"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    threads, ran = torch.get_num_threads(), 0
    try:
        for lang, code, line, why in blocks(page):
            if lang != "bash" or why is not None:
                continue
            for words in _commands(code):
                where = f"{page.name}:{line}: {' '.join(words)}"
                # "~/" is this folder (not HOME for the whole process: Ray keeps its session token under ~/.ray)
                words = [str(tmp_path / w[2:]) if w.startswith("~/") else w for w in words]
                if words[0] == "bnlab":
                    code_ = main(smoke(words))
                    err = capfd.readouterr().err
                    assert code_ == 0, f"{where} exited {code_}: {err[-2000:]}"
                elif words[0] == "make":
                    proc = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
                    assert proc.returncode == 0, f"{where}: {proc.stderr}"
                else:
                    continue  # pip / python / jupytext: checked by the parse test above
                ran += 1
    finally:
        torch.set_num_threads(threads)
    assert ran >= 2, page.name
