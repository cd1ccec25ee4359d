"""Landscape figures through the report's one plotting stack (`bnlab.report.figures`): panels share levels, axes
and one colour normalisation with the audit's figures; files written; plotly offline; no pyplot anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from bnlab.errors import BnlabError
from bnlab.report import figures
from bnlab.report.interactive import plotly_html

SRC = Path(__file__).resolve().parents[1] / "src" / "bnlab"


def _data(**kw):
    x = np.linspace(-1, 1, 9)
    xx, yy = np.meshgrid(x, x)
    smooth = (xx**2 + yy**2 + 0.5).tolist()
    rough = (3 * xx**2 + yy**2 + 0.3 * np.sin(9 * xx) + 1.0).tolist()
    return {"panels": [{"title": "BN", "x": x.tolist(), "y": x.tolist(), "z": smooth},
                       {"title": "no BN", "x": x.tolist(), "y": x.tolist(), "z": rough,
                        "path": [[0.5, 0.5], [0.0, 0.0]]}], **kw}


def _spec(kind: str, data: dict) -> dict:
    return {"id": kind, "kind": kind, "title": "landscape", "caption": "", "data": data}


def test_side_by_side_shares_levels_axes_and_scale() -> None:
    fig = Figure()
    figures.draw_contours(fig, _data(levels=12))
    axes = [a for a in fig.axes if a.get_title() in ("BN", "no BN")]
    assert len(axes) == 2
    assert axes[0].get_xlim() == axes[1].get_xlim() and axes[0].get_ylim() == axes[1].get_ylim()
    sets = [a.collections[0] for a in axes]  # the filled contour sets
    assert list(sets[0].levels) == list(sets[1].levels) and len(sets[0].levels) == 13
    assert sets[0].norm.vmin == sets[1].norm.vmin and sets[0].norm.vmax == sets[1].norm.vmax
    lo = min(min(map(min, p["z"])) for p in _data()["panels"])
    assert sets[0].levels[0] == pytest.approx(lo)


@pytest.mark.parametrize("zscale", ["linear", "log"])
def test_contours_surfaces_and_the_audit_use_one_colour_normalisation(zscale: str) -> None:
    """The audit's C14 figure and the landscape command draw through the same functions; both take their colour
    bounds from `value_range` of all panels (the two stacks used to normalise differently)."""
    data = _data(zscale=zscale)
    lo, hi = figures.value_range([p["z"] for p in data["panels"]], zscale)
    fig = Figure()
    figures.draw_contours(fig, data)
    norms = [a.collections[0].norm for a in fig.axes if a.get_title() in ("BN", "no BN")]
    assert all((n.vmin, n.vmax) == pytest.approx((lo, hi)) for n in norms)
    fig = Figure()
    figures.draw_surface(fig, data)
    polys = [c for ax in fig.axes if ax.name == "3d" for c in ax.collections]
    want = (np.log10(lo), np.log10(hi)) if zscale == "log" else (lo, hi)
    assert all((p.norm.vmin, p.norm.vmax) == pytest.approx(want) for p in polys) and len(polys) == 2


def test_log_levels_and_zmax() -> None:
    lo, hi = figures.value_range([np.array([[0.5, 2.0], [np.inf, 100.0]])], "log", zmax=10.0)
    assert (lo, hi) == (0.5, 10.0)
    lv = figures.shared_levels(lo, hi, 4, "log")
    assert lv[0] == pytest.approx(0.5) and lv[-1] == pytest.approx(10.0)
    assert lv[1] / lv[0] == pytest.approx(lv[2] / lv[1])
    with pytest.raises(BnlabError, match="increasing"):
        figures.shared_levels(0, 1, [1.0, 0.5])


@pytest.mark.parametrize("kind,suffix,extra", [("contours", "png", {}), ("contours", "svg", {"style": "lines"}),
                                               ("surface", "png", {}), ("surface", "png", {"zscale": "log"})])
def test_files_written(tmp_path, kind: str, suffix: str, extra: dict) -> None:
    path = figures.save_figure(_spec(kind, _data(**extra)), tmp_path / f"f.{suffix}")
    blob = path.read_bytes()
    assert len(blob) > 2000
    assert blob[:4] == b"\x89PNG" if suffix == "png" else b"<svg" in blob[:400]


def test_curves(tmp_path) -> None:
    t = np.linspace(-1, 1, 11)
    data = {"panels": [{"title": "train mode", "series": [{"label": "BN", "x": t.tolist(), "y": (t**2).tolist()},
                                                          {"label": "no BN", "x": t.tolist(),
                                                           "y": (3 * t**2).tolist()}]}], "yscale": "log"}
    assert figures.save_figure(_spec("lines", data), tmp_path / "c.svg").stat().st_size > 2000
    with pytest.raises(BnlabError, match="format"):
        figures.save_figure(_spec("lines", data), tmp_path / "c.jpg")
    with pytest.raises(BnlabError, match="panels"):
        figures.render_figure(_spec("lines", {}))


def test_plotly_html_embeds_plotly_once_offline(tmp_path) -> None:
    pytest.importorskip("plotly")
    html = plotly_html(_data(), tmp_path / "s.html", title="BN vs no BN").read_text()
    assert html.count("plotly.js v") <= 2 and "cdn.plot.ly" not in html.split("<body>")[0]
    assert html.count('"cmin":') == 2  # our two surfaces, one colour range each
    assert "<script src=\"http" not in html


def test_no_module_uses_pyplot() -> None:
    """One plotting stack, no global matplotlib state: explicit Figure + canvas everywhere."""
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if re.search(r"matplotlib\.pyplot|from matplotlib import pyplot", p.read_text())]
    assert offenders == []
