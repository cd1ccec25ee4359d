"""Regular grids of landscape coordinates that contain the centre exactly.

An axis is ``steps`` evenly spaced values from ``lo`` to ``hi``; when the range straddles 0, the value 0 (the
trained model itself) must be one of the grid points, exactly -- a landscape that never evaluates its centre (as
loss-landscapes 3.0.6 does for odd step counts) cannot show the minimum it is drawn around. Points of a plane are
ordered row by row: row ``j`` holds ``y[j]``, column ``i`` holds ``x[i]``; ``values[j, i]`` is the value at
``(x[i], y[j])`` (matplotlib's ``contour(x, y, Z)`` convention).
"""

from __future__ import annotations

import numpy as np

from bnlab.errors import BnlabError


def axis(lo: float, hi: float, steps: int) -> np.ndarray:
    """``steps`` values from `lo` to `hi` (float64); 0 is hit exactly when ``lo < 0 < hi``."""
    if steps < 2:
        raise BnlabError(f"a landscape axis needs at least 2 steps, got {steps}")
    if not hi > lo:
        raise BnlabError(f"axis range must have lo < hi, got [{lo}, {hi}]")
    values = np.linspace(lo, hi, steps)
    if lo < 0 < hi:
        k = int(np.argmin(np.abs(values)))
        if abs(values[k]) > 1e-9 * (hi - lo):
            raise BnlabError(f"the grid [{lo}, {hi}] with {steps} steps misses the centre 0; "
                             "use an odd number of steps for a symmetric range")
        values[k] = 0.0
    return values


def symmetric_axis(radius: float, steps: int) -> np.ndarray:
    """``steps`` (odd) values from ``-radius`` to ``radius`` with 0 in the middle."""
    if radius <= 0:
        raise BnlabError(f"range must be > 0, got {radius}")
    return axis(-radius, radius, steps)


def plane_points(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(len(y) * len(x), 2) coordinates, row by row: point ``j * len(x) + i`` is ``(x[i], y[j])``."""
    xx, yy = np.meshgrid(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))  # (ny, nx) each
    return np.stack([xx.ravel(), yy.ravel()], axis=1)  # (ny * nx, 2)

