import json
import os

import numpy as np
import pytest

from bnlab.atomic import write_json, write_text


def test_write_json_roundtrip_and_no_temp_left(tmp_path):
    path = write_json(tmp_path / "sub" / "r.json", {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
    assert os.listdir(path.parent) == ["r.json"]


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "r.json"
    write_text(target, "old")
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """The rename is made durable: the file's fsync comes before the rename, the folder's after it."""
    import bnlab.atomic as atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_text(tmp_path / "r.txt", "x")
    assert events == ["fsync-file", "rename", "fsync-folder"]
    assert atomic.fsync_folder(tmp_path) is True
    assert atomic.fsync_folder(tmp_path / "missing") is False


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_take_their_mode_from_the_umask(tmp_path, umask):
    import stat
    import tempfile

    old = os.umask(umask)
    try:
        fd, control = tempfile.mkstemp(dir=tmp_path)  # the failure mode: mkstemp is 0600 whatever the umask
        os.close(fd)
        path = write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
