"""Interactive 3-D landscapes: one self-contained HTML page (plotly.js embedded once, works offline).

plotly is an optional extra (``pip install "bnlab[plotly]"``), imported only when a page is asked for. The page
uses the same colour normalisation as every static figure (`bnlab.report.figures.value_range`): one z range and one
colour range for all panels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bnlab.atomic import write_text
from bnlab.errors import BnlabError
from bnlab.report.figures import on_scale, panel_grids, panels_of, value_range


def plotly_html(data: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """An interactive page of 3-D surfaces (one colour scale, same z range), plotly.js embedded once."""
    try:  # optional extra: imported only when an interactive page is asked for
        import plotly.graph_objects as go
        import plotly.io as pio
        from plotly.subplots import make_subplots
    except ImportError:
        raise BnlabError("interactive HTML needs plotly: pip install 'bnlab[plotly]'") from None
    panels = panels_of(data)
    grids = [(np.asarray(x), np.asarray(y), np.asarray(z)) for x, y, z in panel_grids(panels)]
    lo, hi = value_range([g[2] for g in grids], "linear", data.get("zmax"))
    fig = make_subplots(rows=1, cols=len(panels), specs=[[{"type": "surface"}] * len(panels)],
                        subplot_titles=[str(p.get("title", "")) for p in panels])
    for k, (x, y, z) in enumerate(grids):
        zc = on_scale(z, lo, hi)
        fig.add_trace(go.Surface(x=x, y=y, z=zc, cmin=lo, cmax=hi, colorscale="Viridis", showscale=k == 0),
                      row=1, col=k + 1)
    for k in range(len(panels)):
        scene = "scene" if k == 0 else f"scene{k + 1}"
        fig.layout[scene].zaxis.range = [lo, hi]
    fig.update_layout(title=title, height=520, width=480 * len(panels))
    html = pio.to_html(fig, include_plotlyjs=True, full_html=True)
    return write_text(path, html)
