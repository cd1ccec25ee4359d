"""Write the report files of an audit folder from its results.json: figures/, report.html, report.md.

`write_report(out)` is what `bnlab report OUT` runs and what `bnlab audit` runs after writing results.json; it reads
nothing but the results (the claims' descriptions fall back to `bnlab.experiments.claims` for results written
without them). Every file is written atomically. A figure whose spec cannot be drawn does not stop the report: its
place shows the error.

Side effects: creates ``OUT/figures/`` and (over)writes the figure files, ``OUT/report.html`` and
``OUT/report.md``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnlab.atomic import write_bytes, write_text
from bnlab.errors import BnlabError
from bnlab.report.figures import figure_filename, figure_format, render_figure
from bnlab.report.html import data_uri, render_html
from bnlab.report.markdown import render_markdown

RESULTS_FILE = "results.json"
_FIGURE_FILE = re.compile(r"^figures/[A-Za-z0-9_-]+\.(svg|png)$")


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    figures: tuple[Path, ...]
    figure_errors: tuple[str, ...]  # "C07/lr_sweep: <error>" for each figure that could not be drawn


def load_results(out: str | os.PathLike) -> dict[str, Any]:
    """OUT/results.json, checked to be an audit's results; BnlabError naming the problem otherwise."""
    path = Path(out) / RESULTS_FILE
    if Path(out).exists() and not Path(out).is_dir():
        raise BnlabError(f"{str(out)!r} is a file, not an audit folder")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BnlabError(f"no {RESULTS_FILE} in {str(out)!r}: run `bnlab audit --out {out}` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BnlabError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(results, dict) or not isinstance(results.get("claims"), list):
        raise BnlabError(f"{str(path)!r} is not a bnlab audit result (no 'claims' list)")
    for claim in results["claims"]:
        if not isinstance(claim, dict) or "id" not in claim or "verdict" not in claim:
            raise BnlabError(f"{str(path)!r}: every claim needs an 'id' and a 'verdict'")
    return results


def safe_figure_file(claim_id: str, figure: Mapping[str, Any], index: int) -> str:
    """The figure's recorded file name when it is a plain name under figures/, else the computed one (a crafted
    results.json cannot make the report write outside OUT/figures)."""
    file = figure.get("file")
    if isinstance(file, str) and _FIGURE_FILE.match(file) and file.endswith("." + figure_format(figure)):
        return file
    return figure_filename(re.sub(r"[^A-Za-z0-9]", "", claim_id) or "claim", figure, index)


def write_report(out: str | os.PathLike, results: Mapping[str, Any] | None = None) -> ReportFiles:
    """Draw every figure and write report.html and report.md into `out` (results read from out when None)."""
    out = Path(out)
    # a private copy: figure file names are normalised below, the caller's mapping stays as it was
    results = json.loads(json.dumps(load_results(out) if results is None else results))
    images: dict[str, Any] = {}
    written: list[Path] = []
    errors: list[str] = []
    for claim in results.get("claims", []):
        for index, figure in enumerate(claim.get("figures") or []):
            if not isinstance(figure, dict):
                continue
            file = safe_figure_file(str(claim.get("id", "")), figure, index)
            figure["file"] = file
            try:
                image = render_figure(figure)
            except Exception as exc:  # noqa: BLE001 - one bad spec must not cost the whole report
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                images[file] = RuntimeError(message)
                errors.append(f"{claim.get('id')}/{figure.get('id')}: {message}")
                continue
            written.append(write_bytes(out / file, image))
            images[file] = data_uri(image, figure_format(figure))
    html = write_text(out / "report.html", render_html(results, images))
    markdown = write_text(out / "report.md", render_markdown(results, images))
    return ReportFiles(html=html, markdown=markdown, figures=tuple(written), figure_errors=tuple(errors))
