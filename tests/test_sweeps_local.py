import pytest

from bnlab.errors import BnlabError
from bnlab.sweeps import ProgressEvent, TrialStore, get_executor
from bnlab.sweeps.trial import Trial, code_fingerprint
from fault_trials import tiny_fit

FIT = "fault_trials:tiny_fit"


def _fits(n, steps=10):
    return [Trial("C00", f"seed={s}", FIT, {"seed": s, "steps": steps}, cost=1.0 + s) for s in range(n)]


def test_local_runs_all_caches_and_reports_progress(tmp_path):
    store = TrialStore(tmp_path)
    trials = _fits(3)
    events = []
    records = get_executor("local").run(trials + [trials[0]], store, progress=events.append)
    assert list(records) == [t.key() for t in reversed(trials)]  # unique, longest (cost) first
    for t in trials:
        rec = records[t.key()]
        assert rec["status"] == "ok" and rec["attempts"] == 1 and rec["error"] is None
        assert rec["claim"] == "C00" and rec["name"] == t.name and rec["fn"] == FIT
        assert rec["result"] == tiny_fit(**t.params)  # the in-process reference
        assert store.get(t.key()) == rec
    assert [e.done for e in events] == [1, 2, 3] and all(isinstance(e, ProgressEvent) for e in events)
    done, total, trial, record = events[-1]
    assert total == 3 and trial == trials[0] and record == records[trials[0].key()]
    # a rerun computes nothing: every record comes from the store, untouched
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    again = get_executor("local").run(trials, store, progress=events.append)
    assert again == records
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")} == mtimes
    assert len(events) == 6


def test_failures_are_retried_then_recorded_while_others_go_on(tmp_path):
    store = TrialStore(tmp_path / "store")
    marks = str(tmp_path / "marks")
    flaky = Trial("C00", "flaky", "fault_trials:fail_until",
                  {"marker_dir": marks, "tag": "flaky", "fails": 1, "value": 1.0})
    broken = Trial("C00", "broken", "fault_trials:fail_until",
                   {"marker_dir": marks, "tag": "broken", "fails": 99, "value": 2.0})
    bad = Trial("C00", "bad", "bnlab.experiments.nope:fn", {})
    good = _fits(1)[0]
    records = get_executor("local", retries=2).run([flaky, broken, bad, good], store)
    assert records[flaky.key()]["status"] == "ok" and records[flaky.key()]["attempts"] == 2
    assert records[flaky.key()]["result"] == {"value": 1.0, "attempt": 2}
    rb = records[broken.key()]
    assert rb["status"] == "failed" and rb["attempts"] == 3 and rb["result"] is None
    assert rb["error"].startswith("RuntimeError: injected failure 3 of 99 for broken (at ")
    assert records[bad.key()]["status"] == "failed"
    assert records[good.key()]["status"] == "ok"
    # a failed record is retried by the next run (and a succeeding one is not)
    records = get_executor("local", retries=0).run([flaky, broken], store)
    assert records[broken.key()]["error"].startswith("RuntimeError: injected failure 4 of 99")
    assert records[flaky.key()]["attempts"] == 2


def test_bad_input_errors_are_not_retried(tmp_path):
    # a BnlabError is bad input: retrying would fail the same way
    trial = Trial("C00", "x", "os:system", {"command": "true"})
    records = get_executor("local", retries=3).run([trial], TrialStore(tmp_path))
    assert records[trial.key()]["attempts"] == 1
    assert records[trial.key()]["error"].startswith("BnlabError: trial function must be 'bnlab.")


def test_corrupt_record_is_recomputed(tmp_path):
    store = TrialStore(tmp_path)
    trial = _fits(1)[0]
    first = get_executor("local").run([trial], store)[trial.key()]
    (tmp_path / f"{trial.key()}.json").write_text('{"key": "' + trial.key() + '", "stat')
    again = get_executor("local").run([trial], store)[trial.key()]
    assert again["result"] == first["result"]
    assert store.done(trial.key())


def test_trial_locked_by_someone_else_is_waited_for(tmp_path):
    import threading

    store = TrialStore(tmp_path)
    trial = _fits(1)[0]
    other = TrialStore(tmp_path)
    lock = other.claim(trial.key())
    reference = {"key": trial.key(), "claim": "C00", "name": "other", "fn": FIT, "params": dict(trial.params),
                 "data": None, "code_fingerprint": code_fingerprint(FIT), "status": "ok",
                 "result": {"by": "other"}, "error": None, "attempts": 1, "duration_s": 0.0}

    def finish_elsewhere():
        other.put(reference)
        lock.release()

    timer = threading.Timer(0.3, finish_elsewhere)
    timer.start()
    records = get_executor("local").run([trial], store)
    timer.join()
    assert records[trial.key()]["result"] == {"by": "other"}  # reused, not recomputed


def test_get_executor_validates(tmp_path):
    with pytest.raises(BnlabError, match="unknown executor 'dask'"):
        get_executor("dask")
    with pytest.raises(BnlabError, match="retries"):
        get_executor("local", retries=-1)
    with pytest.raises(BnlabError, match="workers"):
        get_executor("process", workers=0)
    with pytest.raises(BnlabError, match="address"):
        get_executor("local", address="auto")
    with pytest.raises(BnlabError, match="Trial"):
        get_executor("local").run([{"fn": FIT}], TrialStore(tmp_path))
