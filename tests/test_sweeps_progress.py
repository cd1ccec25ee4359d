"""The progress bar of long commands, `bnlab --version`, and the audit's default executor."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import bnlab
from bnlab.cli import main
from bnlab.sweeps.progress import ProgressBar, clock


def _trial(key: str, cost: float) -> SimpleNamespace:
    return SimpleNamespace(key=lambda: key, cost=cost, name=key, claim="CXX")


def test_clock():
    assert clock(12.4) == "12 s" and clock(185) == "3:05" and clock(3727) == "1:02:07" and clock(-1) == "0 s"


def test_bar_estimates_the_time_left_by_cost(monkeypatch: pytest.MonkeyPatch):
    now = [100.0]
    monkeypatch.setattr("bnlab.sweeps.progress.time.perf_counter", lambda: now[0])
    out = io.StringIO()
    bar = ProgressBar(out, width=10)
    trials = [_trial("a", 3.0), _trial("b", 1.0), _trial("c", 1.0), _trial("cached", 9.0)]
    bar.expect(trials, {"cached"})
    now[0] = 130.0  # 30 s for the trial of cost 3: cost 2 is left, so about 20 s
    bar(SimpleNamespace(done=2, total=4, trial=trials[0], record={"status": "ok"}))
    assert "2/4 trials, 30 s, ~20 s left" in out.getvalue() and out.getvalue().startswith("\r[#####.....]")
    now[0] = 140.0
    bar(SimpleNamespace(done=3, total=4, trial=trials[1], record={"status": "failed"}))
    assert out.getvalue().rsplit("\r", 1)[1].startswith("[########..] 3/4 trials, 40 s, ~10 s left, 1 failed")
    bar(SimpleNamespace(done=4, total=4, trial=trials[2], record={"status": "ok"}))
    assert "left" not in out.getvalue().rsplit("\r", 1)[1]  # nothing left to estimate
    bar.close()
    assert out.getvalue().endswith("\n")


def test_version(capsys: pytest.CaptureFixture[str]):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"bnlab {bnlab.__version__}"


def test_audit_uses_the_process_executor_by_default(tmp_path: Path):
    out = tmp_path / "a"
    assert main(["audit", "--scale", "smoke", "--claims", "C08", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["executor"] == "process"


def test_sweep_drives_the_bar_with_the_cost_left(tmp_path: Path):
    from bnlab.sweeps.run import run_sweep
    from bnlab.sweeps.spec import load_sweep

    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\nseeds = 2\n[base]\nmodel = "mlp"\ndataset = "digits"\nsteps = 4\nbatch_size = 16\n'
                    'eval_every = 0\nmodel_kwargs = { hidden = [8] }\n[axes]\nnorm = ["none", "bn"]\n')
    out = io.StringIO()
    run_sweep(load_sweep(path), out=tmp_path / "s", executor="local", progress=ProgressBar(out, width=4))
    lines = out.getvalue().split("\r")
    assert lines[-1].startswith("[####] 4/4 trials") and out.getvalue().endswith("\n")
    again = io.StringIO()
    bar = ProgressBar(again, width=4)
    run_sweep(load_sweep(path), out=tmp_path / "s", executor="local", progress=bar)
    assert bar.total_cost == 0  # every trial came from the store: nothing to estimate
