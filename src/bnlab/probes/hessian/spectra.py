"""The spectra users of Hessian tools ask for: λ_min and λ_min/λ_max, per-block spectra from one graph, and any
bnlab operator as a `scipy.sparse.linalg.LinearOperator`.

* `extremes(op)`: λ_max (``which="largest"``) and λ_min (``which="smallest"``) by Lanczos, and λ_min / λ_max — how
  much negative curvature there is relative to the sharpest direction (Ghorbani et al. 2019 report it through
  training; PyHessian and hessian-eigenthings users ask for λ_min).
* `blocks(op)` / `block_eigenpairs(op)`: the diagonal blocks H_bb of the Hessian, one per layer (the parameters of
  one module: ``features.0.weight`` and ``features.0.bias`` are block ``features.0``) or per named group. A block's
  product is H_bb v_b = [H (v_b embedded with zeros)]_b, so every block is served by the one gradient graph the
  operator keeps (``reuse_graph=True``); each product costs one full Hessian-vector product.
* `scipy_operator(op)`: v ↦ H v in float64 numpy, so `scipy.sparse.linalg.eigsh` (ARPACK) or any scipy solver runs
  on bnlab's Hessian in either BN mode; products are counted on `op` as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bnlab.errors import BnlabError
from bnlab.probes.hessian.lanczos import EigenResult, lanczos_eigenpairs


class BlockOperator:
    """The diagonal block H[s, s] of an operator for the flat index range s = [start, stop)."""

    def __init__(self, op: Any, start: int, stop: int, name: str = "") -> None:
        if not 0 <= start < stop <= op.dim:
            raise BnlabError(f"block [{start}, {stop}) is not inside the operator's {op.dim} parameters")
        self.op, self.start, self.stop, self.name = op, start, stop, name
        self.dim, self.dtype, self.device = stop - start, op.dtype, op.device

    @property
    def products(self) -> int:
        return self.op.products

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        full = torch.zeros((self.op.dim, *v.shape[1:]), dtype=self.dtype, device=self.device)  # (P,) or (P, b)
        full[self.start:self.stop] = v.to(self.dtype)
        return self.op.matvec(full)[self.start:self.stop]

    __matmul__ = matvec

    def describe(self) -> dict[str, Any]:
        return {**self.op.describe(), "block": self.name, "block_dim": self.dim}


def blocks(op: Any, groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, tuple[int, int]]:
    """Block name -> flat index range. Default: one block per module (parameter names up to the last dot), in the
    operator's order; `groups` maps a block name to parameter names (contiguous in ``op.names``)."""
    starts, at = {}, 0
    for name, numel in zip(op.names, op.numels):
        starts[name] = (at, at + numel)
        at += numel
    if groups is None:
        groups = {}
        for name in op.names:
            groups.setdefault(name.rsplit(".", 1)[0] if "." in name else name, []).append(name)  # type: ignore[union-attr]
    out = {}
    for block, names in groups.items():
        missing = [n for n in names if n not in starts]
        if missing or not names:
            raise BnlabError(f"block {block!r} names parameters the operator does not hold: {missing or names}")
        ranges = sorted(starts[n] for n in names)
        if any(a[1] != b[0] for a, b in zip(ranges, ranges[1:])):
            raise BnlabError(f"block {block!r}: its parameters are not contiguous in the operator's order")
        out[block] = (ranges[0][0], ranges[-1][1])
    return out


def block_eigenpairs(op: Any, *, k: int = 1, which: str = "largest", tol: float = 1e-4, seed: int = 0,
                     groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, EigenResult]:
    """Block name -> the top-k eigenpairs of that diagonal block (Lanczos, random start: a block has no gradient
    of its own to start from)."""
    return {name: lanczos_eigenpairs(BlockOperator(op, a, b, name), k=min(k, b - a), which=which, tol=tol,
                                     seed=seed, start="random")
            for name, (a, b) in blocks(op, groups).items()}


def extremes(op: Any, *, tol: float = 1e-4, seed: int = 0, max_steps: int | None = None) -> dict[str, Any]:
    """λ_max, λ_min, λ_min / λ_max and the products each took (two Lanczos runs)."""
    top = lanczos_eigenpairs(op, which="largest", tol=tol, seed=seed, max_steps=max_steps)
    low = lanczos_eigenpairs(op, which="smallest", tol=tol, seed=seed, max_steps=max_steps)
    lmax, lmin = top.eigenvalues[0], low.eigenvalues[0]
    return {"largest": lmax, "smallest": lmin, "ratio": lmin / lmax if lmax != 0 else float("nan"),
            "converged": top.converged and low.converged, "products": top.products + low.products}


def scipy_operator(op: Any) -> Any:
    """`op` as a `scipy.sparse.linalg.LinearOperator` of shape (P, P), float64 in and out."""
    from scipy.sparse.linalg import LinearOperator  # scipy.sparse is heavy: imported on use

    def matvec(v: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(op.dim), dtype=op.dtype, device=op.device)
        return op.matvec(x).detach().to("cpu", torch.float64).numpy()

    def matmat(m: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(m, dtype=np.float64), dtype=op.dtype, device=op.device)  # (P, b)
        return op.matvec(x).detach().to("cpu", torch.float64).numpy()

    return LinearOperator((op.dim, op.dim), matvec=matvec, matmat=matmat, rmatvec=matvec, dtype=np.float64)
