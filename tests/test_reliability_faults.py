"""Faults and hostile conditions, driven through the command line (docs/reliability.md lists them).

Every case shows that it can fail: a control step demonstrates the failure mode the fix addresses (the old store
check accepting the damaged record, json.loads recursing, mkdir on a dangling link, a write to a read-only mount
failing, a full tmpfs refusing a write, an unguarded writer dying on a closed pipe, np.load suggesting
allow_pickle), then the command is run and must handle it. Classes of fault:

* corrupt / truncate / deeply nested files: trial records (audit, sweep), weights files (study), landscape planes,
  results.json;
* a full disk (a small tmpfs, mounted where the tests run as root; skipped where mount is not permitted) and a
  read-only mount: one line, exit 74 or 2, nothing partial left, the rerun after the fix resumes;
* output folders: a dangling symbolic link, someone else's files (`--force`), the umask;
* a pipe closed early (``bnlab audit | head -1``).

Kills (SIGINT, SIGKILL) are driven in test_reliability_interrupt.py, test_cli_audit.py and test_sweeps_interrupt.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import audit_fakes
from bnlab.cli import main
from bnlab.experiments.audit import claims_section

AUDIT = ["audit", "--scale", "smoke", "--claims", "C07", "--executor", "local", "-q"]
SWEEP = ('name = "tiny"\nseeds = 1\n[base]\nmodel = "mlp"\ndataset = "digits"\nsteps = 2\n[axes]\n'
         'norm = ["bn", "none"]\n')
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    audit_fakes.install(monkeypatch)
    monkeypatch.setattr("bnlab.sweeps.trial.code_fingerprint", lambda fn: "pinned")
    for name in ("BNLAB_FAKE_INTERRUPT_AT", "BNLAB_FAKE_SLEEP", "BNLAB_FAKE_MARKER", "BNLAB_FAKE_BLOCK_AT"):
        monkeypatch.delenv(name, raising=False)
    audit_fakes.CALLS.clear()
    return audit_fakes.CALLS


def one_line(capsys: pytest.CaptureFixture[str], rc: int, code: int, needle: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
    assert needle in lines[0], (needle, err)
    assert "Traceback" not in err
    return lines[0]


def tmp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ corrupt, truncate


def _damage(path: Path, how: str) -> None:
    text = path.read_text()
    record = json.loads(text)
    if how == "empty":
        record["result"] = {}
    elif how == "flip":
        record["result"]["acc"] = record["result"]["acc"] + 1e-9
    if how in ("empty", "flip"):
        path.write_text(json.dumps(record))
        return
    path.write_text(text[: len(text) // 2] if how == "truncate" else
                    '{"key": "x", "result": ' + "[" * 30_000 + "]" * 30_000 + "}")


@pytest.mark.parametrize("how", ["empty", "flip", "truncate", "deep"])
def test_a_damaged_audit_record_is_recomputed_and_said(fakes: list[str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], how: str) -> None:
    out = tmp_path / "audit"
    assert main([*AUDIT, "--out", str(out)]) == 0
    clean = claims_section(json.loads((out / "results.json").read_text()))
    victim = sorted((out / "trials").glob("*.json"))[0]
    name = json.loads(victim.read_text())["name"]
    _damage(victim, how)
    text = victim.read_text()
    if how in ("empty", "flip"):  # control: still a well-formed record with every field the old store checked
        assert {"key", "status", "result"} <= set(json.loads(text))
    elif how == "deep":  # control: the plain reader dies on it
        with pytest.raises(RecursionError):
            json.loads(text)
    fakes.clear()
    capsys.readouterr()
    assert main([*AUDIT, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: trial record {victim} is damaged" in err and "Traceback" not in err
    assert fakes == [name.replace("seed=", "")]  # exactly the damaged trial ran again
    assert claims_section(json.loads((out / "results.json").read_text())) == clean


def test_a_deep_or_truncated_results_json_is_one_line_for_report(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audit"
    out.mkdir()
    deep = '{"claims": ' + "[" * 50_000 + "]" * 50_000 + "}"
    with pytest.raises(RecursionError):  # control
        json.loads(deep)
    (out / "results.json").write_text(deep)
    one_line(capsys, main(["report", str(out)]), 2, "nested 50001 levels deep")
    (out / "results.json").write_text('{"claims": [{"id": "C01", "verd')
    one_line(capsys, main(["report", str(out)]), 2, "JSONDecodeError")
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def _sweep(tmp_path: Path, text: str = SWEEP) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_a_damaged_sweep_record_is_recomputed_not_a_traceback(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from bnlab.sweeps.run import summarize
    from bnlab.sweeps.spec import expand, load_sweep

    path, out = _sweep(tmp_path), tmp_path / "sweep"
    args = ["sweep", str(path), "--out", str(out), "--executor", "local", "-q"]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())["rows"]
    victim = sorted((out / "trials").glob("*.json"))[0]
    record = json.loads(victim.read_text())
    record["result"] = {}
    victim.write_text(json.dumps(record))
    spec = load_sweep(path)
    records = {t.key(): json.loads((out / "trials" / f"{t.key()}.json").read_text()) for t in expand(spec)}
    with pytest.raises(KeyError):  # control: the sweep's summary died on this record when the store reused it
        summarize(spec, expand(spec), records)
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"warning: trial record {victim} is damaged (an empty result)" in captured.err
    assert json.loads((out / "results.json").read_text())["rows"] == first


@pytest.mark.parametrize("value, needle", [
    ('"norm_kwargs.eps" = [nan]', "norm_kwargs.eps must be a finite number, got nan"),
    ('"norm_kwargs.eps" = [0.0]', "eps must be > 0"),
    ("momentum = [nan]", "momentum must be in [0, 1)"),
    ('"dataset_kwargs.train_size" = [inf]', "dataset_kwargs.train_size must be a finite number, got inf"),
    ("lr = [" + ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(1000)) + "]\nweight_decay = ["
     + ", ".join(f"{i}e-5" for i in range(1000)) + "]", "plans 1,000,000 trials"),
])
def test_sweep_values_are_checked_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       value: str, needle: str) -> None:
    path = _sweep(tmp_path, SWEEP.replace('norm = ["bn", "none"]', f'norm = ["bn"]\n{value}'))
    out = tmp_path / "sweep"
    one_line(capsys, main(["sweep", str(path), "--out", str(out), "--executor", "local"]), 2, needle)
    assert not out.exists()


# ------------------------------------------------------------------------------------------ output folders


def test_someone_elses_folder_is_refused_and_force_takes_it(fakes: list[str], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "results.json").write_text("their results")
    (theirs / "report.html").write_text("their report")
    one_line(capsys, main([*AUDIT, "--out", str(theirs)]), 2, "holds files bnlab did not write")
    sweep = _sweep(tmp_path)
    one_line(capsys, main(["sweep", str(sweep), "--out", str(theirs), "--executor", "local"]), 2,
             "holds files bnlab did not write")
    assert (theirs / "results.json").read_text() == "their results" and fakes == []  # control: untouched
    audit = tmp_path / "audit"
    assert main([*AUDIT, "--out", str(audit)]) == 0
    one_line(capsys, main(["sweep", str(sweep), "--out", str(audit), "--executor", "local"]), 2,
             "holds the output of `bnlab audit`")
    assert main([*AUDIT, "--out", str(audit)]) == 0  # its own folder: resumed
    assert main([*AUDIT, "--out", str(theirs), "--force"]) == 0
    assert json.loads((theirs / "results.json").read_text())["claims"]


def test_a_dangling_symlink_out_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(FileExistsError):  # control: what every command did with it (a traceback)
        link.mkdir(parents=True, exist_ok=True)
    model = tmp_path / "net.py"
    model.write_text("import torch\nfrom torch import nn\n\ndef model():\n    return nn.Sequential(nn.Linear(4, 8), "
                     "nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))\n\ndef data():\n    g = torch.Generator()"
                     ".manual_seed(0)\n    x = torch.randn(80, 4, generator=g)\n    y = (x[:, 0] > 0).long()\n"
                     "    return x[:60], y[:60], x[60:], y[60:]\n")
    for argv in (["train", "--dataset", "digits", "--steps", "1", "--out", str(link)],
                 ["hessian", "--model", "mlp", "--norm", "bn", "--samples", "16", "--out", str(link)],
                 ["sharpness", "--train-size", "50", "--steps", "1", "--out", str(link)],
                 ["study", "--model", f"{model}:model", "--data", f"{model}:data", "--out", str(link)]):
        one_line(capsys, main(argv), 2, "is a dangling symbolic link")
    assert not (tmp_path / "gone").exists()


def test_results_take_their_mode_from_the_umask(fakes: list[str], tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        assert main([*AUDIT, "--out", str(tmp_path / "audit")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "audit").rglob("*") if p.is_file()}
    assert modes["results.json"] == 0o664 and modes["report.html"] == 0o664
    assert {m for name, m in modes.items() if not name.endswith(".lock")} == {0o664}


def test_os_errors_are_one_line_with_exit_74(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "results.json").write_text('{"claims": []}')

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "report.html"))

    monkeypatch.setattr("bnlab.report.build.write_report", full_disk)
    line = one_line(capsys, main(["report", str(tmp_path)]), 74, "error: no space left on the disk (")
    assert f"({tmp_path / 'report.html'}): No space left on device" in line and "rerun" in line


# ------------------------------------------------------------------------------------------ full and read-only disks


@pytest.fixture
def tmpfs(tmp_path: Path) -> Path:
    """A 2 MiB tmpfs at tmp_path/mnt (root only; skipped where mount is not permitted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "bnlab-test", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Fill the file system of `folder` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:  # control: the disk is now full
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_is_one_line_leaves_nothing_partial_and_the_rerun_resumes(
        fakes: list[str], tmpfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmpfs / "audit"
    assert main([*AUDIT, "--out", str(out)]) == 0
    clean = claims_section(json.loads((out / "results.json").read_text()))
    for name in ("results.json", "report.html", "report.md"):
        (out / name).unlink()
    filler = _fill(tmpfs)
    fakes.clear()
    one_line(capsys, main([*AUDIT, "--out", str(out)]), 74, "error: no space left on the disk (")
    assert not (out / "results.json").exists() and tmp_files(out) == []
    filler.unlink()
    assert main([*AUDIT, "--out", str(out)]) == 0
    assert fakes == []  # every trial came from the store
    assert claims_section(json.loads((out / "results.json").read_text())) == clean


def test_a_read_only_results_folder_still_renders(fakes: list[str], tmpfs: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmpfs / "audit"
    assert main([*AUDIT, "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    done = subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    with pytest.raises(OSError) as refused:  # control: the folder really is read-only, for root too
        (out / "figures" / "drawn.json").write_text("{}")
    assert refused.value.errno == errno.EROFS
    capsys.readouterr()
    assert main(["report", str(out)]) == 0  # nothing changed, so nothing is written
    assert main(["report", str(out), "--to", str(tmp_path / "copy")]) == 0
    assert (tmp_path / "copy" / "report.html").read_bytes() == before[out / "report.html"]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    one_line(capsys, main([*AUDIT, "--out", str(out)]), 2, "is not writable")


# ------------------------------------------------------------------------------------------ a pipe closed early


def test_a_reader_that_leaves_does_not_end_the_audit(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import audit_fakes; audit_fakes.install(); "
            "import bnlab.sweeps.trial as t; t.code_fingerprint = lambda fn: 'pinned'; from bnlab.cli import main; "
            f"sys.exit(main(['audit', '--scale', 'smoke', '--claims', 'C07', '--executor', 'local', '--out', "
            f"{str(out)!r}]))")
    control = "import sys\nfor i in range(100000):\n    print(i)\n"
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    script = ('"$PY" -c "$CONTROL" 2>/dev/null | head -1 >/dev/null; echo "control=${PIPESTATUS[0]}"; '
              '"$PY" -c "$CODE" | head -1; echo "audit=${PIPESTATUS[0]}"')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**env, "PY": sys.executable, "CODE": code, "CONTROL": control})
    lines = done.stdout.splitlines()
    assert lines[0] not in ("control=0",), done  # control: an unguarded writer dies on the closed pipe
    assert lines[-1] == "audit=0", (done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert json.loads((out / "results.json").read_text())["claims"] and (out / "report.html").is_file()


# ------------------------------------------------------------------------------------------ binary artefacts


def test_a_damaged_landscape_file_is_one_line_and_a_partial_plane_is_recomputed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bnlab.errors import BnlabError
    from bnlab.landscape import Surface

    objects = tmp_path / "objects.npz"
    np.savez(objects, meta_json=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):  # control: numpy's advice, never to be followed
        np.load(objects, allow_pickle=False)["meta_json"]
    with pytest.raises(BnlabError, match="object array") as refused:
        Surface.load(objects)
    assert "allow_pickle=True" not in str(refused.value) and "\n" not in str(refused.value)

    out = tmp_path / "land"
    tiny = ["--model", "mlp", "--dataset", "digits", "--norms", "bn", "--grid", "3", "--line", "3",
            "--train-steps", "2", "--samples", "32", "--bn-mode", "eval", "--threads", "1", "--format", "svg"]
    assert main(["landscape", "--out", str(out), *tiny]) == 0
    plane = next(out.glob("plane_*.npz"))
    good = Surface.load(plane).loss
    plane.write_bytes(plane.read_bytes()[:300])
    with pytest.raises(BnlabError, match="not a bnlab landscape file"):
        Surface.load(plane)
    capsys.readouterr()
    assert main(["landscape", "--out", str(out), *tiny]) == 0
    assert "is not a bnlab landscape file" in capsys.readouterr().err
    np.testing.assert_array_equal(Surface.load(plane).loss, good)


STUDY_NET = '''
import torch
from torch import nn

def model():
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))

def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x[:150], y[:150], x[150:], y[150:]
'''
STUDY = ["--seeds", "1", "--steps", "4", "--probe-every", "2", "--samples", "16", "--grid", "5", "--threads", "1"]


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


@pytest.mark.slow
def test_study_weights_checkpoints_and_a_moved_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    net = tmp_path / "net.py"
    net.write_text(STUDY_NET)
    out = tmp_path / "study"
    args = ["study", "--model", f"{net}:model", "--data", f"{net}:data", *STUDY]
    evil = tmp_path / "evil.pt"
    torch.save({"w": _Evil()}, evil)
    one_line(capsys, main([*args, "--out", str(out), "--checkpoint", str(evil), "--checkpoint", str(evil)]), 2,
             "cannot read checkpoint")
    assert not out.exists()  # refused before OUT/trials was written

    assert main([*args, "--out", str(out)]) == 0
    verdicts = json.loads((out / "results.json").read_text())["claims"]
    weights = out / "weights" / "bn-seed0.pt"
    weights.write_bytes((evil).read_bytes())
    with pytest.raises(Exception, match="Unpickl|weights_only"):  # control: what every rerun died on
        torch.load(weights, weights_only=True)
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    assert f"weights file {weights} is missing or damaged; recomputing net bn/seed=0" in capsys.readouterr().out
    torch.load(weights, weights_only=True)

    moved = tmp_path / "elsewhere" / "study"
    moved.parent.mkdir()
    shutil.move(str(out), str(moved))
    records = {p.name: p.stat().st_mtime_ns for p in (moved / "trials").glob("*.json")}
    assert main([*args, "--out", str(moved)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (moved / "trials").glob("*.json")} == records  # nothing rerun
    assert json.loads((moved / "results.json").read_text())["claims"] == verdicts
