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


# File stems that several floors share on purpose: a role name, always imported by its package path.
SHARED_STEMS = {
    "config": "bnlab.config is the config machinery (from_mapping, to_mapping, config_hash); train.config and "
              "workflows.study.config each hold the one config dataclass of their package, validated by it",
    "registry": "each of models, data and experiments keeps its own names (models, data sets, claim modules) in "
                "a registry module, as timm does; the three tables have nothing else in common",
}


def module_stems(src: Path) -> dict[str, list[str]]:
    """stem -> where it is, for every module file and every package folder below `src` (``__init__`` aside)."""
    found: dict[str, list[str]] = {}
    for path in sorted(src.rglob("*.py")):
        if path.name == "__init__.py":
            if path.parent != src:
                found.setdefault(path.parent.name, []).append(f"{path.parent.relative_to(src)}/")
        else:
            found.setdefault(path.stem, []).append(str(path.relative_to(src)))
    return found


def test_no_two_modules_share_a_file_stem() -> None:
    shared = {stem: where for stem, where in module_stems(ROOT / "src" / "bnlab").items() if len(where) > 1}
    assert set(shared) <= set(SHARED_STEMS), {s: w for s, w in shared.items() if s not in SHARED_STEMS}
    assert set(SHARED_STEMS) <= set(shared), "an exception that no longer applies: drop it from SHARED_STEMS"


def test_a_shared_stem_is_found(tmp_path: Path) -> None:
    for rel in ("bnlab/__init__.py", "bnlab/probes/__init__.py", "bnlab/probes/hessian/__init__.py",
                "bnlab/workflows/hessian.py", "bnlab/probes/evaluate.py", "bnlab/train/evaluate.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    stems = module_stems(tmp_path / "bnlab")
    assert stems["hessian"] == ["probes/hessian/", "workflows/hessian.py"]  # a package and a module
    assert len(stems["evaluate"]) == 2 and "__init__" not in stems
