"""Figure drawing (`bnlab.report.figures`): every kind, formats, determinism, styling, bad specs."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from bnlab.errors import BnlabError
from bnlab.report import figures

GRID = [i / 10 for i in range(11)]
BOWL = [[(x - 0.5) ** 2 + (y - 0.5) ** 2 for x in GRID] for y in GRID]

SPECS = {
    "lines": {"sharey": True, "panels": [
        {"title": "loss", "xlabel": "step", "ylabel": "loss", "yscale": "log", "series": [
            {"label": "BN", "x": [0, 1, 2], "y": [1.0, 0.5, 0.25], "lo": [0.9, 0.4, 0.2], "hi": [1.1, 0.6, 0.3]},
            {"label": "no BN", "x": [0, 1, 2], "y": [1.0, None, math.inf]},  # diverged: gaps, no crash
        ]},
        {"title": "acc", "series": [{"label": "noisy BN", "x": list(range(50)), "y": [i / 50 for i in range(50)]}]},
    ]},
    "bars": {"panels": [{"title": "gap", "ylabel": "gap", "categories": ["a", "b"], "groups": [
        {"label": "BN", "values": [1.0, 2.0], "lo": [0.5, 1.5], "hi": [1.5, 2.5]},
        {"label": "Dropout", "values": [0.5, math.nan]}]}]},
    "contours": {"levels": 10, "panels": [{"title": "BN", "x": GRID, "y": GRID, "z": BOWL},
                                          {"title": "no BN", "x": GRID, "y": GRID,
                                           "z": [[4 * v for v in row] for row in BOWL]}]},
    "surface": {"panels": [{"title": "BN", "x": GRID, "y": GRID, "z": BOWL}]},
    "heatmap": {"panels": [{"title": "acc", "xlabel": "norm", "ylabel": "lr", "x": ["BN", "no BN"],
                            "y": [0.01, 0.1], "z": [[0.9, 0.8], [0.95, None]]}]},
}


def spec(kind: str, data: dict | None = None, fid: str = "f") -> dict:
    return {"id": fid, "kind": kind, "title": f"a {kind} figure", "caption": "", "data": data or SPECS[kind]}


@pytest.mark.parametrize("kind", figures.KINDS)
def test_every_kind_draws_a_valid_deterministic_image(kind: str) -> None:
    s = spec(kind)
    image = figures.render_figure(s)
    if figures.figure_format(s) == "svg":
        root = ET.fromstring(image)
        assert root.tag.endswith("svg")
        assert b"<script" not in image and b"http://www.w3.org/2000/svg" in image
        assert b"xlink:href=\"http" not in image and b"<dc:date>" not in image
    else:
        assert image[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures.render_figure(s) == image  # same spec, same bytes


def test_formats_and_file_names() -> None:
    assert figures.figure_format(spec("lines")) == "svg"
    assert figures.figure_format(spec("surface")) == "png"
    assert figures.figure_format(spec("contours")) == "svg"  # 2 x 11 x 11 points: light enough for SVG
    dense = {"panels": [{"title": "", "x": list(range(60)), "y": list(range(60)),
                         "z": [[float(i * j) for i in range(60)] for j in range(60)]}]}
    assert figures.figure_format(spec("contours", dense)) == "png"
    assert figures.figure_filename("C14", spec("contours", dense, "2d landscape")) == "figures/C14-2d_landscape.png"
    assert figures.figure_filename("C07", spec("lines", fid="../../etc/passwd")) == "figures/C07-etc_passwd.svg"
    assert figures.figure_filename("C07", spec("lines", fid="a"), 3) == "figures/C07-a-3.svg"


def test_normalisation_colours_are_consistent() -> None:
    assert figures.norm_of_label("BN") == "bn"
    assert figures.norm_of_label("no BN") == "none"
    assert figures.norm_of_label("No-BN, lr=0.1") == "none"
    assert figures.norm_of_label("noisy BN") == "noisy"
    assert figures.norm_of_label("BN (frozen statistics)") == "bn"
    assert figures.norm_of_label("LayerNorm") == "layernorm"
    assert figures.norm_of_label("ℓ1 norm") == "l1"
    assert figures.norm_of_label("depth 10") is None
    assert figures.colour_of_label("BN, residual") == figures.colour_of_label("BN") == figures.NORM_COLOURS["bn"]
    assert figures.colour_of_label("no BN") != figures.colour_of_label("BN")
    assert figures.colour_of_label("depth 10") == figures.colour_of_label("depth 10")  # stable across calls


def test_series_sharing_a_colour_get_distinct_line_styles() -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    figures.draw_lines(fig, {"panels": [{"title": "", "series": [
        {"label": "BN lr=0.1", "x": [0, 1], "y": [0, 1]}, {"label": "BN lr=1", "x": [0, 1], "y": [1, 0]}]}]})
    lines = fig.axes[0].get_lines()
    assert lines[0].get_color() == lines[1].get_color()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()


def test_contours_share_one_colour_scale() -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    figures.draw_contours(fig, SPECS["contours"])
    sets = [c for ax in fig.axes[:2] for c in ax.collections if hasattr(c, "levels")]
    filled = [s for s in sets if s.filled]
    assert len(filled) == 2
    assert list(filled[0].levels) == list(filled[1].levels)
    assert filled[0].norm.vmax == pytest.approx(4 * 0.5)  # the larger panel's max sets both scales
    assert len(fig.axes) == 3  # two panels + one shared colour bar


@pytest.mark.parametrize("kind, data, message", [
    ("pie", {"panels": [{}]}, "unknown figure kind 'pie'"),
    ("lines", {"panels": []}, "non-empty list"),
    ("lines", {"panels": [{"series": [{"label": "a", "x": [1, 2], "y": [1]}]}]}, "lengths differ"),
    ("lines", {"panels": [{"series": [{"label": "a", "x": [1], "y": ["x"]}]}]}, "must hold numbers"),
    ("lines", {"panels": [{"xscale": "weird", "series": []}]}, "xscale"),
    ("bars", {"panels": [{"categories": ["a", "b"], "groups": [{"label": "g", "values": [1]}]}]},
     "one value per category"),
    ("contours", {"panels": [{"x": [0, 1], "y": [0, 1], "z": [[1, 2]]}]}, "rows"),
])
def test_malformed_specs_raise_a_named_error(kind: str, data: dict, message: str) -> None:
    with pytest.raises(BnlabError, match=message):
        figures.render_figure(spec(kind, data))


def _tick_label_boxes(categories: list[str]) -> tuple[bool, list]:
    """Draw a one-panel bar figure with these categories; (horizontal?, the category tick-label boxes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = {"panels": [{"title": "t", "ylabel": "log10 error", "categories": categories,
                        "groups": [{"label": "max error", "values": [-float(i) for i in range(len(categories))]},
                                   {"label": "tolerance", "values": [-5.0] * len(categories)}]}]}
    fig = Figure(layout="constrained", dpi=100)
    figures.draw_bars(fig, data)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    horizontal = [t.get_text() for t in ax.get_yticklabels()] == categories
    labels = ax.get_yticklabels() if horizontal else ax.get_xticklabels()
    renderer = canvas.get_renderer()
    return horizontal, [t.get_window_extent(renderer) for t in labels if t.get_text()]


def test_many_long_bar_categories_are_drawn_horizontally_without_overlap() -> None:
    """C01's 14 verification names once overlapped as slanted x labels; now they go down the side, readable."""
    names = [f"bn.verification_number_{i}.f64" for i in range(14)]
    horizontal, boxes = _tick_label_boxes(names)
    assert horizontal and len(boxes) == 14
    for a, b in zip(boxes, boxes[1:]):
        assert not a.overlaps(b), (a, b)
    short = ["no BN", "BN", "Dropout"]
    horizontal, boxes = _tick_label_boxes(short)  # a few short names stay under the x axis
    assert not horizontal and len(boxes) == 3


def test_log_axis_problems_name_every_non_positive_value_a_log_axis_would_hide() -> None:
    assert figures.log_axis_problems(spec("lines")) == []  # None and inf are missing values, not hidden ones
    bad = {"xscale": "log", "panels": [
        {"title": "d", "yscale": "log", "series": [{"label": "BN", "x": [0, 1, 2], "y": [1.0, -0.5, 0.0],
                                                   "lo": [0.5, 0.1, -1.0], "hi": [2, 2, 2]}]},
        {"title": "lin", "yscale": "linear", "series": [{"label": "no BN", "x": [1, 2], "y": [-1.0, 0.0]}]}]}
    assert figures.log_axis_problems(spec("lines", bad)) == [
        "f: panel 'd', 'BN': 1 non-positive x value(s) on a log axis",
        "f: panel 'd', 'BN': 2 non-positive y value(s) on a log axis",
        "f: panel 'd', 'BN': 1 non-positive lo value(s) on a log axis"]
    bars = {"panels": [{"title": "b", "yscale": "log", "categories": ["a"], "groups": [
        {"label": "g", "values": [0.0]}]}]}
    assert figures.log_axis_problems(spec("bars", bars)) == ["f: panel 'b', 'g': 1 non-positive values value(s) "
                                                              "on a log axis"]
    assert figures.log_axis_problems(spec("bars")) == []  # a linear value axis takes any value
