"""Draw the figure specs of `bnlab.experiments.base` with matplotlib: SVG for curves and bars, PNG for dense grids.

A spec is plain data ``{"id", "kind", "title", "caption", "data"}`` (see `bnlab.experiments.base` for each kind's
``data``). `render_figure(spec)` returns the image bytes; `figure_format(spec)` and `figure_filename(claim, spec)`
say which format and file name the audit records in ``results.json`` before anything is drawn, so a report can be
re-rendered from that file alone.

Styling is the same across the report: the Okabe–Ito colour-blind-safe palette, and every series whose label names
a normalisation keeps that normalisation's colour everywhere (BN blue, no BN vermillion, noisy BN purple, ...).
Series of one panel that would share a colour get different line styles instead.

matplotlib is used through `matplotlib.figure.Figure` and explicit canvases, never `pyplot`: drawing touches no
global backend or state, and the output is deterministic (fixed SVG hash salt, no date in the metadata).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator

from bnlab.atomic import write_bytes
from bnlab.errors import BnlabError
from bnlab.results import FIGURE_KINDS

KINDS: tuple[str, ...] = FIGURE_KINDS  # results.json's vocabulary (bnlab.results)

# Okabe & Ito (2008) colour-blind-safe palette
NORM_COLOURS: dict[str, str] = {
    "bn": "#0072B2",  # blue
    "none": "#D55E00",  # vermillion
    "noisy": "#CC79A7",  # reddish purple
    "layernorm": "#009E73",  # bluish green
    "groupnorm": "#E69F00",  # orange
    "l1": "#56B4E9",  # sky blue
    "l2": "#332288",  # indigo
    "linf": "#882255",  # wine
    "dropout": "#777777",  # grey
}
OTHER_COLOURS: tuple[str, ...] = ("#E69F00", "#56B4E9", "#009E73", "#000000", "#F0E442", "#999999",
                                  "#44AA99", "#AA4499")
LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.")
_CMAP = "viridis"

# order matters: "noisy BN" and "no BN" both contain "bn"
_NORM_PATTERNS: tuple[tuple[str, str], ...] = (
    ("none", r"\bno[ _-]?bn\b|\bwithout (bn|batch ?norm)|\bno[ _-]?norm|^none\b|\bunnormali[sz]ed\b"),
    ("noisy", r"\bnoisy\b"),
    ("layernorm", r"layer ?norm|\bln\b"),
    ("groupnorm", r"group ?norm|\bgn\b"),
    ("l1", r"\b(l1|ℓ1)\b"),
    ("l2", r"\b(l2|ℓ2)\b"),
    ("linf", r"\b(linf|l∞|ℓ∞)"),
    ("dropout", r"\bdropout\b"),
    ("bn", r"\bbn\b|batch ?norm"),
)

_RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "bnlab",  # deterministic element ids
    "svg.fonttype": "path",  # no font needed by the viewer
}
_PANEL_W, _PANEL_H, _MAX_COLS, _DPI = 4.0, 3.2, 4, 110
_DENSE_CONTOUR_POINTS = 2500  # grid points over all panels above which a contour figure is a PNG
_DENSE_HEATMAP_CELLS = 10000


def norm_of_label(label: str) -> str | None:
    """The normalisation a series label names ("bn", "none", "noisy", ...), or None."""
    text = str(label).lower()
    for norm, pattern in _NORM_PATTERNS:
        if re.search(pattern, text):
            return norm
    return None


def colour_of_label(label: str) -> str:
    """The report-wide colour of a series label: its normalisation's colour, else a stable hash of the label."""
    norm = norm_of_label(label)
    if norm is not None:
        return NORM_COLOURS[norm]
    digest = int(hashlib.sha256(str(label).encode()).hexdigest(), 16)
    return OTHER_COLOURS[digest % len(OTHER_COLOURS)]


def figure_format(spec: Mapping[str, Any]) -> str:
    """"svg" or "png": surfaces and dense contour plots / heatmaps are PNG, everything else SVG."""
    kind = spec.get("kind")
    panels = spec.get("data", {}).get("panels", []) if isinstance(spec.get("data"), Mapping) else []
    if kind == "surface":
        return "png"
    if kind in ("contours", "heatmap"):
        points = sum(len(p.get("x", ())) * len(p.get("y", ())) for p in panels if isinstance(p, Mapping))
        limit = _DENSE_CONTOUR_POINTS if kind == "contours" else _DENSE_HEATMAP_CELLS
        return "png" if points > limit else "svg"
    return "svg"


def figure_filename(claim_id: str, spec: Mapping[str, Any], index: int = 0) -> str:
    """Relative path of a figure's image inside the audit folder, e.g. ``figures/C07-lr_sweep.svg``.

    The id is reduced to letters, digits, '-' and '_' (so it can never name a path elsewhere); `index` keeps two
    figures of one claim with the same id apart.
    """
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", str(spec.get("id", "")))[:60].strip("_") or "figure"
    suffix = f"-{index}" if index else ""
    return f"figures/{claim_id}-{stem}{suffix}.{figure_format(spec)}"


# ----------------------------------------------------------------------------------------------- helpers


def _floats(values: Any, what: str) -> list[float]:
    """A list of floats (None and non-finite kept as NaN, so matplotlib leaves gaps)."""
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise BnlabError(f"figure data '{what}' must be a list of numbers")
    out = []
    for v in values:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v) if math.isfinite(v) else math.nan)
        else:
            raise BnlabError(f"figure data '{what}' must hold numbers, got {v!r}")
    return out


def _axis(values: Any, what: str) -> tuple[list[float], list[str] | None]:
    """Numeric axis values, or positions 0..n-1 plus tick labels when the values are categories (strings)."""
    if isinstance(values, Sequence) and values and any(isinstance(v, str) for v in values):
        return [float(i) for i in range(len(values))], [str(v) for v in values]
    return _floats(values, what), None


def _grid(z: Any, ny: int, nx: int, what: str) -> list[list[float]]:
    if not isinstance(z, Sequence) or len(z) != ny:
        raise BnlabError(f"figure data '{what}' must have len(y) = {ny} rows")
    rows = [_floats(row, what) for row in z]
    if any(len(r) != nx for r in rows):
        raise BnlabError(f"figure data '{what}' rows must have len(x) = {nx} values")
    return rows


def panels_of(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    panels = data.get("panels") if isinstance(data, Mapping) else None
    if not isinstance(panels, Sequence) or not panels or not all(isinstance(p, Mapping) for p in panels):
        raise BnlabError("figure data needs 'panels': a non-empty list of tables")
    return list(panels)


def _layout(fig: Figure, n: int, **kw: Any) -> list[Any]:
    cols = min(n, _MAX_COLS)
    rows = math.ceil(n / cols)
    fig.set_size_inches(_PANEL_W * cols, _PANEL_H * rows + 0.4)
    return [fig.add_subplot(rows, cols, i + 1, **kw) for i in range(n)]


def value_range(zs: Sequence[Any], zscale: str = "linear", zmax: float | None = None) -> tuple[float, float]:
    """The one colour normalisation of every contour, surface and heatmap: the shared (lo, hi) of all finite values
    of all panels (hi capped at `zmax`; only positive values on a log scale), so a BN and a no-BN landscape are
    coloured on the same scale. A non-finite value (a diverged loss) is drawn at the top of that scale."""
    vals = np.concatenate([np.asarray(z, dtype=float).ravel() for z in zs]) if zs else np.array([])
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


def shared_levels(lo: float, hi: float, levels: int | Sequence[float] = 20, zscale: str = "linear") -> list[float]:
    """Contour levels from lo to hi: `levels` equal steps (geometric on a log scale), or the given list."""
    if isinstance(levels, Sequence) and not isinstance(levels, str):
        out = _floats(levels, "levels")
        if len(out) < 2 or any(not b > a for a, b in zip(out, out[1:])):
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


def on_scale(z: Any, lo: float, hi: float) -> np.ndarray:
    """z clipped to [lo, hi]; a non-finite value (a diverged loss) sits at the top of the scale, like a cliff."""
    z = np.asarray(z, dtype=float)
    return np.where(np.isfinite(z), np.clip(z, lo, hi), hi)


def _colorbar(fig: Figure, mappable: Any, ax: Any, **kw: Any) -> None:
    """A colour bar with plain tick labels ("%.3g"), at 1-2-5 steps on a log scale."""
    if isinstance(mappable.norm, LogNorm):
        kw["ticks"] = LogLocator(subs=(1.0, 2.0, 5.0))
    fig.colorbar(mappable, ax=ax, format=FormatStrFormatter("%.3g"), **kw)


def _labels(ax: Any, panel: Mapping[str, Any]) -> None:
    ax.set_title(str(panel.get("title", "")))
    ax.set_xlabel(str(panel.get("xlabel", "")))
    ax.set_ylabel(str(panel.get("ylabel", "")))


def _scale(ax: Any, panel: Mapping[str, Any]) -> None:
    for axis in ("x", "y"):
        scale = panel.get(f"{axis}scale")
        if scale is None:
            continue
        if scale not in ("linear", "log", "symlog"):
            raise BnlabError(f"figure panel '{axis}scale' must be linear, log or symlog, got {scale!r}")
        getattr(ax, f"set_{axis}scale")(scale)


# ----------------------------------------------------------------------------------------------- kinds


def draw_lines(fig: Figure, data: Mapping[str, Any]) -> None:
    """Curves per panel, optional lo/hi bands; ``sharex``/``sharey`` in data share the axes, ``xscale``/``yscale``
    in data apply to every panel that does not set its own. A series with ``colour_of`` takes that label's colour
    (and the next line style), e.g. a reference line drawn beside its curve."""
    panels = panels_of(data)
    axes = _layout(fig, len(panels))
    if data.get("sharey"):
        for ax in axes[1:]:
            ax.sharey(axes[0])
    if data.get("sharex"):
        for ax in axes[1:]:
            ax.sharex(axes[0])
    for ax, panel in zip(axes, panels):
        used: dict[str, int] = {}
        series = panel.get("series", [])
        if not isinstance(series, Sequence):
            raise BnlabError("figure panel 'series' must be a list")
        for s in series:
            label = str(s.get("label", ""))
            x = _floats(s.get("x", []), "x")
            y = _floats(s.get("y", []), "y")
            if len(x) != len(y):
                raise BnlabError(f"figure series {label!r}: x and y lengths differ ({len(x)} vs {len(y)})")
            colour = colour_of_label(str(s.get("colour_of", label)))  # a series may share another label's colour
            style = LINESTYLES[used.get(colour, 0) % len(LINESTYLES)]
            used[colour] = used.get(colour, 0) + 1
            marker = "o" if len(x) <= 12 else None
            ax.plot(x, y, color=colour, linestyle=style, marker=marker, markersize=3, linewidth=1.4,
                    label=label or None)
            if s.get("lo") is not None and s.get("hi") is not None:
                lo, hi = _floats(s["lo"], "lo"), _floats(s["hi"], "hi")
                if len(lo) != len(x) or len(hi) != len(x):
                    raise BnlabError(f"figure series {label!r}: lo/hi must have len(x) values")
                ax.fill_between(x, lo, hi, color=colour, alpha=0.18, linewidth=0)
        _labels(ax, panel)
        _scale(ax, {**{k: data[k] for k in ("xscale", "yscale") if k in data}, **panel})  # data-level default
        if any(s.get("label") for s in series):
            ax.legend(frameon=False)


def _horizontal(categories: Sequence[str]) -> bool:
    """Many or long category names read better down the side (horizontal bars) than slanted under the axis."""
    return len(categories) > 6 or (len(categories) > 3 and max(len(c) for c in categories) > 14)


def draw_bars(fig: Figure, data: Mapping[str, Any]) -> None:
    """Grouped bars per panel: one bar per (category, group), error bars from lo/hi. Panels with many or long
    category names are drawn as horizontal bars (categories top to bottom, values along x)."""
    panels = panels_of(data)
    axes = _layout(fig, len(panels))
    tallest = 0.0
    for ax, panel in zip(axes, panels):
        categories = [str(c) for c in panel.get("categories", [])]
        groups = panel.get("groups", [])
        horizontal = bool(categories) and _horizontal(categories)
        width = 0.8 / max(len(groups), 1)
        used: dict[str, int] = {}
        for g_index, group in enumerate(groups):
            label = str(group.get("label", ""))
            values = _floats(group.get("values", []), "values")
            if len(values) != len(categories):
                raise BnlabError(f"figure bar group {label!r}: needs one value per category")
            xs = [i - 0.4 + width * (g_index + 0.5) for i in range(len(categories))]
            err = None
            if group.get("lo") is not None and group.get("hi") is not None:
                lo, hi = _floats(group["lo"], "lo"), _floats(group["hi"], "hi")
                err = [[max(v - a, 0.0) if math.isfinite(v - a) else 0.0 for v, a in zip(values, lo)],
                       [max(b - v, 0.0) if math.isfinite(b - v) else 0.0 for v, b in zip(values, hi)]]
            colour = colour_of_label(label)
            hatch = [None, "//", "..", "xx"][used.get(colour, 0) % 4]
            used[colour] = used.get(colour, 0) + 1
            style = {"color": colour, "hatch": hatch, "edgecolor": "white", "capsize": 2,
                     "error_kw": {"linewidth": 0.8}, "label": label or None}
            if horizontal:
                ax.barh(xs, values, height=width * 0.95, xerr=err, **style)
            else:
                ax.bar(xs, values, width=width * 0.95, yerr=err, **style)
        if horizontal:
            ax.set_yticks(range(len(categories)), categories)
            ax.invert_yaxis()  # the first category on top, as in a table
            ax.grid(axis="y", visible=False)
            ax.set_title(str(panel.get("title", "")))
            ax.set_xlabel(str(panel.get("ylabel", "")))  # the value axis is x here
            if panel.get("yscale"):
                _scale(ax, {"xscale": panel["yscale"]})
            tallest = max(tallest, 0.26 * len(categories) * max(1.0, 0.6 * len(groups)) + 1.2)
        else:
            ax.set_xticks(range(len(categories)), categories, rotation=20 if len(categories) > 4 else 0)
            ax.grid(axis="x", visible=False)
            _labels(ax, panel)
            if panel.get("yscale"):
                _scale(ax, {"yscale": panel["yscale"]})
        if any(g.get("label") for g in groups):
            # beside the axes when horizontal: long bars run under any corner inside them
            ax.legend(frameon=False, **({"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if horizontal else {}))
    if tallest > 0:  # room for the category names (and a legend) beside each horizontal panel
        cols = min(len(panels), _MAX_COLS)
        rows = math.ceil(len(panels) / cols)
        width_in, height_in = fig.get_size_inches()
        fig.set_size_inches(width_in + 1.6 * cols, max(height_in, tallest * rows + 0.4))


def panel_grids(panels: Sequence[Mapping[str, Any]]) -> list[tuple[list[float], list[float], list[list[float]]]]:
    out = []
    for p in panels:
        x, y = _floats(p.get("x", []), "x"), _floats(p.get("y", []), "y")
        out.append((x, y, _grid(p.get("z", []), len(y), len(x), "z")))
    return out


def draw_contours(fig: Figure, data: Mapping[str, Any]) -> None:
    """Contours per panel with identical axes, levels and one colour scale (`value_range`) unless ``same_scale``
    is false. Options: ``levels`` (a count or a list), ``zscale`` ("linear" | "log"), ``zmax`` (cap), ``style``
    ("filled": filled contours with thin lines on top, or "lines"), ``zlabel``; per panel an optional ``path``
    ([[x, y], ...], e.g. a training trajectory on PCA directions). The centre (0, 0) is marked."""
    panels = panels_of(data)
    axes = _layout(fig, len(panels))
    grids = panel_grids(panels)
    same, zscale, zmax = bool(data.get("same_scale", True)), str(data.get("zscale", "linear")), data.get("zmax")
    style = str(data.get("style", "filled"))
    if style not in ("filled", "lines"):
        raise BnlabError(f"contour style must be filled or lines, got {style!r}")
    shared = value_range([g for _, _, g in grids], zscale, zmax)
    xlim = (min(min(x) for x, _, _ in grids), max(max(x) for x, _, _ in grids))
    ylim = (min(min(y) for _, y, _ in grids), max(max(y) for _, y, _ in grids))
    mappable, levels = None, []
    for ax, panel, (x, y, z) in zip(axes, panels, grids):
        lo, hi = shared if same else value_range([z], zscale, zmax)
        norm = _norm(lo, hi, zscale)
        levels = shared_levels(lo, hi, data.get("levels", 20), zscale)
        zc = on_scale(z, lo, hi)
        if style == "filled":
            mappable = ax.contourf(x, y, zc, levels=levels, norm=norm, cmap=_CMAP)
            ax.contour(x, y, zc, levels=levels[::3], colors="white", linewidths=0.4, alpha=0.7)
        else:
            mappable = ax.contour(x, y, zc, levels=levels, norm=norm, cmap=_CMAP, linewidths=0.8)
        path = panel.get("path")
        if path is not None and len(path):
            pts = np.asarray(path, dtype=float)
            ax.plot(pts[:, 0], pts[:, 1], "-o", color=NORM_COLOURS["none"], markersize=2, linewidth=1)
        if xlim[0] <= 0 <= xlim[1] and ylim[0] <= 0 <= ylim[1]:
            ax.plot([0], [0], marker="+", color="black", markersize=8)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.grid(False)
        _labels(ax, {"xlabel": "direction 1", "ylabel": "direction 2", **panel})
        if not same:
            _colorbar(fig, mappable, ax, label=str(data.get("zlabel", "")))
    if same and mappable is not None:
        _colorbar(fig, mappable, axes, shrink=0.9, label=str(data.get("zlabel", "")))


def draw_surface(fig: Figure, data: Mapping[str, Any]) -> None:
    """3-D surfaces per panel with one z range and one colour scale (`value_range`); on a log ``zscale`` the
    height drawn is log10 of the value."""
    panels = panels_of(data)
    axes = _layout(fig, len(panels), projection="3d")
    grids = panel_grids(panels)
    zscale = str(data.get("zscale", "linear"))
    lo, hi = value_range([g for _, _, g in grids], zscale, data.get("zmax"))
    _norm(lo, hi, zscale)  # validates zscale
    zlo, zhi = (math.log10(lo), math.log10(hi)) if zscale == "log" else (lo, hi)
    norm = Normalize(vmin=zlo, vmax=zhi)  # one colour scale for every panel, on the height drawn
    zlabel = ("log10 " if zscale == "log" else "") + str(data.get("zlabel", ""))
    mappable = None
    for ax, panel, (x, y, z) in zip(axes, panels, grids):
        xx, yy = np.meshgrid(x, y)
        zz = on_scale(z, lo, hi)
        if zscale == "log":
            zz = np.log10(zz)
        mappable = ax.plot_surface(xx, yy, zz, cmap=_CMAP, norm=norm, linewidth=0, antialiased=True)
        ax.set_zlim(zlo, zhi)
        _labels(ax, {"xlabel": "direction 1", "ylabel": "direction 2", **panel})
        if zlabel:
            ax.set_zlabel(zlabel)
    if mappable is not None:
        _colorbar(fig, mappable, axes, shrink=0.7)


def draw_heatmap(fig: Figure, data: Mapping[str, Any]) -> None:
    """A coloured grid per panel (categorical or numeric axes); values printed in small grids.

    ``same_scale`` (default false) shares one colour scale across panels.
    """
    panels = panels_of(data)
    axes = _layout(fig, len(panels))
    grids = []
    for p in panels:
        x, xticks = _axis(p.get("x", []), "x")
        y, yticks = _axis(p.get("y", []), "y")
        grids.append((x, xticks, y, yticks, _grid(p.get("z", []), len(y), len(x), "z")))
    same = bool(data.get("same_scale", False))
    zscale = str(data.get("zscale", "linear"))
    shared = value_range([g[4] for g in grids], zscale)
    mappable = None
    for ax, panel, (x, xticks, y, yticks, z) in zip(axes, panels, grids):
        lo, hi = shared if same else value_range([z], zscale)
        norm = _norm(lo, hi, zscale)
        mappable = ax.pcolormesh(x, y, z, shading="nearest", cmap=_CMAP, norm=norm)
        if xticks is not None:
            ax.set_xticks(x, xticks, rotation=20 if len(x) > 4 else 0)
        if yticks is not None:
            ax.set_yticks(y, yticks)
        if len(x) * len(y) <= 64:
            for j, row in enumerate(z):
                for i, v in enumerate(row):
                    ax.text(x[i], y[j], "—" if math.isnan(v) else f"{v:.3g}", ha="center", va="center",
                            fontsize=7, color="white" if norm(v) < 0.6 else "black")
        ax.grid(False)
        _labels(ax, panel)
        if not same:
            _colorbar(fig, mappable, ax)
    if same and mappable is not None:
        _colorbar(fig, mappable, axes, shrink=0.9)


_DRAW = {"lines": draw_lines, "bars": draw_bars, "contours": draw_contours, "surface": draw_surface,
         "heatmap": draw_heatmap}


def render_figure(spec: Mapping[str, Any], fmt: str | None = None) -> bytes:
    """Draw `spec` and return SVG or PNG bytes (`fmt`, default `figure_format(spec)`); BnlabError for a malformed
    spec. Every figure bnlab makes -- the audit's, the landscape and hessian commands' -- is drawn here."""
    kind = spec.get("kind")
    if kind not in _DRAW:
        raise BnlabError(f"unknown figure kind {kind!r} (known: {', '.join(KINDS)})")
    fmt = figure_format(spec) if fmt is None else fmt
    if fmt not in ("png", "svg"):
        raise BnlabError(f"figure format must be png or svg, got {fmt!r}")
    with matplotlib.rc_context(_RC):
        fig = Figure(layout="constrained", dpi=_DPI)
        _DRAW[kind](fig, spec.get("data", {}))
        if spec.get("title"):
            fig.suptitle(str(spec["title"]), fontsize=10)
        buffer = io.BytesIO()
        if fmt == "svg":
            FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None})
        else:
            FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def save_figure(spec: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Render `spec` and write it atomically; the format comes from the suffix (.png or .svg)."""
    return write_bytes(path, render_figure(spec, fmt=Path(path).suffix.lower().lstrip(".")))
