"""`bnlab audit` and `bnlab report` from the command line: bad input, output, Ctrl-C and kill -9 then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import audit_fakes
from bnlab.cli import main
from bnlab.experiments.audit import run_audit
from bnlab.experiments.base import CLAIM_IDS, VERDICTS

TESTS = Path(__file__).parent
PYTHON = sys.executable


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    audit_fakes.install(monkeypatch)
    # the trial store is per code version; other work on this tree must not change it between two runs of a test
    monkeypatch.setattr("bnlab.sweeps.trial.code_fingerprint", lambda fn: "pinned")
    for name in ("BNLAB_FAKE_INTERRUPT_AT", "BNLAB_FAKE_SLEEP", "BNLAB_FAKE_MARKER"):
        monkeypatch.delenv(name, raising=False)


def one_line_error(capsys: pytest.CaptureFixture, rc: int, needle: str) -> None:
    captured = capsys.readouterr()
    assert rc == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize("args, needle", [
    (["--claims", "C07,C99"], "unknown claim id 'C99'"),
    (["--scale", "huge"], "unknown scale 'huge'"),
    (["--seeds", "0"], "seeds must be an integer >= 1"),
    (["--seeds", "many"], "Invalid value for '--seeds'"),
    (["--executor", "slurm"], "unknown executor 'slurm'"),
    (["--workers", "0"], "workers must be an integer >= 1"),
    (["--address", "auto"], "--address is for the ray executor"),
    (["--no-such-flag"], "No such option"),
])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(args: list[str], needle: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous results")
    rc = main(["audit", "--scale", "smoke", "--out", str(out), *args])
    one_line_error(capsys, rc, needle)
    assert (out / "results.json").read_text() == "previous results"
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_bad_output_paths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "a_file"
    file.write_text("keep")
    one_line_error(capsys, main(["audit", "--scale", "smoke", "--out", str(file)]), "is a file")
    one_line_error(capsys, main(["audit", "--scale", "smoke", "--out", str(file / "x")]), "which is a file")
    one_line_error(capsys, main(["audit", "--scale", "smoke", "--out", "/proc/bnlab-audit"]), "not writable")
    assert file.read_text() == "keep"
    one_line_error(capsys, main(["report", str(tmp_path / "missing")]), "no results.json")
    one_line_error(capsys, main(["report", str(file)]), "is a file")


def test_audit_then_report(fakes: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "audit"
    assert main(["audit", "--scale", "smoke", "--out", str(out), "--executor", "local"]) == 0
    stdout = capsys.readouterr().out
    assert "[1/6] C07" in stdout  # progress, one line per trial
    assert "C07    supported" in stdout and "C02    not measured" in stdout  # the verdict table
    assert stdout.rstrip().endswith(f"report: {out / 'report.html'}")
    results = json.loads((out / "results.json").read_text())
    assert [c["id"] for c in results["claims"]] == list(CLAIM_IDS)
    assert all(c["verdict"] in VERDICTS for c in results["claims"])
    # quiet: no progress lines, still the table and the path
    assert main(["audit", "--scale", "smoke", "--out", str(out), "-q", "--claims", "C07"]) == 0
    stdout = capsys.readouterr().out
    assert "[1/" not in stdout and "report: " in stdout
    # `bnlab report` re-renders from results.json alone
    (out / "report.html").unlink()
    (out / "figures" / "C07-curves.svg").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "figures" / "C07-curves.svg").is_file()
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out


def _audit_process(out: Path, env: dict[str, str]) -> subprocess.Popen:
    # a child of a background job inherits SIGINT ignored; a terminal user's Ctrl-C raises KeyboardInterrupt
    code = ("import signal, sys, audit_fakes; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "audit_fakes.install(); import bnlab.sweeps.trial as t; t.code_fingerprint = lambda fn: 'pinned'; "
            "from bnlab.cli import main; "
            f"sys.exit(main(['audit', '--scale', 'smoke', '--claims', 'C07', '--out', {str(out)!r}, "
            "'--executor', 'local']))")
    # the child imports this checkout's sources, as the parent does (not whatever bnlab the venv installed)
    paths = os.pathsep.join([str(TESTS), str(TESTS.parent / "src")])
    full_env = {**os.environ, "PYTHONPATH": paths, "MPLBACKEND": "Agg", **env}
    return subprocess.Popen([PYTHON, "-c", code], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_block(path: Path, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and "blocked" in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"audit ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the audit did not reach its blocking trial in time")


@pytest.mark.parametrize("sig, expected_rc", [
    (signal.SIGINT, 130),
    pytest.param(signal.SIGKILL, -9, marks=pytest.mark.slow),
])
def test_interrupted_audit_resumes(fakes: None, tmp_path: Path, sig: signal.Signals, expected_rc: int) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    # trials run in plan order bn/0, none/0, bn/1, none/1: the third one hangs until the signal arrives
    proc = _audit_process(out, {"BNLAB_FAKE_BLOCK_AT": "bn/1", "BNLAB_FAKE_MARKER": str(marker)})
    _wait_for_block(marker, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == expected_rc, stderr
    if sig == signal.SIGINT:
        assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert not (out / "results.json").exists()
    assert len(list((out / "trials").glob("*.json"))) == 2  # the two finished trials, nothing else
    assert not list((out / "trials").glob("*/.*.tmp"))  # no torn temp files left behind
    marker.unlink()
    rerun = _audit_process(out, {"BNLAB_FAKE_MARKER": str(marker)})
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert marker.read_text().splitlines() == ["bn/1", "none/1"]  # only the unfinished trials ran
    assert stdout.count("  cached") == 2  # progress lines of the reused trials
    clean = run_audit("smoke", None, "C07", tmp_path / "clean", "local", log=None)  # never interrupted
    resumed = json.loads((out / "results.json").read_text())["claims"]
    assert json.dumps(resumed) == json.dumps(clean.results["claims"])


@pytest.mark.slow
def test_smoke_audit_with_the_real_claims(tmp_path: Path) -> None:
    """The real smoke audit (every claim module that exists), as `make audit` runs it but at smoke scale."""
    out = tmp_path / "audit"
    start = time.monotonic()
    proc = subprocess.run([PYTHON, "-m", "bnlab.cli", "audit", "--scale", "smoke", "--out", str(out),
                           "--executor", "process", "-q"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith(f"report: {out / 'report.html'}")
    results = json.loads((out / "results.json").read_text())
    assert results["scale"] == "smoke" and results["seeds"] == "default"
    assert [c["id"] for c in results["claims"]] == list(CLAIM_IDS)
    for claim in results["claims"]:
        assert claim["verdict"] in VERDICTS
        assert {"id", "title", "verdict", "rule", "summary", "metrics", "figures", "caveats"} <= set(claim)
        if claim["verdict"] != "not_measured":
            assert claim["rule"] or claim["caveats"], claim["id"]
        for fig in claim["figures"]:
            assert (out / fig["file"]).is_file(), fig["file"]
    assert (out / "report.html").stat().st_size > 10_000
    # trial results hold no timings (the record's duration_s is outside them), so executors compare bit for bit
    from test_reliability_determinism import volatile_keys

    records = [json.loads(p.read_text()) for p in sorted((out / "trials").rglob("*.json"))]
    assert records
    for record in records:
        assert volatile_keys(record["result"]) == [], (record["claim"], record["name"])
    print(f"smoke audit: {elapsed:.1f} s wall; verdicts "
          f"{ {c['id']: c['verdict'] for c in results['claims']} }")
