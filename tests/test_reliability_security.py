"""Security: no code runs from a file bnlab reads, no user string is evaluated, the HTML report shows every
user-provided string as text, and nothing listens on the network.

* Source checks (AST over src/bnlab): every ``torch.load`` passes ``weights_only=True``; no ``pickle.load(s)`` other
  than the CIFAR-10 reader's allow-list unpickler; no ``np.load(allow_pickle=True)``; no ``eval`` / ``exec`` /
  ``compile`` / ``__import__``; trial functions resolve only inside the bnlab package. Each check has a control
  showing it fires on a bad line.
* Behaviour: a pickle bomb as a checkpoint or as a CIFAR-10 batch is refused and its payload never runs.
* The report: `<script>alert(1)</script>` put into every string of a real results.json (titles, run/model names,
  series labels, captions, metrics, caveats, versions) comes out escaped in report.html, in the SVG figures embedded
  in it and in report.md; in headless Chromium (engineer C's helper) the DOM holds it as text and no <script>.
* Network: while a smoke audit runs with the process executor, no process of the audit listens on a TCP/UDP socket
  bound to anything but loopback (/proc/net/{tcp,tcp6,udp,udp6} matched to the processes' socket inodes).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import bnlab
from bnlab.errors import BnlabError

SRC = Path(bnlab.__file__).parent
EVIL = "<script>alert(1)</script>"


# ------------------------------------------------------------------------------------------------ source checks


def unsafe_calls(source: str) -> list[str]:
    """Calls in `source` that could run code from data or from a user string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func, text = node.func, ast.unparse(node)
        kw = {k.arg: k.value for k in node.keywords}
        if isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile", "__import__"):
            found.append(text)
        elif isinstance(func, ast.Attribute):
            owner = ast.unparse(func.value)
            if func.attr == "load" and owner == "torch":
                flag = kw.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(text)
            elif func.attr in ("load", "loads") and owner in ("pickle", "dill", "cloudpickle", "marshal", "yaml"):
                found.append(text)
            elif func.attr == "load" and owner in ("np", "numpy"):
                flag = kw.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    found.append(text)
            elif func.attr in ("eval", "exec") and owner == "builtins":
                found.append(text)
    return found


def test_source_has_no_unsafe_loads_or_evals() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        calls = unsafe_calls(path.read_text())
        if calls:
            offenders[str(path.relative_to(SRC))] = calls
    assert offenders == {}


def test_every_torch_load_in_src_is_found_and_safe() -> None:
    """The check above is not vacuous: src/ does load checkpoints, always with weights_only=True."""
    loads = [p for p in SRC.rglob("*.py") if "torch.load(" in p.read_text()]
    assert loads, "expected at least one torch.load in src/"
    for path in loads:
        for line in path.read_text().splitlines():
            if "torch.load(" in line and not line.lstrip().startswith(("#", '"', "`")) and "``" not in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


@pytest.mark.parametrize("line", [
    "torch.load(path)",
    "torch.load(path, weights_only=False)",
    "pickle.load(handle)",
    "pickle.loads(data)",
    "np.load(path, allow_pickle=True)",
    "eval(user_text)",
    "exec(config_text)",
    "compile(text, 'x', 'exec')",
    "__import__(name)",
])
def test_the_source_check_fires(line: str) -> None:
    assert len(unsafe_calls(line)) == 1


def test_safe_lines_pass_the_source_check() -> None:
    assert unsafe_calls("torch.load(p, map_location='cpu', weights_only=True)\nnp.load(p, allow_pickle=False)\n"
                        "model.eval()\njson.loads(text)\n") == []


def test_the_only_unpickler_is_the_cifar_allow_list() -> None:
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "pickle.Unpickler" in p.read_text())
    assert users == ["data/cifar10.py"]
    text = (SRC / "data" / "cifar10.py").read_text()
    assert "def find_class" in text and "forbidden global" in text


@pytest.mark.parametrize("fn", ["os:system", "subprocess:run", "builtins:eval", "bnlabx.evil:run",
                                "bnlab.sweeps.trial:_private", "bnlab.sweeps.trial"])
def test_trial_functions_resolve_only_inside_bnlab(fn: str) -> None:
    from bnlab.sweeps.trial import resolve

    with pytest.raises(BnlabError, match="trial function must be"):
        resolve(fn)


# ------------------------------------------------------------------------------------------------ pickle bombs


class _Bomb:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_bomb_checkpoint_is_refused(tmp_path: Path) -> None:
    from bnlab.train import TrainConfig
    from bnlab.train.checkpoint import load_checkpoint

    marker = tmp_path / "PWNED"
    for name, save in (("pickle", lambda p, obj: p.write_bytes(pickle.dumps(obj))),
                       ("torch", lambda p, obj: torch.save(obj, p))):
        path = tmp_path / f"{name}.pt"
        save(path, {"format": "bnlab-checkpoint-v1", "model": _Bomb(marker)})
        with pytest.raises(BnlabError, match="cannot read checkpoint"):
            load_checkpoint(path, TrainConfig())
        assert not marker.exists()
    # control: loading the same file the unsafe way does run the payload
    torch.load(tmp_path / "torch.pt", weights_only=False)
    assert marker.exists()


def test_pickle_bomb_cifar_batch_is_refused(tmp_path: Path) -> None:
    from bnlab.data import load_dataset

    marker = tmp_path / "PWNED"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6))):
        (folder / name).write_bytes(pickle.dumps({b"data": _Bomb(marker), b"labels": [0]}))
    with pytest.raises(BnlabError, match="forbidden global"):
        load_dataset("cifar10", data_dir=folder)
    assert not marker.exists()


def test_configs_are_never_evaluated(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Strings that would run code if evaluated stay strings: a TOML value, a --model-opt value."""
    from bnlab.cli import main

    marker = tmp_path / "PWNED"
    payload = f"__import__('os').system('touch {marker}')"
    sweep = tmp_path / "evil.toml"
    sweep.write_text(f'name = "evil"\nseeds = 1\n[base]\nmodel = "{payload}"\n[axes]\nnorm = ["bn"]\n')
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "s"), "--executor", "local", "-q"]) == 2
    assert main(["train", "--dataset", "digits", "--steps", "1", "--batch-size", "8", "--model-opt",
                 f"hidden={payload}"]) == 2
    assert main(["train", "--dataset", "digits", "--steps", "1", "--batch-size", "8", "--norm", payload]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "Traceback" not in err
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ the HTML report

_STRUCTURAL = {"id", "kind", "file", "verdict", "xscale", "yscale", "zscale", "style", "anchor", "config_hash",
               "code_fingerprint", "scale", "executor", "created", "format", "fmt"}


def poison(data: Any, key: str = "") -> Any:
    """Every user-visible string (and every dict key under metrics) gets EVIL appended; structural fields stay."""
    if isinstance(data, dict):
        return {(f"{k}{EVIL}" if key == "metrics" else k): (v if k in _STRUCTURAL else poison(v, k))
                for k, v in data.items()}
    if isinstance(data, list):
        return [poison(v, key) for v in data]
    if isinstance(data, str):
        return data + EVIL
    return data


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake-claims audit whose results.json has EVIL in every user-visible string, re-rendered."""
    import audit_fakes
    from bnlab.experiments.audit import run_audit
    from bnlab.report.build import write_report

    mp = pytest.MonkeyPatch()
    audit_fakes.install(mp)
    try:
        out = tmp_path_factory.mktemp("evil") / "audit"
        run_audit("smoke", 2, None, out, "local", log=None)
    finally:
        mp.undo()
    results = json.loads((out / "results.json").read_text())
    claims = poison(results["claims"])
    poisoned = {**results, "claims": claims, "versions": poison(results["versions"]),
                "git_commit": f"{results['git_commit']}{EVIL}"}
    (out / "results.json").write_text(json.dumps(poisoned))
    shutil.rmtree(out / "figures", ignore_errors=True)
    write_report(out)
    return out


def _embedded_images(html: str) -> list[str]:
    return [base64.b64decode(m).decode("utf-8", "replace")
            for m in re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_escapes_every_user_string(evil_report: Path) -> None:
    html = (evil_report / "report.html").read_text()
    assert "<script" not in html.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert html.count(escaped) >= 20  # titles, summaries, metric names, caveats, versions, commit ...
    assert '<table class="verdicts">' in html and "badge supported" in html  # still a report with verdicts
    svgs = _embedded_images(html)
    assert svgs, "the fake C07's figures should be embedded"
    for svg in svgs:  # series labels and panel titles end up as SVG text: escaped there too
        assert "<script" not in svg.lower()
        assert "&lt;script&gt;" in svg
    markdown = (evil_report / "report.md").read_text()
    assert "<script" not in markdown.lower()


def test_poison_reaches_the_strings_that_matter(evil_report: Path) -> None:
    claims = json.loads((evil_report / "results.json").read_text())["claims"]
    c07 = next(c for c in claims if c["id"] == "C07")
    assert c07["title"].endswith(EVIL) and c07["summary"].endswith(EVIL)
    assert all(k.endswith(EVIL) for k in c07["metrics"])
    labels = [s["label"] for fig in c07["figures"] for p in fig["data"].get("panels", [])
              for s in p.get("series", [])]
    assert labels and all(label.endswith(EVIL) for label in labels)


@pytest.mark.slow
def test_evil_report_in_chromium(evil_report: Path, tmp_path: Path) -> None:
    from test_report_browser import CHROMIUM, chromium

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (.ci/run installs it)")
    dom = chromium(tmp_path, (evil_report / "report.html").as_uri(), "--dump-dom").stdout
    assert "<table" in dom  # it rendered
    assert "<script" not in dom.lower()  # no element was created from a user string
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # it is there, as text


# ------------------------------------------------------------------------------------------------ network


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def _listeners() -> list[tuple[str, str, str]]:
    """(protocol, local address hex, inode) of every listening TCP socket and every bound, unconnected UDP one."""
    out = []
    for proto, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == state:
                out.append((proto, fields[1], fields[9]))
    return out


def _is_loopback(proto: str, address: str) -> bool:
    host = address.split(":")[0]
    if proto.endswith("6"):
        return host == "00000000000000000000000001000000" or host.endswith("0100007F") and "FFFF" in host
    return host.endswith("7F")  # 127.x.x.x, little-endian hex


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def watch_listeners(proc: subprocess.Popen, timeout: float) -> tuple[list[tuple[str, str]], int]:
    """Poll until `proc` ends: the non-loopback listeners owned by it or its descendants, and how many polls."""
    seen: set[tuple[str, str]] = set()
    polls = 0
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        inodes = _socket_inodes(_descendants(proc.pid))
        for proto, address, inode in _listeners():
            if inode in inodes and not _is_loopback(proto, address):
                seen.add((proto, address))
        polls += 1
        time.sleep(0.05)
    return sorted(seen), polls


@pytest.mark.slow
def test_no_network_listener_during_a_process_audit(tmp_path: Path) -> None:
    code = ("import sys; from bnlab.cli import main; "
            f"sys.exit(main(['audit', '--scale', 'smoke', '--claims', 'C07,C11', '--out', {str(tmp_path / 'a')!r}, "
            "'--executor', 'process', '--workers', '2', '-q']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "MPLBACKEND": "Agg"}, start_new_session=True)
    try:
        found, polls = watch_listeners(proc, timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert polls >= 5  # it was watched while it ran
    assert found == [], f"the audit listened on {found}"


def test_the_listener_check_sees_a_listener() -> None:
    """Control: a child that listens on all interfaces is caught; one on loopback is not."""
    code = ("import socket, sys, time; s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(); "
            "print('up', flush=True); time.sleep(3)")
    for host, expect in (("0.0.0.0", True), ("127.0.0.1", False)):
        proc = subprocess.Popen([sys.executable, "-c", code, host], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "up"
        found, _ = watch_listeners(proc, timeout=10)
        proc.wait()
        assert bool(found) is expect, (host, found)
    assert socket.gethostname()  # the machine has a network stack at all
