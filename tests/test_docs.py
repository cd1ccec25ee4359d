"""The documentation site: it builds with --strict (a broken link, anchor or API reference fails), and its pages
open in headless Chromium with no console error and no request beyond the site's own files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build(site: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "BNLAB_TUTORIAL_STEPS": "30"}  # the tutorials run in the build
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One strict build (≈ 2.5 min on 2 cores: the tutorials execute in it) for every test of the site."""
    site = tmp_path_factory.mktemp("docs") / "site"
    build(site)
    return site


@pytest.mark.slow  # ~2.5 min: the build executes every tutorial (the edge-of-stability one trains 4 nets)
def test_site_builds_strictly_with_the_api_reference(site: Path) -> None:
    pages = {p.name for p in site.glob("*.html")}
    assert {"index.html", "audit.html", "protocol.html", "commands.html", "api.html"} <= pages
    for name in ("bn_from_scratch", "curvature_and_bn_mode", "landscape_with_and_without_bn",
                 "santurkar_probes_on_your_model", "edge_of_stability_with_and_without_bn"):
        # executed in the build: the pages carry the cells' outputs
        html = (site / "tutorials" / f"{name}.html").read_text()
        assert html.count("jp-OutputArea-output") >= 2, name
    for name in ("landscape_with_and_without_bn", "edge_of_stability_with_and_without_bn"):  # figures shown inline
        assert "data:image/png;base64" in (site / "tutorials" / f"{name}.html").read_text(), name
    api = (site / "api.html").read_text()
    assert "reference_normalise" in api and "minimum_detectable_effect" in api  # mkdocstrings rendered the code
    for page in site.glob("*.html"):
        text = page.read_text()
        assert "unpkg.com" not in text and "fonts.googleapis" not in text, page.name


@pytest.mark.slow
def test_pages_open_offline_without_console_errors(site: Path, tmp_path: Path) -> None:
    from test_report_browser import chromium, page_requests

    for name in ("index.html", "audit.html", "api.html", "claims/smoothness.html",
                 "tutorials/landscape_with_and_without_bn.html"):
        netlog = tmp_path / f"{name.replace('/', '_')}.netlog.json"
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


def test_claim_pages_cover_every_claim_from_the_audit_in_measured_json() -> None:
    """docs/claims/*.md are written by docs/claims/generate.py from the same default audit that wrote
    measured.json: a newer audit without regenerated pages (or a page pointing at a missing figure) fails here."""
    import re

    from bnlab.experiments.base import CLAIM_IDS

    measured = json.loads((ROOT / "src" / "bnlab" / "experiments" / "measured.json").read_text())
    commits = {entry["audit"]["git_commit"][:7] for entry in measured.values()}
    assert len(commits) == 1
    pages = sorted((ROOT / "docs" / "claims").glob("*.md"))
    seen: list[str] = []
    for page in pages:
        text = page.read_text()
        assert f"at commit {next(iter(commits))}" in text, page.name
        seen += re.findall(r"^## (C\d\d) · ", text, re.M)
        for image in re.findall(r"\]\((img/[^)]+)\)", text):
            assert (page.parent / image).is_file(), f"{page.name}: {image}"
        for reading in re.findall(r'--8<-- "([^"]+)"', text):
            assert (ROOT / reading).is_file(), f"{page.name}: {reading}"
    assert sorted(seen) == sorted(CLAIM_IDS)
    nav = (ROOT / "mkdocs.yml").read_text()
    assert all(f"claims/{p.name}" in nav for p in pages)


def test_the_readme_and_the_audit_page_show_the_same_verdict_table() -> None:
    def rows(text: str) -> list[str]:
        return [line for line in text.splitlines() if re.match(r"\| C\d\d ", line)]

    readme, audit = (ROOT / "README.md").read_text(), (ROOT / "docs" / "audit.md").read_text()
    assert len(rows(readme)) == 14 and rows(readme) == rows(audit)
