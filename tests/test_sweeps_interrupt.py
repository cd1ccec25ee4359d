"""Interruption and concurrency: SIGKILL a sweep at several points and resume; two sweeps on one folder."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnlab.sweeps import TrialStore, get_executor
from bnlab.sweeps.spec import expand, load_sweep
from bnlab.sweeps.trial import Trial

SWEEP = """
name = "killme"
seeds = 2
curve_points = 8
[base]
model = "mlp"
dataset = "digits"
steps = 40
batch_size = 32
eval_every = 20
model_kwargs = { hidden = [32, 32] }
[axes]
norm = ["none", "bn"]
lr = [0.05, 1.0]
"""


def _records(folder: Path) -> int:
    return sum(1 for p in (folder / "trials").glob("*.json"))


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of `pid` (the forkserver's workers are the sweep's grandchildren)."""
    out = []
    for child in _children(pid):
        out += [child, *_descendants(child)]
    return out


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow  # six sweep processes, each importing torch: ~30 s on an idle 2-core machine
def test_sigkill_at_five_points_then_resume_equals_uninterrupted(tmp_path):
    path = tmp_path / "killme.toml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bnlab.cli", "sweep", str(path), "--out", str(out), "-q"]
    # kill points: mid start-up, then after 1, 3, 5 and 6 finished trials (mid-trial or mid-write)
    plan = [("local", 0), ("local", 1), ("process", 3), ("local", 5), ("process", 6)]
    orphans = []
    for executor, after in plan:
        before = _records(out) if out.exists() else 0
        proc = subprocess.Popen([*cmd, "--executor", executor, "--workers", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        if after == 0:
            time.sleep(1.0)
        while after and (out.exists() and _records(out)) < after and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before the kill point"
            time.sleep(0.02)
        orphans += _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _records(out) >= before if out.exists() else True
    finished = subprocess.run([*cmd, "--executor", "local"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    # worker processes of the killed `process` sweeps went away with their parent
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert orphans and not any(_alive(p) for p in orphans)

    reference = get_executor("local").run(expand(load_sweep(path)), TrialStore(tmp_path / "reference"))
    resumed = TrialStore(out / "trials")
    assert len(reference) == 8
    for key, record in reference.items():
        got = resumed.get(key)
        assert got is not None and got["status"] == "ok"
        assert json.dumps(got["result"]) == json.dumps(record["result"])  # bitwise, NaN included
    assert json.loads((out / "results.json").read_text())["rows"]


def test_two_processes_on_one_folder_share_the_work_without_corruption(tmp_path):
    store_dir, marks = tmp_path / "store", tmp_path / "marks"
    trials = [Trial("C00", f"t{i}", "fault_trials:sleep_then",
                    {"seconds": 0.15, "value": float(i), "marker_dir": str(marks), "tag": f"t{i}"})
              for i in range(12)]
    script = (
        "import json, sys\n"
        "from bnlab.experiments.base import Trial\n"
        "from bnlab.sweeps import TrialStore, get_executor\n"
        "trials = [Trial(**t) for t in json.loads(sys.argv[2])]\n"
        "records = get_executor('local').run(trials, TrialStore(sys.argv[1]))\n"
        "print(json.dumps(sorted((r['name'], r['result']['value']) for r in records.values())))\n"
    )
    payload = json.dumps([{"claim": t.claim, "name": t.name, "fn": t.fn, "params": dict(t.params)}
                          for t in trials])
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store_dir), payload], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outputs]
    expected = sorted((t.name, t.params["value"]) for t in trials)
    for stdout, _ in outputs:  # each process returns every record
        assert [tuple(x) for x in json.loads(stdout)] == expected
    store = TrialStore(store_dir)
    assert all(store.done(t.key()) for t in trials)
    # every trial was computed exactly once, by one of the two
    attempts = sorted(os.listdir(marks))
    assert attempts == sorted(f"t{i}.attempt1" for i in range(12))
