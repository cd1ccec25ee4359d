"""The HTML report: one self-contained file rendered from results.json with Jinja2, autoescape on.

Self-contained means the page needs nothing else: CSS is inline, figures are ``data:`` URIs (SVG or PNG), there is
no script and no web font, and a Content-Security-Policy of ``default-src 'none'`` (images from ``data:`` and the
inline style only) makes the browser refuse any request the page might otherwise make. Every string that did not
come from bnlab's own template — claim titles, run or model names, captions, metrics, caveats — is HTML-escaped by
Jinja2's autoescape; the template never marks anything ``|safe``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from bnlab.report.view import report_view

TEMPLATES = Path(__file__).parent / "templates"
MIME = {"svg": "image/svg+xml", "png": "image/png"}


def data_uri(image: bytes, fmt: str) -> str:
    """``data:<mime>;base64,...`` of an image; an SVG shown through <img> can run no script."""
    return f"data:{MIME[fmt]};base64,{base64.b64encode(image).decode('ascii')}"


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(results: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    """The report page for `results` (a results.json mapping).

    `images` maps each figure's file name (as recorded in results.json) to its data URI, or to the exception
    that stopped it from being drawn (shown in place of the figure).
    """
    return environment().get_template("report.html.j2").render(v=report_view(results, images))
