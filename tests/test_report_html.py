"""The HTML and Markdown reports: escaping, self-containment, content, re-rendering from results.json."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from bnlab.errors import BnlabError
from bnlab.experiments.base import CLAIM_IDS
from bnlab.report.build import load_results, write_report
from bnlab.report.markdown import escape
from bnlab.report.numbers import format_key_number, format_number, metric_rows

EVIL = "<script>alert(1)</script>"


def results_with(title: str = EVIL) -> dict:
    """A results.json mapping with a user-controlled string in every free-text field."""
    claims = []
    for cid in CLAIM_IDS:
        claims.append({"id": cid, "title": f"claim {cid}", "verdict": "not_measured", "rule": "", "summary": "",
                       "method": "", "key_number": None, "metrics": {}, "figures": [], "caveats": [],
                       "config_hash": None})
    claims[6] = {
        "id": "C07", "title": title, "verdict": "refuted", "rule": f"rule {EVIL}", "summary": f"summary {EVIL}",
        "method": f"method {EVIL}",
        "key_number": {"name": f"k{EVIL}", "value": -0.25, "ci_low": -0.4, "ci_high": -0.1, "unit": EVIL},
        "metrics": {EVIL: 1.5, "run": {"model": EVIL, "curve": list(range(100))}},
        "figures": [{"id": "lr", "kind": "lines", "title": f"fig {EVIL}", "caption": f"cap {EVIL}",
                     "file": "figures/C07-lr.svg",
                     "data": {"panels": [{"title": EVIL, "xlabel": "lr", "ylabel": "acc", "series": [
                         {"label": f"BN {EVIL}", "x": [0.01, 0.1], "y": [0.9, 0.8]}]}]}},
                    {"id": "broken", "kind": "lines", "title": "broken fig", "caption": "",
                     "file": "figures/C07-broken.svg", "data": {"panels": []}}],
        "caveats": [f"caveat {EVIL}"], "config_hash": "abc123",
        "about": {"statement": "BN(αWx) = BN(Wx)", "how_tested": f"tested {EVIL}", "reference": "Ioffe Sec. 3.3",
                  "references": ["Santurkar et al. 2018. arXiv:1805.11604"]},
    }
    return {"scale": "smoke", "seeds": 2, "duration_s": 3.5, "created": "2026-01-01T00:00:00+00:00",
            "executor": "local", "versions": {"python": "3.11", "torch": EVIL},
            "git_commit": f"deadbeef{EVIL}", "git_dirty": True, "claims": claims}


def test_user_strings_render_as_text_never_as_markup(tmp_path: Path) -> None:
    files = write_report(tmp_path, results_with())
    html = files.html.read_text()
    assert "<script" not in html.lower()  # no script at all: every EVIL is escaped
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10
    markdown = files.markdown.read_text()
    assert "<script" not in markdown.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown
    # and a Markdown renderer (which passes raw HTML through) turns it into text, not an element
    md = pytest.importorskip("markdown")
    rendered = md.markdown(markdown, extensions=["tables"])
    assert "<script" not in rendered.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "<table>" in rendered


def test_html_is_self_contained(tmp_path: Path) -> None:
    html = write_report(tmp_path, results_with("lr sweep")).html.read_text()
    assert "default-src 'none'" in html  # CSP: the browser refuses any request
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert attr.startswith(("data:image/svg+xml;base64,", "data:image/png;base64,", "#")), attr[:60]
    assert not re.search(r"https?://", re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", html)
                         .replace("http://www.w3.org", ""))
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_report_content(tmp_path: Path) -> None:
    files = write_report(tmp_path, results_with("lr sweep"))
    html = files.html.read_text()
    # the verdict table: every claim, a badge, a link to its section
    for cid in CLAIM_IDS:
        assert f'href="#claim-{cid}"' in html and f'id="claim-{cid}"' in html
    assert '<span class="badge refuted">refuted</span>' in html
    assert "k&lt;script&gt;alert(1)&lt;/script&gt; = -0.25" in html and "95% CI [-0.4, -0.1]" in html
    # the claim's description comes from results.json (the report imports nothing about the claims)
    assert "BN(αWx) = BN(Wx)" in html and "arXiv:1805.11604" in html and "tested &lt;script&gt;" in html
    # a figure that cannot be drawn is reported in place, the others are drawn
    assert "figure could not be drawn" in html and files.figure_errors
    assert (tmp_path / "figures" / "C07-lr.svg").is_file()
    assert "data:image/svg+xml;base64," in html
    # long lists are summarised, nested metrics flattened
    assert "run.curve" in html and "100 values" in html
    # footer: scale, seeds, versions, commit, config hash
    assert "abc123" in html and "deadbeef" in html and "with uncommitted changes" in html
    md = files.markdown.read_text()
    assert "| [C07](#claim-C07) | lr sweep | **refuted** |" in md
    assert "![fig" in md and "(figures/C07-lr.svg)" in md


def test_rerender_from_results_json_alone(tmp_path: Path) -> None:
    results = results_with("lr sweep")
    (tmp_path / "results.json").write_text(json.dumps(results))
    first = write_report(tmp_path)
    html1 = first.html.read_text()
    second = write_report(tmp_path)
    assert second.html.read_text() == html1  # deterministic
    assert json.loads((tmp_path / "results.json").read_text()) == results  # never rewritten by the report


def test_crafted_figure_file_names_cannot_escape_the_folder(tmp_path: Path) -> None:
    results = results_with("x")
    results["claims"][6]["figures"][0]["file"] = "../../outside.svg"
    results["claims"][6]["id"] = "C07/../.."
    files = write_report(tmp_path / "out", copy.deepcopy(results))
    assert not (tmp_path / "outside.svg").exists()
    assert all(p.parent == tmp_path / "out" / "figures" for p in files.figures)


@pytest.mark.parametrize("content, message", [
    (None, "no results.json"),
    ("{not json", "cannot read"),
    ("[1, 2]", "not a bnlab audit result"),
    ('{"claims": [{"id": "C01"}]}', "needs an 'id' and a 'verdict'"),
])
def test_load_results_errors(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(BnlabError, match=message):
        load_results(tmp_path)


def test_number_formatting() -> None:
    assert format_number(None) == "—" and format_number(float("nan")) == "NaN"
    assert format_number(float("inf")) == "∞" and format_number(-float("inf")) == "−∞"
    assert format_number(0.123456) == "0.1235" and format_number(12345678.0) == "1.235e+07"
    assert format_number(3) == "3" and format_number(True) == "true"
    assert format_key_number({"name": "Δ", "value": 1.0, "ci_low": 0.5, "ci_high": 1.5, "unit": "%"}) == (
        "Δ = 1 %", "95% CI [0.5, 1.5]")
    assert format_key_number({"name": "Δ", "value": 1.0, "ci_low": None, "ci_high": None}) == ("Δ = 1", "")
    assert format_key_number(None) == ("—", "")
    rows = dict(metric_rows({"a": {"b": [1, 2]}, "c": "text", "d": [{"x": 1}], "e": list(range(20))}))
    assert rows == {"a.b": "[1, 2]", "c": "text", "d": "1 entries",
                    "e": "20 values (first 0, last 19, min 0, max 19)"}


def test_numbers_say_what_each_number_is() -> None:
    """The parts every claim shares are named for what their numbers are, not by a bare dotted path."""
    rows = dict(metric_rows({"primary": {"all": [0.1, 0.2], "vgg": [1.0]},
                             "secondary": {"gap": {"values": [0.3], "unit": "accuracy", "note": "n"}},
                             "checks": {"invariance.grad": [0.5]}, "n_test": 10}))
    assert rows == {"primary endpoint: per-seed values, in seed order": "[0.1, 0.2]",
                    "primary endpoint [vgg]: per-seed values, in seed order": "[1]",
                    "secondary, gap: per-seed values (accuracy)": "[0.3]",
                    "verification, invariance.grad: error ÷ tolerance per case (< 1 passes)": "[0.5]",
                    "n_test": "10"}


def test_markdown_escape() -> None:
    assert escape("a|b *c* [d](e) <i>") == "a\\|b \\*c\\* \\[d\\](e) &lt;i&gt;"
    assert escape("# not a heading") == "\\# not a heading"
    assert escape("12. not a list") == "12\\. not a list"
    assert escape("- not a bullet, 1.5 stays") == "\\- not a bullet, 1.5 stays"
    assert escape("two\nlines") == "two lines"


def test_a_figure_is_redrawn_only_when_its_spec_code_or_file_changed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from bnlab.report import build

    drawn: list[str] = []
    real = build.render_figure

    def counting(spec, fmt=None):
        drawn.append(spec["id"])
        return real(spec, fmt)

    monkeypatch.setattr(build, "render_figure", counting)
    results = results_with("plain title")
    first = write_report(tmp_path, results)
    assert drawn == ["lr", "broken"] and len(first.figures) == 1 and len(first.figure_errors) == 1
    svg = (tmp_path / "figures" / "C07-lr.svg").read_bytes()
    html = first.html.read_text()
    drawn.clear()
    write_report(tmp_path, results)  # unchanged: nothing drawn (the broken spec is retried), same report
    assert drawn == ["broken"] and first.html.read_text() == html
    assert (tmp_path / "figures" / "C07-lr.svg").read_bytes() == svg
    changed = copy.deepcopy(results)
    changed["claims"][6]["figures"][0]["data"]["panels"][0]["series"][0]["y"] = [0.9, 0.7]  # other data
    drawn.clear()
    write_report(tmp_path, changed)
    assert drawn == ["lr", "broken"] and (tmp_path / "figures" / "C07-lr.svg").read_bytes() != svg
    drawn.clear()
    (tmp_path / "figures" / "C07-lr.svg").write_bytes(b"<svg>tampered</svg>")  # an edited file is redrawn
    write_report(tmp_path, changed)
    assert drawn == ["lr", "broken"] and b"tampered" not in (tmp_path / "figures" / "C07-lr.svg").read_bytes()
    drawn.clear()
    (tmp_path / "figures" / "C07-lr.svg").unlink()  # so is a deleted one
    write_report(tmp_path, changed)
    assert drawn == ["lr", "broken"] and (tmp_path / "figures" / "C07-lr.svg").is_file()
    drawn.clear()
    monkeypatch.setattr(build, "_code_hash", lambda: "other drawing code")  # and every figure after a code change
    write_report(tmp_path, changed)
    assert drawn == ["lr", "broken"]
    (tmp_path / "figures" / "drawn.json").write_text("{not json")  # a broken record: everything drawn
    drawn.clear()
    write_report(tmp_path, changed)
    assert drawn == ["lr", "broken"]


def test_a_smoke_report_says_its_verdicts_are_a_plumbing_check_and_shows_what_ran(tmp_path: Path) -> None:
    from bnlab.report.terminal import verdict_table
    from bnlab.report.view import PLUMBING_NOTE

    results = results_with("lr sweep")
    results["claims"][6]["protocol"] = {"endpoint": {"name": "d", "measure": "m", "test": "t", "threshold": 0.0},
                                        "runs": "DEFAULT-SCALE RUNS"}
    results["claims"][6]["method"] = "SMOKE RUNS"
    files = write_report(tmp_path / "smoke", results)
    html, markdown = files.html.read_text(), files.markdown.read_text()
    assert PLUMBING_NOTE.split(":")[0] in html and "plumbing check" in markdown
    assert html.count("a plumbing check, not evidence") >= len(CLAIM_IDS)  # beside every claim's verdict
    assert "what ran (smoke scale)</td><td>SMOKE RUNS" in html
    assert "what runs at the default scale</td><td>DEFAULT-SCALE RUNS" in html
    assert "What ran (smoke scale): SMOKE RUNS" in markdown
    assert verdict_table(results).splitlines()[-1] == PLUMBING_NOTE
    results["scale"] = "default"
    files = write_report(tmp_path / "default", results)
    html = files.html.read_text()
    assert "plumbing" not in html and "plumbing" not in verdict_table(results)
    assert "what ran (default scale)</td><td>SMOKE RUNS" in html and "DEFAULT-SCALE RUNS" not in html


def test_a_rank_tested_result_shows_its_open_interval_and_its_test() -> None:
    """A diverged run (+inf) leaves the Hodges–Lehmann interval open above: shown as such, never as "no CI"."""
    from bnlab.report.numbers import format_result

    main, detail = format_result({"name": "log ratio [dln]", "effect": 2.7, "ci_low": 2.25, "ci_high": None,
                                  "n_seeds": 8, "mde": 0.5, "test": "signed_rank", "unit": "log ratio"})
    assert main == "log ratio [dln] = 2.7 log ratio"
    assert detail.startswith("95% CI [2.25, +∞) · signed-rank, Hodges–Lehmann effect · 8 seeds")
    _, tost_detail = format_result({"name": "x", "effect": 0.0, "ci_low": -0.1, "ci_high": 0.1, "n_seeds": 8,
                                    "test": "rank_tost"})
    assert tost_detail.startswith("90% CI [-0.1, 0.1]")
    _, t_detail = format_result({"name": "x", "effect": 0.3, "ci_low": 0.1, "ci_high": None, "test": "t"})
    assert "CI" not in t_detail
