"""The package as a user installs it: build the sdist and the wheel, install the wheel into a fresh virtual
environment, and from a folder outside the source tree run `bnlab --version`, `bnlab check`, a smoke audit of two
claims and a short `bnlab study` of a model file in that folder, checking that the report's templates, the measured
effects and the figures come with the wheel.

The fresh environment sees the dependencies already installed here (torch, numpy, ...) through a .pth file, so the
test exercises what the wheel packages, not pip's resolver or a 700 MB torch download.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)],
         cwd=tmp_path)
    wheels = list(dist.glob("bnlab-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("bnlab-*.tar.gz"))
    names = zipfile.ZipFile(wheels[0]).namelist()
    for needed in ("bnlab/report/templates/", "bnlab/experiments/measured.json", "bnlab/py.typed",
                   "bnlab/trials/regularisation.py", "bnlab/layers/reference.py", "bnlab/workflows/study/runner.py",
                   "bnlab/version.py"):
        assert any(n.startswith(needed) for n in names), needed
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "host_dependencies.pth").write_text("\n".join(deps) + "\n")
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheels[0])], cwd=tmp_path)

    elsewhere = tmp_path / "user"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BNLAB_TRIAL_MODULES")}
    bnlab = str(venv / "bin" / "bnlab")
    where = _run([str(py), "-c", "import bnlab; print(bnlab.__file__)"], cwd=elsewhere, env=env)
    assert where.startswith(str(venv)), where  # the installed wheel, not the source tree
    assert _run([bnlab, "--version"], cwd=elsewhere, env=env).strip() == "bnlab 0.1.0"
    _run([bnlab, "check"], cwd=elsewhere, env=env)
    _run([bnlab, "audit", "--scale", "smoke", "--claims", "C01,C08", "--out", "audit", "--quiet"],
         cwd=elsewhere, env=env)
    report = (elsewhere / "audit" / "report.html").read_text()
    assert "C01" in report and "supported" in report
    assert list((elsewhere / "audit" / "figures").glob("*"))
    # a user's own model file, next to them: `bnlab study` imports it from the path given, not from the tree
    (elsewhere / "mynet.py").write_text((ROOT / "examples" / "residual_cnn_digits.py").read_text())
    _run([bnlab, "study", "--model", "mynet.py:model", "--data", "mynet.py:data", "--seeds", "2", "--steps", "20",
          "--samples", "64", "--grid", "5", "--out", "study"], cwd=elsewhere, env=env)
    assert "C14" in (elsewhere / "study" / "report.html").read_text()
