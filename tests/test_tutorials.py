"""The tutorials under docs/tutorials: each is a page of the documentation site, and the site's build executes it
as a notebook (mkdocs-jupyter, an error in any cell fails the build: tests/test_docs.py, at a small training
budget), so each runs once per `make test`. Here: every tutorial is a page of the site."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))


def test_every_tutorial_is_a_page_of_the_site() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    assert len(TUTORIALS) >= 4
    assert all(f"tutorials/{p.name}" in nav for p in TUTORIALS)

