"""The layer order of DEVELOPERS.md, checked by import-linter (the contract lives in pyproject.toml).

The second test proves the check can fail: it copies the package, adds one import that goes upwards (the report,
which may only use the ground floor, importing the claims) and expects lint-imports to name it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=120)


def test_layers_contract_is_kept() -> None:
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "bnlab layers KEPT" in run.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src" / "bnlab", tmp_path / "src" / "bnlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    view = tmp_path / "src" / "bnlab" / "report" / "view.py"
    view.write_text(view.read_text() + "\nfrom bnlab.experiments import claims  # noqa: E402 - deliberately wrong\n")
    run = _lint(tmp_path)
    assert run.returncode != 0
    assert "bnlab.report is not allowed to import bnlab.experiments" in run.stdout
    assert "bnlab.report.view -> bnlab.experiments.claims" in run.stdout


def _claim_imports(source: str) -> set[str]:
    """The claim modules (c01_... c14_...) a module's source imports, at the top or inside a function."""
    import ast
    import re

    claim = re.compile(r"c(0[1-9]|1[0-4])_\w+")
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {part for name in names for part in name.split(".") if claim.fullmatch(part)}
    return found


def test_claim_modules_are_leaves() -> None:
    """No claim module imports another (a shared helper lives in a plan module), and the independence contract
    of pyproject.toml names every claim module of the registry."""
    from bnlab.experiments.registry import CLAIM_MODULES

    for module in CLAIM_MODULES.values():
        path = ROOT / "src" / (module.replace(".", "/") + ".py")
        own = module.rsplit(".", 1)[1]
        assert _claim_imports(path.read_text()) - {own} == set(), module
        assert f'"{module}",' in (ROOT / "pyproject.toml").read_text(), f"{module} missing from the contract"
    assert _claim_imports("from bnlab.experiments import c05_loss_smoothness as c05\n") == {"c05_loss_smoothness"}
    assert _claim_imports("def f():\n    from bnlab.experiments.c07_learning_rate import NORMS\n") == \
        {"c07_learning_rate"}
