"""bnlab.folders: the one writable-folder check and the owner marker (a command refuses a folder it did not write)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bnlab.errors import BnlabError
from bnlab.folders import OWNER_FILE, check_out_folder, check_owner, claim_out_folder, folder_owner


def test_check_refuses_files_dangling_links_and_creates_nothing(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(BnlabError, match="is a file"):
        check_out_folder(file)
    with pytest.raises(BnlabError, match="which is a file"):
        check_out_folder(file / "a" / "b")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(FileExistsError):  # the failure mode the check replaces: mkdir on a dangling link
        link.mkdir(parents=True, exist_ok=True)
    with pytest.raises(BnlabError, match="dangling symbolic link"):
        check_out_folder(link)
    with pytest.raises(BnlabError, match="below a dangling symbolic link"):
        check_out_folder(link / "sub")
    with pytest.raises(BnlabError, match="not writable"):
        check_out_folder("/proc/bnlab-folder-test")
    assert check_out_folder(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "link"]


def test_a_folder_belongs_to_the_command_that_wrote_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert claim_out_folder(out, "audit") == out
    assert folder_owner(out) == "audit" and json.loads((out / OWNER_FILE).read_text())["command"] == "audit"
    (out / "results.json").write_text("{}")
    claim_out_folder(out, "audit")  # its own folder: fine
    with pytest.raises(BnlabError, match="the output of `bnlab audit`.*--force"):
        claim_out_folder(out, "sweep")
    claim_out_folder(out, "report", shares=("audit",))  # report renders into an audit folder, which stays the audit's
    assert folder_owner(out) == "audit"
    claim_out_folder(out, "sweep", force=True)
    assert folder_owner(out) == "sweep"


def test_foreign_files_are_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "results.json").write_text("their results")
    (out / "report.html").write_text("their report")
    for command in ("audit", "sweep", "study", "train", "hessian", "landscape", "sharpness"):
        with pytest.raises(BnlabError, match="files bnlab did not write"):
            check_owner(out, command)
    assert (out / "results.json").read_text() == "their results" and not (out / OWNER_FILE).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_out_folder(empty, "train")  # an empty folder is anyone's


def test_folders_written_before_markers_are_recognised(tmp_path: Path) -> None:
    old = tmp_path / "old_audit"
    (old / "trials").mkdir(parents=True)
    (old / "results.json").write_text("{}")
    claim_out_folder(old, "audit")
    assert folder_owner(old) == "audit"
    sweep = tmp_path / "old_sweep"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    with pytest.raises(BnlabError):
        check_owner(sweep, "audit")  # a sweep's folder is not an audit's
    claim_out_folder(sweep, "sweep")
    (tmp_path / "bad_marker").mkdir()
    (tmp_path / "bad_marker" / OWNER_FILE).write_text("[" * 10_000)  # a damaged marker is no marker
    (tmp_path / "bad_marker" / "x").write_text("")
    assert folder_owner(tmp_path / "bad_marker") is None
    with pytest.raises(BnlabError):
        check_owner(tmp_path / "bad_marker", "audit")
    assert os.access(tmp_path / "bad_marker", os.W_OK)
