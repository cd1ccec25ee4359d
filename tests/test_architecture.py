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
