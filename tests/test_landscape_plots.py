"""Landscape figures: files written, side-by-side panels share levels, axes and colour scale; plotly offline."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from bnlab.errors import BnlabError
from bnlab.report import landscape_plots as lp


def _data(**kw):
    x = np.linspace(-1, 1, 9)
    xx, yy = np.meshgrid(x, x)
    smooth = (xx**2 + yy**2 + 0.5).tolist()
    rough = (3 * xx**2 + yy**2 + 0.3 * np.sin(9 * xx) + 1.0).tolist()
    return {"panels": [{"title": "BN", "x": x.tolist(), "y": x.tolist(), "z": smooth},
                       {"title": "no BN", "x": x.tolist(), "y": x.tolist(), "z": rough,
                        "path": [[0.5, 0.5], [0.0, 0.0]]}], **kw}


def test_side_by_side_shares_levels_axes_and_scale() -> None:
    fig = Figure()
    levels = lp.draw_contour_panels(fig, _data(levels=12))
    axes = [a for a in fig.axes if a.get_title() in ("BN", "no BN")]
    assert len(axes) == 2
    assert axes[0].get_xlim() == axes[1].get_xlim() and axes[0].get_ylim() == axes[1].get_ylim()
    sets = [a.collections[0] for a in axes]  # the filled contour sets
    assert list(sets[0].levels) == list(sets[1].levels) == levels
    assert sets[0].norm.vmin == sets[1].norm.vmin and sets[0].norm.vmax == sets[1].norm.vmax
    lo = min(min(map(min, p["z"])) for p in _data()["panels"])
    assert levels[0] == pytest.approx(lo) and len(levels) == 13


def test_log_levels_and_zmax() -> None:
    lo, hi = lp.value_range([np.array([[0.5, 2.0], [np.inf, 100.0]])], "log", zmax=10.0)
    assert (lo, hi) == (0.5, 10.0)
    lv = lp.shared_levels(lo, hi, 4, "log")
    assert lv[0] == pytest.approx(0.5) and lv[-1] == pytest.approx(10.0)
    assert lv[1] / lv[0] == pytest.approx(lv[2] / lv[1])
    with pytest.raises(BnlabError, match="increasing"):
        lp.shared_levels(0, 1, [1.0, 0.5])


@pytest.mark.parametrize("kind,suffix,extra", [("contours", "png", {}), ("contours", "svg", {"style": "lines"}),
                                               ("surface", "png", {}), ("surface", "png", {"zscale": "log"})])
def test_files_written(tmp_path, kind: str, suffix: str, extra: dict) -> None:
    path = lp.save(kind, _data(**extra), tmp_path / f"f.{suffix}", title="landscape")
    blob = path.read_bytes()
    assert len(blob) > 2000
    assert blob[:4] == b"\x89PNG" if suffix == "png" else b"<svg" in blob[:400]


def test_curves(tmp_path) -> None:
    t = np.linspace(-1, 1, 11)
    data = {"panels": [{"title": "train mode", "series": [{"label": "BN", "x": t.tolist(), "y": (t**2).tolist()},
                                                          {"label": "no BN", "x": t.tolist(),
                                                           "y": (3 * t**2).tolist()}]}]}
    assert lp.save("curves", data, tmp_path / "c.svg").stat().st_size > 2000
    with pytest.raises(BnlabError, match="format"):
        lp.save("curves", data, tmp_path / "c.jpg")
    with pytest.raises(BnlabError, match="panels"):
        lp.render("curves", {})


def test_plotly_html_embeds_plotly_once_offline(tmp_path) -> None:
    pytest.importorskip("plotly")
    html = lp.plotly_html(_data(), tmp_path / "s.html", title="BN vs no BN").read_text()
    assert html.count("plotly.js v") <= 2 and "cdn.plot.ly" not in html.split("<body>")[0]
    assert html.count('"cmin":') == 2  # our two surfaces, one colour range each
    assert "<script src=\"http" not in html


@pytest.mark.parametrize("zscale", ["linear", "log"])
def test_surfaces_share_one_colour_scale(zscale: str) -> None:
    fig = Figure()
    lo, hi = lp.draw_surface_panels(fig, _data(zscale=zscale))
    polys = [c for ax in fig.axes if ax.name == "3d" for c in ax.collections]
    assert len(polys) == 2
    assert polys[0].norm.vmin == polys[1].norm.vmin and polys[0].norm.vmax == polys[1].norm.vmax
    want = (np.log10(lo), np.log10(hi)) if zscale == "log" else (lo, hi)
    assert (polys[0].norm.vmin, polys[0].norm.vmax) == pytest.approx(want)
