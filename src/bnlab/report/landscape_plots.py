"""Loss-landscape figures: contour lines, filled contours, 3-D surfaces, 1-D curves, BN vs no-BN side by side.

Every multi-panel figure uses identical axes, identical contour levels and one colour scale across its panels, so a
BN and a no-BN landscape are compared on the same footing (a shared colour scale is the difference between
"smoother" and "drawn with other levels"). Panels are plain data, the same shape as the audit's Figure specs
(`bnlab.experiments.base`, kinds ``contours`` and ``surface``):

    {"panels": [{"title", "x", "y", "z" (len(y) rows of len(x)), "path"?: [[x, y], ...]}],
     "levels"?: count or list, "zscale"?: "linear" | "log", "zmax"?: float, "same_scale"?: bool (default true),
     "style"?: "filled" | "lines" (contours)}

Curves: ``{"panels": [{"title", "xlabel", "ylabel", "series": [{"label", "x", "y"}]}]}``.

matplotlib is driven through `matplotlib.figure.Figure` (no pyplot, no global state). `plotly_html` writes one
self-contained interactive page (plotly.js embedded once, works offline) and needs the ``plotly`` extra.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from bnlab.atomic import write_bytes, write_text
from bnlab.errors import BnlabError

CMAP = "viridis"
_PANEL_W, _PANEL_H, _DPI = 4.2, 3.4, 110
_RC = {"font.size": 9, "axes.titlesize": 9, "svg.hashsalt": "bnlab", "svg.fonttype": "path"}


def _panels(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    panels = data.get("panels") if isinstance(data, Mapping) else None
    if not isinstance(panels, Sequence) or not panels:
        raise BnlabError("landscape figure data needs 'panels': a non-empty list")
    return list(panels)


def _grid(panel: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(panel.get("x", []), dtype=float)
    y = np.asarray(panel.get("y", []), dtype=float)
    z = np.asarray(panel.get("z", []), dtype=float)
    if x.ndim != 1 or y.ndim != 1 or z.shape != (len(y), len(x)) or len(x) < 2 or len(y) < 2:
        raise BnlabError(f"landscape panel needs x, y and z of shape (len(y), len(x)); got z {z.shape}, "
                         f"x {x.shape}, y {y.shape}")
    return x, y, z


def value_range(zs: Sequence[np.ndarray], zscale: str = "linear", zmax: float | None = None) -> tuple[float, float]:
    """The shared (lo, hi) of all finite values (hi capped at `zmax`; lo > 0 for a log scale)."""
    vals = np.concatenate([np.asarray(z, dtype=float).ravel() for z in zs])
    vals = vals[np.isfinite(vals)]
    if zscale == "log":
        vals = vals[vals > 0]
    if vals.size == 0:
        return (1e-3, 1.0) if zscale == "log" else (0.0, 1.0)
    lo, hi = float(vals.min()), float(vals.max())
    if zmax is not None and zmax > lo:
        hi = min(hi, float(zmax))
    if hi <= lo:
        hi = lo * 1.01 + 1e-12 if zscale == "log" else lo + 1.0
    return lo, hi


def shared_levels(lo: float, hi: float, levels: int | Sequence[float] = 30, zscale: str = "linear") -> list[float]:
    """Contour levels from lo to hi: `levels` equal steps (geometric for a log scale), or the list as given."""
    if isinstance(levels, Sequence):
        out = [float(v) for v in levels]
        if len(out) < 2 or any(b <= a for a, b in zip(out, out[1:])):
            raise BnlabError("contour levels must be an increasing list of at least 2 values")
        return out
    n = int(levels)
    if n < 2:
        raise BnlabError(f"contour levels must be >= 2, got {n}")
    if zscale == "log":
        return [lo * (hi / lo) ** (i / n) for i in range(n + 1)]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _norm(lo: float, hi: float, zscale: str) -> Normalize:
    if zscale not in ("linear", "log"):
        raise BnlabError(f"zscale must be linear or log, got {zscale!r}")
    return LogNorm(vmin=lo, vmax=hi) if zscale == "log" else Normalize(vmin=lo, vmax=hi)


def _axes(fig: Figure, n: int, **kw: Any) -> list[Any]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig.set_size_inches(_PANEL_W * cols, _PANEL_H * rows + 0.4)
    return [fig.add_subplot(rows, cols, i + 1, **kw) for i in range(n)]


def draw_contour_panels(fig: Figure, data: Mapping[str, Any]) -> list[float]:
    """Filled contours (``style="filled"``, with thin contour lines on top) or contour lines (``"lines"``) per
    panel, identical axes and levels, one colour bar; optional projected ``path`` per panel. Returns the levels
    used (of the shared scale; with ``same_scale=False`` each panel gets its own and the last is returned)."""
    panels = _panels(data)
    grids = [_grid(p) for p in panels]
    zscale = str(data.get("zscale", "linear"))
    same = bool(data.get("same_scale", True))
    zmax = data.get("zmax")
    style = str(data.get("style", "filled"))
    if style not in ("filled", "lines"):
        raise BnlabError(f"contour style must be filled or lines, got {style!r}")
    axes = _axes(fig, len(panels))
    xlim = (min(g[0].min() for g in grids), max(g[0].max() for g in grids))
    ylim = (min(g[1].min() for g in grids), max(g[1].max() for g in grids))
    shared = value_range([g[2] for g in grids], zscale, zmax)
    mappable, levels = None, []
    for ax, panel, (x, y, z) in zip(axes, panels, grids):
        lo, hi = shared if same else value_range([z], zscale, zmax)
        norm = _norm(lo, hi, zscale)
        levels = shared_levels(lo, hi, data.get("levels", 30), zscale)
        zc = np.where(np.isfinite(z), np.clip(z, lo, hi), hi)  # a diverged point sits at the top of the scale
        if style == "filled":
            mappable = ax.contourf(x, y, zc, levels=levels, norm=norm, cmap=CMAP, extend="neither")
            ax.contour(x, y, zc, levels=levels[::3], colors="white", linewidths=0.4, alpha=0.7)
        else:
            mappable = ax.contour(x, y, zc, levels=levels, norm=norm, cmap=CMAP, linewidths=0.8)
        path = panel.get("path")
        if path is not None and len(path):
            p = np.asarray(path, dtype=float)
            ax.plot(p[:, 0], p[:, 1], "-o", color="#D55E00", markersize=2, linewidth=1)
        ax.plot([0], [0], marker="+", color="black", markersize=8)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(str(panel.get("title", "")))
        ax.set_xlabel(str(panel.get("xlabel", "direction 1")))
        ax.set_ylabel(str(panel.get("ylabel", "direction 2")))
        if not same:
            fig.colorbar(mappable, ax=ax)
    if same and mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.9, label=str(data.get("zlabel", "loss")),
                     ticks=levels[:: max(1, len(levels) // 6)], format="%.3g")
    return levels


def draw_surface_panels(fig: Figure, data: Mapping[str, Any]) -> tuple[float, float]:
    """3-D surfaces per panel with one z range and one colour scale (values clipped to it). Returns (lo, hi)."""
    panels = _panels(data)
    grids = [_grid(p) for p in panels]
    zscale = str(data.get("zscale", "linear"))
    lo, hi = value_range([g[2] for g in grids], zscale, data.get("zmax"))
    _norm(lo, hi, zscale)  # validates zscale
    zlo, zhi = (math.log10(lo), math.log10(hi)) if zscale == "log" else (lo, hi)  # the drawn z is log10 on a log scale
    norm = Normalize(vmin=zlo, vmax=zhi)  # one colour scale for every panel
    zlabel = ("log10 " if zscale == "log" else "") + str(data.get("zlabel", "loss"))
    axes = _axes(fig, len(panels), projection="3d")
    mappable = None
    for ax, panel, (x, y, z) in zip(axes, panels, grids):
        xx, yy = np.meshgrid(x, y)
        zz = np.where(np.isfinite(z), np.clip(z, lo, hi), hi)
        if zscale == "log":
            zz = np.log10(zz)
        mappable = ax.plot_surface(xx, yy, zz, cmap=CMAP, norm=norm, linewidth=0, antialiased=True)
        ax.set_zlim(zlo, zhi)
        ax.set_title(str(panel.get("title", "")))
        ax.set_zlabel(zlabel)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.7, label=zlabel)
    return lo, hi


def draw_curve_panels(fig: Figure, data: Mapping[str, Any]) -> None:
    """1-D landscapes: one panel per entry, series overlaid, identical y range across panels."""
    panels = _panels(data)
    axes = _axes(fig, len(panels))
    ys = [np.asarray(s["y"], dtype=float) for p in panels for s in p.get("series", [])]
    lo, hi = value_range(ys, str(data.get("yscale", "linear")), data.get("zmax"))
    colours = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
    for ax, panel in zip(axes, panels):
        for k, s in enumerate(panel.get("series", [])):
            ax.plot(np.asarray(s["x"], dtype=float), np.asarray(s["y"], dtype=float), label=str(s.get("label", "")),
                    color=s.get("color", colours[k % len(colours)]), linestyle=s.get("linestyle", "-"))
        if data.get("yscale") == "log":
            ax.set_yscale("log")
        pad = 0.05 * (hi - lo)
        ax.set_ylim(lo - (0 if data.get("yscale") == "log" else pad), hi + pad)
        ax.set_title(str(panel.get("title", "")))
        ax.set_xlabel(str(panel.get("xlabel", "t")))
        ax.set_ylabel(str(panel.get("ylabel", "loss")))
        ax.grid(alpha=0.3)
        if any(s.get("label") for s in panel.get("series", [])):
            ax.legend(frameon=False, fontsize=7.5)


_DRAW = {"contours": draw_contour_panels, "surface": draw_surface_panels, "curves": draw_curve_panels}


def render(kind: str, data: Mapping[str, Any], fmt: str = "png", title: str = "") -> bytes:
    """Draw `data` as `kind` ("contours" | "surface" | "curves") and return PNG or SVG bytes."""
    if kind not in _DRAW:
        raise BnlabError(f"unknown landscape figure kind {kind!r} (known: {', '.join(_DRAW)})")
    if fmt not in ("png", "svg"):
        raise BnlabError(f"figure format must be png or svg, got {fmt!r}")
    with matplotlib.rc_context(_RC):
        fig = Figure(layout="constrained", dpi=_DPI)
        _DRAW[kind](fig, data)
        if title:
            fig.suptitle(title, fontsize=10)
        buffer = io.BytesIO()
        if fmt == "svg":
            FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None})
        else:
            FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def save(kind: str, data: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Render and write atomically; the format comes from the suffix (.png or .svg)."""
    fmt = Path(path).suffix.lower().lstrip(".")
    return write_bytes(path, render(kind, data, fmt=fmt, title=title))


def surface_panels(surfaces: Sequence[Any], titles: Sequence[str], value: str = "loss") -> list[dict[str, Any]]:
    """Panels from `bnlab.landscape.Surface` objects (``value``: "loss" or "acc"), with PCA paths when present."""
    out = []
    for s, title in zip(surfaces, titles):
        panel: dict[str, Any] = {"title": title, "x": s.x.tolist(), "y": s.y.tolist(),
                                 "z": getattr(s, value).tolist()}
        if getattr(s, "path", None) is not None:
            panel["path"] = np.asarray(s.path).tolist()
        out.append(panel)
    return out


def plotly_html(data: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """An interactive page of 3-D surfaces (one colour scale, same z range), plotly.js embedded once."""
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
        from plotly.subplots import make_subplots
    except ImportError:
        raise BnlabError("interactive HTML needs plotly: pip install 'bnlab[plotly]'") from None
    panels = _panels(data)
    grids = [_grid(p) for p in panels]
    lo, hi = value_range([g[2] for g in grids], "linear", data.get("zmax"))
    fig = make_subplots(rows=1, cols=len(panels), specs=[[{"type": "surface"}] * len(panels)],
                        subplot_titles=[str(p.get("title", "")) for p in panels])
    for k, (x, y, z) in enumerate(grids):
        zc = np.where(np.isfinite(z), np.clip(z, lo, hi), hi)
        fig.add_trace(go.Surface(x=x, y=y, z=zc, cmin=lo, cmax=hi, colorscale="Viridis", showscale=k == 0),
                      row=1, col=k + 1)
    for k in range(len(panels)):
        scene = "scene" if k == 0 else f"scene{k + 1}"
        fig.layout[scene].zaxis.range = [lo, hi]
    fig.update_layout(title=title, height=520, width=480 * len(panels))
    html = pio.to_html(fig, include_plotlyjs=True, full_html=True)
    return write_text(path, html)
