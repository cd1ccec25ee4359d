"""A roughness number read from a landscape: mean absolute second difference near the centre.

For a surface ``L[j, i]`` on a regular grid with spacings ``hx``, ``hy``, at every interior point within
``radius`` of the centre (``sqrt(x^2 + y^2) <= radius``),

    kx = (L[j, i+1] - 2 L[j, i] + L[j, i-1]) / hx^2        ky = (L[j+1, i] - 2 L[j, i] + L[j-1, i]) / hy^2

and the roughness is ``mean((|kx| + |ky|) / 2)``: the average magnitude of the curvature along the grid axes, in
loss units per (direction unit)^2. For a curve it is ``mean |k|``.

Why it is comparable between a BN and a no-BN net: with filter-normalised directions (Li et al. 2018) one unit
along a direction moves every filter by its own norm, so the coordinates do not depend on the scale of the weights
-- a BN net, whose loss is invariant to rescaling a filter, gets the same surface whatever its weight norms; the loss
is the same cross-entropy on the same data for both nets, in nats. Dividing by ``h^2`` makes the number independent
of the grid resolution (for a smooth surface it converges to the mean |second derivative|). It grows with both
sharpness (a steep bowl) and ruggedness (bumps, cliffs); the companion `negative_curvature_fraction` isolates
non-convexity (the fraction of those stencils with k < 0).

Ruggedness (`quadratic_residual`) separates the two: the share of the surface's variation within ``radius`` that the
best quadratic bowl does not explain. A bowl of any sharpness scores 0; cliffs, ravines and bumps score up to 1.

Non-finite values (a loss that overflowed on a cliff) are replaced by the largest finite value of the landscape
before differencing, so a cliff counts as a large step rather than vanishing from the mean.
"""

from __future__ import annotations

import numpy as np

from bnlab.errors import BnlabError


def _clean(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).copy()
    finite = np.isfinite(v)
    if not finite.any():
        raise BnlabError("the landscape has no finite value")
    v[~finite] = v[finite].max()
    return v


def _curvatures(values: np.ndarray, x: np.ndarray, y: np.ndarray | None, radius: float | None) -> list[np.ndarray]:
    if radius is not None and not radius > 0:
        raise BnlabError(f"roughness radius must be > 0, got {radius}")
    v = _clean(values)
    x = np.asarray(x, dtype=np.float64)
    if y is None:
        if v.ndim != 1 or len(v) != len(x) or len(x) < 3:
            raise BnlabError("a curve needs values and t of the same length >= 3")
        h = x[1] - x[0]
        k = (v[2:] - 2 * v[1:-1] + v[:-2]) / h**2  # (n-2,)
        inside = np.abs(x[1:-1]) <= (np.inf if radius is None else radius + 1e-12)
        if not inside.any():
            raise BnlabError(f"no interior grid point within radius {radius}")
        return [k[inside]]
    y = np.asarray(y, dtype=np.float64)
    if v.shape != (len(y), len(x)) or len(x) < 3 or len(y) < 3:
        raise BnlabError(f"a surface needs values of shape (len(y), len(x)) >= (3, 3), got {v.shape}")
    hx, hy = x[1] - x[0], y[1] - y[0]
    kx = (v[1:-1, 2:] - 2 * v[1:-1, 1:-1] + v[1:-1, :-2]) / hx**2  # (ny-2, nx-2)
    ky = (v[2:, 1:-1] - 2 * v[1:-1, 1:-1] + v[:-2, 1:-1]) / hy**2  # (ny-2, nx-2)
    xx, yy = np.meshgrid(x[1:-1], y[1:-1])  # (ny-2, nx-2)
    inside = np.hypot(xx, yy) <= (np.inf if radius is None else radius + 1e-12)
    if not inside.any():
        raise BnlabError(f"no interior grid point within radius {radius}")
    return [kx[inside], ky[inside]]


def roughness(values: np.ndarray, x: np.ndarray, y: np.ndarray | None = None, radius: float | None = None) -> float:
    """Mean |second difference| / h^2 within `radius` of the centre (surface: values (len(y), len(x)); curve:
    values (len(x),) and y None)."""
    ks = _curvatures(values, x, y, radius)
    return float(np.mean(np.mean([np.abs(k) for k in ks], axis=0)))


def negative_curvature_fraction(values: np.ndarray, x: np.ndarray, y: np.ndarray | None = None,
                                radius: float | None = None) -> float:
    """Fraction of the second differences within `radius` that are negative (non-convex spots)."""
    ks = _curvatures(values, x, y, radius)
    return float(np.mean(np.concatenate(ks) < 0))


def quadratic_residual(values: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float | None = None) -> float:
    """Ruggedness of a surface: sqrt(SS_res / SS_tot) of the least-squares quadratic fit within `radius`.

    Over the grid points with sqrt(x² + y²) <= radius (all points when None), fit
    L ≈ c₀ + c₁x + c₂y + c₃x² + c₄xy + c₅y² by least squares (float64) and return
    sqrt(Σ (L − L̂)² / Σ (L − mean L)²) = sqrt(1 − R²): the share of the surface's standard deviation that a
    quadratic bowl does not explain. Dimensionless, in [0, 1], unchanged by adding a quadratic, by scaling the
    loss, or by how sharp the bowl is (which `roughness` measures). 0 for a constant surface (nothing to explain).
    Non-finite values are cleaned as for `roughness`. BnlabError for a bad shape or fewer than 6 points in radius.
    """
    if radius is not None and not radius > 0:
        raise BnlabError(f"ruggedness radius must be > 0, got {radius}")
    v = _clean(values)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if v.shape != (len(y), len(x)):
        raise BnlabError(f"a surface needs values of shape (len(y), len(x)), got {v.shape}")
    xx, yy = np.meshgrid(x, y)  # (ny, nx)
    inside = np.hypot(xx, yy) <= (np.inf if radius is None else radius + 1e-12)
    if inside.sum() < 6:
        raise BnlabError(f"a quadratic fit needs >= 6 grid points within radius {radius}, got {int(inside.sum())}")
    px, py, z = xx[inside], yy[inside], v[inside]  # (m,)
    design = np.stack([np.ones_like(px), px, py, px**2, px * py, py**2], axis=1)  # (m, 6)
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)  # (6,)
    ss_res = float(np.sum((z - design @ coef) ** 2))
    ss_tot = float(np.sum((z - z.mean()) ** 2))
    return 0.0 if ss_tot == 0 else float(np.sqrt(min(1.0, ss_res / ss_tot)))
