"""Output folders: the one "can I write there" check, and the owner marker that keeps a command from writing over
files it did not write.

`check_out_folder(out)` — before anything is written: refuses an `out` that is a file, lies below a file, is a
dangling symbolic link, or whose nearest existing folder cannot be written. Writability is tried with a real,
anonymous temporary file (`tempfile.TemporaryFile`, unlinked at once), because `os.access` says yes to root
everywhere, even on a read-only mount.

`claim_out_folder(out, command, force)` — the folder a command writes belongs to that command: it holds a marker,
``.bnlab-owner`` (JSON: ``{"command": "audit", "bnlab": "<version>"}``). A folder that is not empty and holds no
marker of `command` (nor of one the command may share it with, e.g. `bnlab report` in an audit folder) is refused
with a one-line `BnlabError`, unless ``force=True`` (``--force``), which takes it over on purpose. Folders written
before markers existed are recognised by `LEGACY` (the files that command writes, and only those) and are marked
on their first rerun, so an older audit or study still resumes.

Side effects: `claim_out_folder` creates the folder and writes the marker (atomically, mode from the umask).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bnlab.atomic import write_json
from bnlab.errors import BnlabError
from bnlab.jsonio import read_json

OWNER_FILE = ".bnlab-owner"

# command -> (files that show an unmarked folder is its output, every name that command writes there or None
# when the command's file names vary: landscape's plane_<net>_<mode>.npz, a train run's tracker folders)
LEGACY: dict[str, tuple[frozenset[str], frozenset[str] | None]] = {
    "audit": (frozenset({"trials"}), frozenset({"trials", "results.json", "report.html", "report.md", "figures"})),
    "study": (frozenset({"trials"}),
              frozenset({"trials", "nets", "weights", "results.json", "report.html", "report.md", "figures"})),
    "sweep": (frozenset({"sweep.json"}), frozenset({"sweep.json", "results.json", "trials"})),
    "train": (frozenset({"config.json"}), None),
    "landscape": (frozenset({"landscape_config.json"}), None),
    "hessian": (frozenset({"hessian.json"}), frozenset({"hessian.json", "density.png", "density.svg"})),
    "sharpness": (frozenset({"sharpness.json"}), frozenset({"sharpness.json", "sharpness.png", "sharpness.svg"})),
}


def check_out_folder(out: str | os.PathLike, what: str = "output folder") -> Path:
    """`out` as a Path when a command can write there; BnlabError naming the problem otherwise. Creates nothing
    visible (the write test is an anonymous file in the nearest existing folder)."""
    path = Path(out).expanduser()
    if path.is_symlink() and not path.exists():
        raise BnlabError(f"{what} {str(path)!r} is a dangling symbolic link (to {os.readlink(path)!r})")
    if path.exists() and not path.is_dir():
        raise BnlabError(f"{what} {str(path)!r} is a file, not a folder")
    probe = path
    while not probe.exists() and probe.parent != probe:
        if probe.is_symlink():
            raise BnlabError(f"{what} {str(path)!r} lies below a dangling symbolic link ({str(probe)!r})")
        probe = probe.parent
    if not probe.is_dir():
        raise BnlabError(f"{what} {str(path)!r} is inside {str(probe)!r}, which is a file")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise BnlabError(f"{what} {str(path)!r} is not writable ({str(probe)!r}: {exc.strerror or exc})") from None
    return path


def folder_owner(folder: str | os.PathLike) -> str | None:
    """The command named by `folder`'s marker; None when there is none or it is unreadable."""
    try:
        owner = read_json(Path(folder) / OWNER_FILE, max_bytes=4096)
    except (OSError, ValueError):
        return None
    command = owner.get("command") if isinstance(owner, dict) else None
    return command if isinstance(command, str) else None


def _legacy(command: str, names: set[str]) -> bool:
    signature, own = LEGACY.get(command, (frozenset(), frozenset()))
    return bool(signature) and signature <= names and (own is None or names <= own)


def check_owner(out: str | os.PathLike, command: str, *, force: bool = False,
                shares: tuple[str, ...] = ()) -> Path:
    """`check_out_folder`, then refuse `out` when it holds files `command` did not write (see the module docstring;
    `shares`: other owners whose folders `command` may write into). Writes nothing: a command whose work is long
    calls this first and `claim_out_folder` when it writes."""
    path = check_out_folder(out)
    if path.is_dir():
        names = {p.name for p in path.iterdir()} - {OWNER_FILE}
        owner = folder_owner(path)
        ours = owner == command or owner in shares or (owner is None and _legacy(command, names))
        if names and not ours and not force:
            held = f"the output of `bnlab {owner}`" if owner else "files bnlab did not write"
            raise BnlabError(f"output folder {str(path)!r} holds {held}; choose another folder, or pass --force "
                             "to write over it")
    return path


def claim_out_folder(out: str | os.PathLike, command: str, *, force: bool = False,
                     shares: tuple[str, ...] = ()) -> Path:
    """`check_owner`, then create the folder and mark it as `command`'s (a folder of a `shares` owner keeps its
    owner's marker)."""
    path = check_owner(out, command, force=force, shares=shares)
    if path.is_dir() and folder_owner(path) in shares:
        return path  # e.g. `bnlab report` into an audit folder: it stays the audit's
    path.mkdir(parents=True, exist_ok=True)  # an OSError here (a full disk) is the CLI's one-line exit 74
    if folder_owner(path) != command:
        from bnlab.version import __version__

        write_json(path / OWNER_FILE, {"command": command, "bnlab": __version__})
    return path
