"""Write the report files of an audit folder from its results.json: figures/, report.html, report.md.

`write_report(out)` is what `bnlab report OUT` runs and what `bnlab audit` runs after writing results.json; it reads
nothing but the results (the claims' descriptions fall back to `bnlab.experiments.claims` for results written
without them). Every file is written atomically. A figure whose spec cannot be drawn does not stop the report: its
place shows the error.

Side effects: creates ``OUT/figures/`` and (over)writes the figure files, ``OUT/report.html`` and
``OUT/report.md``. Drawing is most of a report's time (≈ 0.2 s a figure with matplotlib), so a figure is redrawn
only when it changed: ``OUT/figures/drawn.json`` records, per file, the hash of what it was drawn from (the spec
with its data, the format, matplotlib's version and the figure code's own hash) and of the bytes written; a file
whose spec, code or bytes differ from the record is drawn again, so a rerun after an edit, a tampered or deleted
figure, or another audit's results can never show a stale picture.

A file whose bytes would not change is not written again, so rendering an unchanged folder writes nothing and works
on a read-only (archived) results folder. `write_report(out, to=DIR)` (``bnlab report OUT --to DIR``) renders
into another folder instead, reusing the figures of OUT that are still valid; DIR belongs to ``report``
(`bnlab.folders.claim_out_folder`). results.json is read with size and depth limits (`bnlab.jsonio`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnlab.atomic import write_bytes
from bnlab.errors import BnlabError
from bnlab.folders import claim_out_folder
from bnlab.jsonio import read_json
from bnlab.report import figures as _figures
from bnlab.report.figures import figure_filename, figure_format, render_figure
from bnlab.report.html import data_uri, render_html
from bnlab.report.markdown import render_markdown

RESULTS_FILE = "results.json"
DRAWN_FILE = "figures/drawn.json"
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
        results = read_json(path)
    except FileNotFoundError:
        raise BnlabError(f"no {RESULTS_FILE} in {str(out)!r}: run `bnlab audit --out {out}` first") from None
    except (OSError, ValueError) as exc:  # ValueError: bad UTF-8, bad JSON, too large or too deep
        raise BnlabError(f"cannot read {str(path)!r}: {type(exc).__name__}: {str(exc)[:200]}") from None
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


def write_report(out: str | os.PathLike, results: Mapping[str, Any] | None = None,
                 to: str | os.PathLike | None = None) -> ReportFiles:
    """Draw every figure and write report.html and report.md into `to` (default `out`; results read from out when
    None). Files whose bytes are unchanged are left as they are."""
    source = Path(out)
    # a private copy: figure file names are normalised below, the caller's mapping stays as it was
    results = json.loads(json.dumps(load_results(source) if results is None else results))
    out = source if to is None else claim_out_folder(to, "report")
    images: dict[str, Any] = {}
    written: list[Path] = []
    errors: list[str] = []
    drawn = _drawn_record(source)
    for claim in results.get("claims", []):
        for index, figure in enumerate(claim.get("figures") or []):
            if not isinstance(figure, dict):
                continue
            file = safe_figure_file(str(claim.get("id", "")), figure, index)
            figure["file"] = file
            key = _drawing_key(figure)
            image = _already_drawn(source / file, drawn.get(file), key)
            if image is None:
                try:
                    image = render_figure(figure)
                except Exception as exc:  # noqa: BLE001 - one bad spec must not cost the whole report
                    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    images[file] = RuntimeError(message)
                    errors.append(f"{claim.get('id')}/{figure.get('id')}: {message}")
                    drawn.pop(file, None)
                    continue
                drawn[file] = {"key": key, "bytes": hashlib.sha256(image).hexdigest()}
            _write_if_changed(out / file, image)
            written.append(out / file)
            images[file] = data_uri(image, figure_format(figure))
    if written or drawn:
        _write_if_changed(out / DRAWN_FILE, (json.dumps(drawn, indent=1, sort_keys=True) + "\n").encode())
    html = _write_if_changed(out / "report.html", render_html(results, images).encode("utf-8"))
    markdown = _write_if_changed(out / "report.md", render_markdown(results, images).encode("utf-8"))
    return ReportFiles(html=html, markdown=markdown, figures=tuple(written), figure_errors=tuple(errors))


def _write_if_changed(path: Path, data: bytes) -> Path:
    """Write `data` atomically unless `path` already holds exactly these bytes (then nothing is written, so an
    unchanged report renders on a read-only folder)."""
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return path
    except OSError:
        pass
    return write_bytes(path, data)


@functools.cache
def _code_hash() -> str:
    """The figure code's own hash (figures.py imports no other bnlab module) with matplotlib's version: editing
    figures.py (a colour, a label) or upgrading matplotlib redraws every figure."""
    import matplotlib

    return hashlib.sha256(Path(_figures.__file__).read_bytes() + matplotlib.__version__.encode()).hexdigest()


def _drawing_key(figure: Mapping[str, Any]) -> str:
    """What a figure file is drawn from: its whole spec (data included), its format and the drawing code."""
    spec = json.dumps({k: v for k, v in figure.items() if k != "file"}, sort_keys=True, default=repr)
    return hashlib.sha256(f"{_code_hash()}|{figure_format(figure)}|{spec}".encode()).hexdigest()


def _drawn_record(out: Path) -> dict[str, dict[str, str]]:
    """OUT/figures/drawn.json, or {} when missing or unreadable (then everything is drawn)."""
    try:
        record = read_json(out / DRAWN_FILE, max_bytes=16 * 2**20)
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {k: v for k, v in record.items() if isinstance(v, dict) and isinstance(v.get("key"), str)
            and isinstance(v.get("bytes"), str)}


def _already_drawn(path: Path, entry: Mapping[str, str] | None, key: str) -> bytes | None:
    """The bytes of `path` when it was drawn from `key` and is unchanged since; None when it must be drawn."""
    if entry is None or entry["key"] != key:
        return None
    try:
        image = path.read_bytes()
    except OSError:
        return None
    return image if hashlib.sha256(image).hexdigest() == entry["bytes"] else None
