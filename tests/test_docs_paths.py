"""Every `bnlab.` dotted path that README.md, docs/**/*.md and mkdocs.yml name imports (a module, or an attribute
of one), so the maps of the code cannot drift from it again when a module moves or a function is renamed."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "mkdocs.yml", *sorted((ROOT / "docs").rglob("*.md"))]
# a dotted path, not a file name (bnlab.toml) or a placeholder (bnlab.experiments.cNN_<name>)
_PATH = re.compile(r"(?<![\w/.-])bnlab(?:\.[A-Za-z_]\w*)+(?![\w<*-])")
_FILE_SUFFIXES = ("json", "toml", "md", "py", "yml", "yaml", "html", "txt", "npz", "pt", "png", "svg")


def named_paths() -> dict[str, list[str]]:
    """dotted path -> the pages (relative) that name it."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for match in _PATH.finditer(page.read_text(encoding="utf-8")):
            path = match.group(0)
            if path.rsplit(".", 1)[-1] in _FILE_SUFFIXES:
                continue
            found.setdefault(path, []).append(str(page.relative_to(ROOT)))
    return found


def resolves(path: str) -> bool:
    """The longest importable module prefix of `path`, then attributes for the rest."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_pages_name_many_paths() -> None:
    paths = named_paths()
    assert len(paths) > 30 and "bnlab.layers.batchnorm" in paths  # the scan sees the API page


def test_every_named_path_imports() -> None:
    broken = {path: pages for path, pages in named_paths().items() if not resolves(path)}
    assert not broken, f"paths named in the docs that do not import: {broken}"


@pytest.mark.parametrize("path", ["bnlab.landscape.evaluate.evaluate", "bnlab.workflows.hessian.run_hessian",
                                  "bnlab.nowhere", "bnlab.train.metrics.evaluate"])
def test_a_moved_or_renamed_path_is_caught(path: str) -> None:
    assert not resolves(path)
