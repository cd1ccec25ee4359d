"""Interruption of the real `bnlab audit` (real claim experiments, smoke scale) and atomic results files.

* SIGINT (Ctrl-C) while trials run, with the local and the process executor: exit 130, one ``error: interrupted``
  line and no traceback, no results.json, no stray temp file, no worker process left behind; the rerun reuses
  every finished trial ("cached") and completes.
* SIGKILL at KILL_POINTS (after 1, 4, 9, 16 and 25 finished trials, and once at a random moment), each followed by a
  rerun of the same command in the same folder: the final results.json "claims" equal, byte for byte, those of an
  uninterrupted run. Two fast claims (C07, C11) keep this to about a minute.
* Every file bnlab writes goes through `bnlab.atomic` (temp file + fsync + rename): checked by reading the source
  (no direct writes) and by watching a run (every file in an audit folder arrived by os.replace).

The subprocesses pin `code_fingerprint`, so edits to the source tree during the test cannot split the trial store.
"""

from __future__ import annotations

import ast
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bnlab
from bnlab.experiments.audit import claims_section

SRC = Path(bnlab.__file__).parent
CLAIMS = "C07,C11"
KILL_POINTS = (1, 4, 9, 16, 25)  # finished trials when SIGKILL arrives (C07 + C11 smoke: 52 trials)


def audit_process(out: Path, claims: str = CLAIMS, executor: str = "local") -> subprocess.Popen:
    """`bnlab audit --scale smoke` in a fresh interpreter, with Ctrl-C delivered as a terminal would."""
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "import bnlab.sweeps.trial as t; t.code_fingerprint = lambda fn: 'pinned'; "
            "from bnlab.cli import main; "
            f"sys.exit(main(['audit', '--scale', 'smoke', '--claims', {claims!r}, '--out', {str(out)!r}, "
            f"'--executor', {executor!r}, '--workers', '2']))")
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finished_trials(out: Path) -> int:
    return len(list((out / "trials").glob("*.json")))


def wait_for_trials(out: Path, proc: subprocess.Popen, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while finished_trials(out) < count:
        if proc.poll() is not None:
            raise AssertionError(f"the audit ended before {count} trials: {proc.communicate()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"fewer than {count} trials finished in {timeout} s")
        time.sleep(0.02)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def group_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


def group_dies(pgid: int, within: float = 20.0) -> list[int]:
    """The group's live members once they had `within` seconds to go: a SIGKILLed process is gone at once for
    its parent, but a large one can take a moment to be torn down on a loaded machine."""
    deadline = time.monotonic() + within
    while (alive := group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def run_to_end(out: Path, claims: str = CLAIMS, executor: str = "local") -> tuple[str, str]:
    proc = audit_process(out, claims, executor)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout, stderr


@pytest.fixture(scope="module")
def clean_claims(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The claims section of an uninterrupted run: what every interrupted-and-resumed run must reproduce."""
    out = tmp_path_factory.mktemp("clean") / "audit"
    run_to_end(out)
    return claims_section(json.loads((out / "results.json").read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "process"])
def test_sigint_stops_cleanly_and_the_rerun_resumes(executor: str, tmp_path: Path, clean_claims: str) -> None:
    out = tmp_path / "audit"
    proc = audit_process(out, executor=executor)
    wait_for_trials(out, proc, 3)
    workers = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr
    assert not (out / "results.json").exists()
    assert not list(out.rglob("*.tmp")), "a torn temp file was left behind"
    time.sleep(0.5)
    assert not [p for p in workers if Path(f"/proc/{p}").exists()
                and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]], \
        "worker processes outlived the interrupted audit"
    done = finished_trials(out)
    assert done >= 3
    stdout, _ = run_to_end(out, executor=executor)
    assert stdout.count("  cached") == done  # every finished trial was reused, none recomputed
    assert claims_section(json.loads((out / "results.json").read_text())) == clean_claims


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun_gives_the_same_claims(tmp_path: Path, clean_claims: str) -> None:
    """Kill -9 (the whole process group, as the OOM killer or a lost session would) at each kill point in turn,
    rerunning the same command each time; the last rerun completes and must give the clean run's claims."""
    out = tmp_path / "audit"
    seen = []
    for point in KILL_POINTS:
        proc = audit_process(out)
        wait_for_trials(out, proc, point)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert not group_dies(proc.pid), "processes survived the kill"
        seen.append(finished_trials(out))
        assert not (out / "results.json").exists()
        for record in (out / "trials").glob("*.json"):  # every stored trial is a complete JSON record
            json.loads(record.read_text())
    assert seen == sorted(seen) and seen[-1] >= KILL_POINTS[-1]
    # one more kill at a random moment (seeded, so a failure can be replayed): maybe mid-trial, maybe mid-report
    proc = audit_process(out)
    time.sleep(random.Random(10).uniform(0.5, 4.0))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    stdout, _ = run_to_end(out)
    assert stdout.count("  cached") >= seen[-1]
    assert claims_section(json.loads((out / "results.json").read_text())) == clean_claims
    print(f"kill points (finished trials when killed): {seen} + one random; claims identical to a clean run")


@pytest.mark.slow
def test_sigkill_with_the_process_executor_resumes(tmp_path: Path, clean_claims: str) -> None:
    out = tmp_path / "audit"
    proc = audit_process(out, executor="process")
    wait_for_trials(out, proc, 6)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not group_dies(proc.pid)
    run_to_end(out, executor="process")
    assert claims_section(json.loads((out / "results.json").read_text())) == clean_claims


# ------------------------------------------------------------------------------------------------ atomic writes

_WRITERS = {"write_text", "write_bytes"}  # pathlib's non-atomic writers (bnlab.atomic's are plain functions)
_PATH_SAVERS = {"save", "savez", "savez_compressed", "savefig", "dump"}  # torch/np/matplotlib/json to a path
_SAVER_MODULES = {"torch", "np", "numpy", "json", "plt", "pickle"}


def _mode(node: ast.Call, position: int) -> str:
    """The constant mode argument of an open() call ("r" when absent or not a constant)."""
    args = node.args[position:position + 1] + [k.value for k in node.keywords if k.arg == "mode"]
    return str(args[0].value) if args and isinstance(args[0], ast.Constant) else "r"


def direct_writes(path: Path) -> list[str]:
    """Calls in one source file that write a file in place instead of through bnlab.atomic."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        text = ast.unparse(node)
        if isinstance(func, ast.Attribute) and func.attr in _WRITERS:
            found.append(text)
        elif (isinstance(func, ast.Attribute) and node.args and func.attr in _PATH_SAVERS
              and (func.attr == "savefig" or ast.unparse(func.value) in _SAVER_MODULES)):
            second = func.attr == "dump" or ast.unparse(func.value) == "torch"  # torch.save(obj, f), json.dump(obj, f)
            target = ast.unparse(node.args[1] if second and len(node.args) > 1 else node.args[0])
            if "buf" not in target and "handle" not in target:  # an in-memory buffer, then bnlab.atomic
                found.append(text)
        elif isinstance(func, ast.Name) and func.id == "open":  # open(path, mode)
            if any(c in _mode(node, 1) for c in "wx+"):
                found.append(text)
        elif isinstance(func, ast.Attribute) and func.attr == "open" and ast.unparse(func.value) != "os":
            if any(c in _mode(node, 0) for c in "wx+"):  # Path.open(mode)
                found.append(text)
    return found


def test_no_results_file_is_written_in_place() -> None:
    """Every write in src/ goes through bnlab.atomic; the one exception is the append-only metrics log
    (tracking/jsonl.py, opened with mode "a": a torn last line is dropped when a run resumes)."""
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "atomic.py":
            continue
        calls = direct_writes(path)
        if calls:
            offenders[str(path.relative_to(SRC))] = calls
    assert offenders == {}


def test_the_source_check_catches_a_direct_write(tmp_path: Path) -> None:
    """Control: the AST check sees each kind of in-place write."""
    bad = tmp_path / "bad.py"
    bad.write_text("import json, torch\nfrom pathlib import Path\n"
                   "Path('r.json').write_text('x')\n"
                   "open('r.json', 'w').write('x')\n"
                   "torch.save({}, 'c.pt')\n"
                   "json.dump({}, fh)\n"
                   "Path('r').open('wb')\n")
    assert len(direct_writes(bad)) == 5


def test_every_audit_file_arrives_by_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Watch a (fake-claims) audit: each file in its folder was created as a temp file and renamed into place."""
    import audit_fakes
    from bnlab.experiments.audit import run_audit

    audit_fakes.install(monkeypatch)
    renamed: list[Path] = []
    real_replace = os.replace

    def watching_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        assert Path(src).parent == Path(dst).parent  # same folder, so the rename is atomic
        renamed.append(Path(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    out = tmp_path / "audit"
    run_audit("smoke", 2, "C07", out, "local", log=None)
    files = {p for p in out.rglob("*") if p.is_file() and p.suffix != ".lock"}  # lock files hold no data
    assert files and files <= set(renamed), sorted(map(str, files - set(renamed)))
    assert (out / "results.json") in files and (out / "report.html") in files
