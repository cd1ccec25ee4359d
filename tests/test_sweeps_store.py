import json
import os
import subprocess
import sys

import pytest

from bnlab.errors import BnlabError
from bnlab.sweeps.store import TrialStore
from bnlab.sweeps.trial import Trial


def _record(key, status="ok", result=None):
    return {"key": key, "claim": "C00", "name": "t", "fn": "fault_trials:tiny_fit", "params": {"seed": 0},
            "data": None, "code_fingerprint": "0123456789abcdef",
            "status": status, "result": {"x": 1.0} if result is None else result,
            "error": None if status == "ok" else "RuntimeError: boom", "attempts": 1, "duration_s": 0.1}


def test_put_get_roundtrip_and_done(tmp_path):
    store = TrialStore(tmp_path / "trials")
    key = Trial("C00", "t", "fault_trials:tiny_fit", {"seed": 0}).key()
    assert store.get(key) is None and not store.done(key)
    store.put(_record(key, result={"loss": float("nan"), "curve": [1.0, float("inf")]}))
    got = store.get(key)
    assert got["status"] == "ok" and got["params"] == {"seed": 0}
    assert got["result"]["curve"][1] == float("inf")
    assert store.done(key)
    assert list(store.keys()) == [key]
    assert sorted(os.listdir(tmp_path / "trials")) == [".locks", f"{key}.json"]


def test_failed_record_is_not_done(tmp_path):
    store = TrialStore(tmp_path)
    store.put(_record("abc", status="failed", result=None) | {"result": None})
    assert store.get("abc")["status"] == "failed"
    assert not store.done("abc")


@pytest.mark.parametrize("content", ["", '{"key": "abc", "status": "ok"', "not json", '{"key": "abc"}', "[1, 2]",
                                     '{"key": "other", "claim": "", "name": "", "fn": "", "params": {}, '
                                     '"status": "ok", "result": {}, "error": null, "attempts": 1, '
                                     '"duration_s": 0}'])
def test_corrupt_or_foreign_file_counts_as_absent(tmp_path, content):
    store = TrialStore(tmp_path)
    (tmp_path / "abc.json").write_text(content)
    assert store.get("abc") is None
    assert not store.done("abc")


def test_bad_records_and_keys_are_rejected(tmp_path):
    store = TrialStore(tmp_path)
    with pytest.raises(BnlabError, match="not a trial record"):
        store.put({"key": "abc", "status": "ok"})
    with pytest.raises(BnlabError, match="not a trial record"):
        store.put(_record("abc", status="weird"))
    with pytest.raises(BnlabError, match="invalid trial key"):
        store.get("../escape")


def test_store_folder_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(BnlabError, match="is a file"):
        TrialStore(tmp_path / "f")


def test_claim_is_exclusive_across_processes_and_released_on_death(tmp_path):
    store = TrialStore(tmp_path)
    lock = store.claim("abc")
    assert lock is not None
    assert store.claim("abc") is None  # a second holder, even in this process, is refused
    code = ("import sys; from bnlab.sweeps.store import TrialStore; "
            "sys.exit(0 if TrialStore(sys.argv[1]).claim('abc') is None else 1)")
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 0
    lock.release()
    assert store.claim("abc") is not None  # released: free again
    # a holder that is SIGKILLed frees the lock
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from bnlab.sweeps.store import TrialStore; "
                               "l = TrialStore(sys.argv[1]).claim('xyz'); print('held', flush=True); "
                               "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert store.claim("xyz") is None
    holder.kill()
    holder.wait()
    assert store.claim("xyz") is not None


def test_records_are_plain_json(tmp_path):
    store = TrialStore(tmp_path)
    store.put(_record("k1"))
    assert json.loads((tmp_path / "k1.json").read_text())["key"] == "k1"


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    old = tmp_path / ".abc.json.x1y2.tmp"
    fresh = tmp_path / ".abd.json.z3w4.tmp"
    other = tmp_path / "notes.tmp"
    for p in (old, fresh, other):
        p.write_text("{")
    os.utime(old, (0, 0))
    os.utime(other, (0, 0))
    store = TrialStore(tmp_path)
    assert not old.exists() and fresh.exists() and other.exists()
    assert store.get("abc") is None


def _old_store_accepts(record, key):
    """The check the store made before checksums (outer fields only): what a damaged record used to pass."""
    fields = ("key", "claim", "name", "fn", "params", "data", "code_fingerprint", "status", "result", "error",
              "attempts", "duration_s")
    return (isinstance(record, dict) and all(f in record for f in fields) and record["key"] == key
            and record["status"] in ("ok", "failed")
            and (record["status"] != "ok" or isinstance(record["result"], dict)))


@pytest.mark.parametrize("damage", ["empty-result", "flipped-digit", "no-checksum", "list-result", "deep"])
def test_a_damaged_record_is_reported_and_never_reused(tmp_path, damage):
    lines = []
    store = TrialStore(tmp_path, warn=lines.append)
    store.put(_record("abc", result={"acc": 0.9125, "curve": [0.5, 0.75]}))
    path = tmp_path / "abc.json"
    record = json.loads(path.read_text())
    if damage == "empty-result":
        record["result"] = {}
    elif damage == "flipped-digit":
        record["result"]["acc"] = 0.9126
    elif damage == "no-checksum":
        del record["checksum"]
    elif damage == "list-result":
        record["result"] = [0.9125]
    text = json.dumps(record) if damage != "deep" else '{"key": "abc", "result": ' + "[" * 50_000 + "]" * 50_000 + "}"
    path.write_text(text)
    if damage in ("empty-result", "flipped-digit", "no-checksum"):
        assert _old_store_accepts(record, "abc")  # the control: the old check reused exactly this record
    assert store.get("abc") is None and not store.done("abc") and list(store.keys()) == []
    assert len(lines) == 1 and lines[0].startswith(f"warning: trial record {path} is damaged (")
    assert "recomputing it" in lines[0]
    store.get("abc")
    assert len(lines) == 1  # said once, not on every look
    store.put(_record("abc", result={"acc": 0.9125, "curve": [0.5, 0.75]}))  # the recomputed record replaces it
    assert store.get("abc")["result"]["acc"] == 0.9125 and store.rejected == {}


def test_put_refuses_an_empty_result_and_the_executor_records_it_as_failed(tmp_path):
    store = TrialStore(tmp_path)
    with pytest.raises(BnlabError, match="empty result"):
        store.put(_record("abc", result={}))
    from bnlab.sweeps import get_executor

    trial = Trial("C00", "t", "fault_trials:returns", {"value": {}})
    records = get_executor("local", retries=0).run([trial], store)
    assert records[trial.key()]["status"] == "failed" and "empty result" in records[trial.key()]["error"]
