from bnlab.sweeps import TrialStore, get_executor
from bnlab.sweeps.trial import Trial

FIT = "fault_trials:tiny_fit"


def _fits(n, steps=40):
    return [Trial("C00", f"seed={s}", FIT, {"seed": s, "steps": steps, "width": 32}) for s in range(n)]


def _train_trials():
    from bnlab.sweeps.spec import expand, parse_sweep

    return expand(parse_sweep({
        "name": "p", "seeds": 1, "curve_points": 5,
        "base": {"model": "mlp", "dataset": "digits", "steps": 20, "batch_size": 32, "eval_every": 10,
                 "model_kwargs": {"hidden": [32, 32]}},
        "axes": {"norm": ["none", "bn"]}}))


def test_process_equals_local_bitwise_and_survives_worker_death(tmp_path):
    marks = str(tmp_path / "marks")
    crash = Trial("C00", "crash", "fault_trials:crash_until",
                  {"marker_dir": marks, "tag": "crash", "crashes": 1, "value": 3.0}, cost=5.0)
    dead = Trial("C00", "dead", "fault_trials:crash_until",
                 {"marker_dir": marks, "tag": "dead", "crashes": 9, "value": 4.0}, cost=5.0)
    fits = _fits(2) + _train_trials()
    events = []
    records = get_executor("process", workers=2, retries=1).run(
        [crash, dead, *fits], TrialStore(tmp_path / "proc"), progress=events.append)
    local = get_executor("local").run(fits, TrialStore(tmp_path / "local"))
    for t in fits:  # bitwise: the floats compare equal, not just close
        assert records[t.key()]["result"] == local[t.key()]["result"]
    assert records[crash.key()]["status"] == "ok" and records[crash.key()]["attempts"] == 2
    assert records[crash.key()]["result"] == {"value": 3.0, "attempt": 2}
    rd = records[dead.key()]
    assert rd["status"] == "failed" and rd["attempts"] == 2
    assert rd["error"] == "worker process died (SIGKILL)"
    assert sorted(e.done for e in events) == list(range(1, 7))
    assert all(records[t.key()]["result"]["device"] == "cpu" for t in fits[2:])
    # a rerun with the process pool recomputes nothing (the failed trial is tried again, and fails again)
    again = get_executor("process", workers=2, retries=0).run([crash, *fits], TrialStore(tmp_path / "proc"))
    assert {k: again[k] for k in again} == {k: records[k] for k in again}


def test_process_pool_of_one_runs_in_cost_order(tmp_path):
    trials = [Trial("C00", f"s{c}", "fault_trials:sleep_then", {"seconds": 0.0, "value": float(c)},
                    cost=float(c)) for c in (1, 3, 2)]
    order = []
    get_executor("process", workers=1).run(trials, TrialStore(tmp_path),
                                           progress=lambda e: order.append(e.record["result"]["value"]))
    assert order == [3.0, 2.0, 1.0]
