"""Spectral density of a Hessian by stochastic Lanczos quadrature (SLQ).

The spectral density φ(t) = (1/P) Σ_i δ(t − λ_i) is estimated as in Ghorbani, Krishnan & Xiao (ICML 2019,
Sec. 3) and Lin, Saad & Yang (SIAM Review 2016): for a unit start vector v with E[vvᵀ] = I/P (here Rademacher/√P),
m Lanczos steps give T_m = S diag(θ) Sᵀ and the Gauss quadrature

    vᵀ f(H) v ≈ Σ_j τ_j² f(θ_j),   τ_j = S_{1j}   (exact for polynomials f of degree ≤ 2m − 1),

so E_v[Σ_j τ_j² δ(t − θ_j)] matches φ in its first 2m − 1 moments. Averaging over `runs` start vectors and
smoothing each node with a Gaussian of width σ gives a density on a grid

    φ̂(t) = (1/runs) Σ_r Σ_j τ_{rj}² N(t; θ_{rj}, σ²),

which is renormalised to integrate to 1 on the grid (trapezoid rule); ``mass_on_grid`` is the integral before
that step (≈ 1: the grid extends 5σ past the extreme nodes). Its mean equals the quadrature's, and its variance is
the quadrature's plus σ².
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from bnlab.errors import BnlabError
from bnlab.probes.hessian.lanczos import Operator, lanczos
from bnlab.probes.hessian.trace import rademacher


@dataclass
class DensityResult:
    """A spectral density on a grid plus the quadrature it came from."""

    grid: list[float]
    density: list[float]  # integrates to 1 over `grid` (trapezoid)
    nodes: list[list[float]]  # per run: Ritz values θ_j
    weights: list[list[float]]  # per run: τ_j², summing to 1
    sigma: float
    runs: int
    steps: int
    products: int
    seed: int
    mass_on_grid: float
    info: dict[str, Any] = field(default_factory=dict)

    def moment(self, p: int) -> float:
        """The quadrature's p-th moment, an estimate of tr(H^p)/P (unbiased for p ≤ 2·steps − 1)."""
        return sum(sum(w * t**p for t, w in zip(ts, ws)) for ts, ws in zip(self.nodes, self.weights)) / self.runs

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid, "density": self.density, "nodes": self.nodes, "weights": self.weights,
                "sigma": self.sigma, "runs": self.runs, "steps": self.steps, "products": self.products,
                "seed": self.seed, "mass_on_grid": self.mass_on_grid, **self.info}


def lanczos_quadrature(op: Operator, start: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(nodes θ (m,), weights τ² (m,)) of the Gauss quadrature for vᵀ f(H) v, v = start/‖start‖."""
    run = lanczos(op, start, steps)
    theta, s, _ = run.ritz()
    return theta, s[0] ** 2


def smoothed_density(nodes: list[torch.Tensor], weights: list[torch.Tensor], grid: torch.Tensor,
                     sigma: float) -> tuple[torch.Tensor, float]:
    """(φ̂ on `grid` normalised to integrate to 1, its mass before normalising) from per-run quadratures.

    Lets several spectra be drawn on one grid with one σ (side-by-side comparisons)."""
    dens = torch.zeros_like(grid, dtype=torch.float64)  # (G,)
    for theta, tau2 in zip(nodes, weights):
        theta, tau2 = torch.as_tensor(theta, dtype=torch.float64), torch.as_tensor(tau2, dtype=torch.float64)
        z = (grid[:, None] - theta[None, :]) / sigma  # (G, m)
        dens += (torch.exp(-0.5 * z**2) * tau2[None, :]).sum(dim=1) / (sigma * math.sqrt(2 * math.pi))  # (G,)
    dens /= max(len(nodes), 1)
    mass = float(torch.trapezoid(dens, grid))
    return dens / mass, mass


def slq_density(op: Operator, *, runs: int = 4, steps: int = 60, grid_points: int = 512,
                sigma: float | None = None, relative_sigma: float = 0.01, seed: int = 0) -> DensityResult:
    """Spectral density by SLQ; σ defaults to `relative_sigma` × the width of the spectrum found."""
    if runs < 1 or steps < 1 or grid_points < 16:
        raise BnlabError(f"need runs >= 1, steps >= 1, grid_points >= 16; got {runs}, {steps}, {grid_points}")
    if sigma is not None and not sigma > 0:
        raise BnlabError(f"sigma must be positive, got {sigma}")
    gen = torch.Generator().manual_seed(seed)
    start = op.products
    nodes, weights = [], []
    for _ in range(runs):
        theta, tau2 = lanczos_quadrature(op, rademacher((op.dim,), gen, op.dtype, op.device), steps)
        nodes.append(theta)
        weights.append(tau2)
    all_nodes = torch.cat(nodes)  # (Σm,)
    lo, hi = float(all_nodes.min()), float(all_nodes.max())
    width = hi - lo if hi > lo else max(abs(hi), 1.0)
    sig = sigma if sigma is not None else relative_sigma * width
    grid = torch.linspace(lo - 5 * sig, hi + 5 * sig, grid_points, dtype=torch.float64)  # (G,)
    dens, mass = smoothed_density(nodes, weights, grid, sig)
    return DensityResult(
        grid=grid.tolist(), density=dens.tolist(), nodes=[t.tolist() for t in nodes],
        weights=[w.tolist() for w in weights], sigma=sig, runs=runs, steps=steps,
        products=op.products - start, seed=seed, mass_on_grid=mass, info=op.describe())
