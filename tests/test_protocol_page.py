"""docs/protocol.md is generated from the claim modules; the committed page must be what the code generates."""

from __future__ import annotations

import pytest

from bnlab.experiments.base import CLAIM_IDS
from bnlab.experiments.protocol_page import PROTOCOL_PAGE, render_protocol
from bnlab.experiments.registry import load_experiment


@pytest.fixture(scope="module")
def rendered() -> str:
    """The page as the code writes it (≈ 20 s: each claim's power at its seeds is simulated), once per module."""
    return render_protocol()


def test_protocol_page_is_up_to_date(rendered: str) -> None:
    assert PROTOCOL_PAGE.is_file(), "docs/protocol.md is missing: run `make protocol`"
    assert PROTOCOL_PAGE.read_text() == rendered, "docs/protocol.md is stale: run `make protocol`"


def test_every_claim_states_its_endpoint_threshold_source_and_rule(rendered: str) -> None:
    text = rendered
    for claim in CLAIM_IDS:
        module = load_experiment(claim)
        section = text.split(f"## {claim} ·", 1)[1].split("\n## ", 1)[0]
        endpoint = module.PROTOCOL.endpoint
        assert endpoint.name in section and module.RULE in section
        assert endpoint.threshold_source and endpoint.threshold_source in section
        assert module.PROTOCOL.runs and module.PROTOCOL.paper, f"{claim}: say what runs and how it differs"


def test_the_report_and_the_protocol_page_print_the_same_title_for_each_claim(rendered: str) -> None:
    """One title per claim (claims.py): the report's heading of every claim, as an audit writes its entry, is the
    protocol page's heading."""
    import re

    from bnlab.experiments.audit import _entry
    from bnlab.report.markdown import render_markdown

    results = {"scale": "smoke", "seeds": 2, "claims": [_entry(c, "not_measured", "not run") for c in CLAIM_IDS]}
    report = render_markdown(results, {})
    in_report = dict(re.findall(r"^## (C\d\d) · (.+) — not measured$", report, flags=re.M))
    on_page = dict(re.findall(r"^## (C\d\d) · (.+)$", rendered, flags=re.M))
    assert set(in_report) == set(on_page) == set(CLAIM_IDS)
    for claim in CLAIM_IDS:
        assert in_report[claim].replace("\\", "") == on_page[claim], claim
