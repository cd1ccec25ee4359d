"""The documentation site: it builds with --strict (a broken link, anchor or API reference fails), and its pages
open in headless Chromium with no console error and no request beyond the site's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build(site: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build(site)
    pages = {p.name for p in site.glob("*.html")}
    assert {"index.html", "audit.html", "protocol.html", "commands.html", "api.html"} <= pages
    api = (site / "api.html").read_text()
    assert "reference_normalise" in api and "minimum_detectable_effect" in api  # mkdocstrings rendered the code
    for page in site.glob("*.html"):
        text = page.read_text()
        assert "unpkg.com" not in text and "fonts.googleapis" not in text, page.name


@pytest.mark.slow
def test_pages_open_offline_without_console_errors(tmp_path: Path) -> None:
    from test_report_browser import chromium, page_requests

    site = tmp_path / "site"
    build(site)
    for name in ("index.html", "audit.html", "api.html"):
        netlog = tmp_path / f"{name}.netlog.json"
        proc = chromium(tmp_path, (site / name).as_uri(), f"--log-net-log={netlog}", "--enable-logging=stderr",
                        "--v=0", "--virtual-time-budget=3000", "--dump-dom")
        assert "<h1" in proc.stdout, name
        errors = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "rror" in ln)]
        assert not errors, (name, errors)
        outside = [u for u in page_requests(netlog) if not u.startswith("file://") and not u.startswith("data:")]
        assert not outside, (name, outside)
        json.loads(netlog.read_text())


@pytest.mark.slow
def test_console_check_detects_an_error(tmp_path: Path) -> None:
    from test_report_browser import chromium

    page = tmp_path / "bad.html"
    page.write_text('<html><body><h1>x</h1><script>throw new Error("boom")</script></body></html>')
    proc = chromium(tmp_path, page.as_uri(), "--enable-logging=stderr", "--v=0", "--virtual-time-budget=1000",
                    "--dump-dom")
    assert any("CONSOLE" in ln and "Uncaught" in ln for ln in proc.stderr.splitlines())
