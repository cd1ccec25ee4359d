"""The HTML report in a real browser (Debian's headless Chromium): it renders, escapes, and requests nothing.

Slow (a browser start is seconds). `.ci/run` installs chromium; without it these tests fail rather than skip, so a
CI machine that lost its browser is noticed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import audit_fakes
from bnlab.experiments.audit import run_audit
from bnlab.report.build import write_report

pytestmark = pytest.mark.slow

EVIL = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
             "--disable-extensions", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args, url], capture_output=True, text=True, timeout=120)


def page_requests(netlog: Path) -> list[str]:
    """URLs of every request a *page* started, from a Chromium net log.

    A URL_REQUEST_START_JOB's ``initiator`` is the requesting document's origin ("null" for a file:// page);
    the browser's own background traffic (component updates, sign-in, time sync: Chromium makes some whatever the
    flags) has the initiator "not an origin" and is not the page's doing.
    """
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"]
            if e["type"] == start_job and "url" in e.get("params", {})
            and e["params"].get("initiator") != "not an origin"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real audit folder (fake claims, real figures), with a hostile title put into results.json."""
    mp = pytest.MonkeyPatch()
    audit_fakes.install(mp)
    mp.setattr("bnlab.sweeps.trial.code_fingerprint", lambda fn: "pinned")
    try:
        out = tmp_path_factory.mktemp("audit")
        run_audit("smoke", 2, None, out, "local", log=None)
    finally:
        mp.undo()
    results = json.loads((out / "results.json").read_text())
    results["claims"][6]["title"] = EVIL
    results["claims"][6]["caveats"].append(f"run named {EVIL}")
    (out / "results.json").write_text(json.dumps(results))
    write_report(out)
    return out / "report.html"


def test_report_renders_with_the_verdict_table(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    proc = chromium(tmp_path, report.as_uri(), f"--screenshot={shot}", "--window-size=1280,1800")
    assert shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1280, 1800)
    assert len(set(image.get_flattened_data())) > 20  # not a blank page: text, badges, figures
    dom = chromium(tmp_path, report.as_uri(), "--dump-dom").stdout
    assert '<table class="verdicts">' in dom
    assert dom.count('<span class="badge supported">supported</span>') >= 1
    assert dom.count('<span class="badge not_measured">not measured</span>') >= 11
    # the hostile title is text in the DOM, never an element
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert dom.count('<img src="data:image/svg+xml;base64,') == 2  # the fake C07's two figures


def test_report_makes_no_network_request(report: Path, tmp_path: Path) -> None:
    netlog = tmp_path / "net.json"
    chromium(tmp_path, report.as_uri(), f"--log-net-log={netlog}", "--dump-dom")
    assert netlog.stat().st_size > 1000  # the log was written
    assert page_requests(netlog) == []


def test_network_check_detects_a_request(tmp_path: Path) -> None:
    """Control: the same check on a page that does fetch something must see it (the check can fail)."""
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>')
    netlog = tmp_path / "net.json"
    chromium(tmp_path, page.as_uri(), f"--log-net-log={netlog}", "--dump-dom")
    assert page_requests(netlog) == ["http://127.0.0.1:9/pixel.png"]
