"""The ray executor on a private local Ray with 2 CPUs (slow: starting Ray takes ~10 s)."""

import importlib

import pytest

from bnlab.sweeps import TrialStore, get_executor
from bnlab.sweeps.trial import Trial

pytest.importorskip("ray")  # the `ray` extra, pinned in requirements/dev.lock, so it runs in CI
# Ray vendors psutil (ray/thirdparty_files, on sys.path once ray is imported): a failure here is loud, not a skip
psutil = importlib.import_module("psutil")

LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def _listening_addresses() -> set[str]:
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    return found


@pytest.mark.slow
def test_ray_sweep_retries_lost_workers_and_failures_then_caches(tmp_path):
    marks = str(tmp_path / "marks")
    fit = Trial("C00", "seed=0", "fault_trials:tiny_fit", {"seed": 0, "steps": 20})
    crash = Trial("C00", "crash", "fault_trials:crash_until",
                  {"marker_dir": marks, "tag": "crash", "crashes": 1, "value": 1.0}, cost=3.0)
    flaky = Trial("C00", "flaky", "fault_trials:fail_until",
                  {"marker_dir": marks, "tag": "flaky", "fails": 1, "value": 2.0}, cost=2.0)
    dead = Trial("C00", "dead", "fault_trials:crash_until",
                 {"marker_dir": marks, "tag": "dead", "crashes": 9})
    trials = [fit, crash, flaky, dead]
    store = TrialStore(tmp_path / "ray")
    listening: list[set[str]] = []
    events = []

    def progress(event):
        events.append(event)
        if len(events) == 1:
            listening.append(_listening_addresses())

    records = get_executor("ray", workers=2, retries=1).run(trials, store, progress=progress)
    assert len(records) == 4 and len(events) == 4
    assert records[crash.key()]["status"] == "ok"
    assert records[crash.key()]["attempts"] == 2  # its worker was SIGKILLed mid-trial, then it was retried
    assert records[crash.key()]["result"] == {"value": 1.0, "attempt": 2}
    assert records[flaky.key()]["status"] == "ok" and records[flaky.key()]["attempts"] == 2
    rd = records[dead.key()]  # lost its worker on every attempt: recorded as failed, the others went on
    assert rd["status"] == "failed" and rd["attempts"] == 2 and rd["result"] is None
    assert rd["error"].startswith("ray: ") and "Worker" in rd["error"]
    local = get_executor("local").run([fit], TrialStore(tmp_path / "local"))
    assert records[fit.key()]["result"] == local[fit.key()]["result"]  # bitwise, as in every executor
    assert listening[0] and listening[0] <= set(LOOPBACK), listening  # a private Ray listens on loopback only
    # a rerun recomputes nothing (Ray is not even started: every finished trial is in the store)
    done = [fit, crash, flaky]
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.json")}
    again = get_executor("ray", workers=2).run(done, store)
    assert again == {t.key(): records[t.key()] for t in done}
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.json")} == mtimes
