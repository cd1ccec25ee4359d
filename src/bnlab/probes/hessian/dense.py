"""Dense Hessians: the oracles the iterative estimators are tested against (small models only, P ≲ 5000).

* `dense_hessian`: row by row by double backward. With g = ∇_θ L(θ) built with ``create_graph=True``, row i is
  ∂g_i/∂θ = ∇_θ g_i (one backward through the retained gradient graph per row); the result is symmetrised,
  ½(H + Hᵀ), and the asymmetry before symmetrising is reported so a caller can check it is at round-off level.
* `finite_difference_hessian`: column j by central differences of the gradient,
  H e_j ≈ (∇L(θ + h e_j) − ∇L(θ − h e_j)) / 2h, error O(h²) — an independent check that shares no
  second-order autograd code with the above.

Deliberately *not* ``torch.func.hessian``: through a train-mode BN net in torch 2.13 it (jacfwd over jacrev) and
``jacrev(jacrev(f))`` disagree with finite differences by ~0.07 while double backward, ``jvp(grad(f))`` and
``jacfwd(grad(f))`` agree (see tests/test_probes_hessian.py, which keeps that finding as a regression test).
"""

from __future__ import annotations

import torch

from bnlab.errors import BnlabError
from bnlab.probes.hessian.operator import HessianOperator

MAX_DENSE_DIM = 20000


def _check_size(op: HessianOperator) -> None:
    if op.dim > MAX_DENSE_DIM:
        raise BnlabError(f"a dense Hessian of {op.dim} parameters is too large (at most {MAX_DENSE_DIM})")


def dense_hessian(op: HessianOperator) -> tuple[torch.Tensor, float]:
    """(H, asymmetry): the (P, P) Hessian of ``op``'s loss by double backward, symmetrised, and
    max|H − Hᵀ| / max|H| before symmetrising. Call inside the `hessian_operator` block."""
    _check_size(op)
    rows = torch.zeros(op.dim, op.dim, dtype=op.dtype, device=op.device)  # (P, P)
    for batch in op.batches:
        leaves = op._leaves()
        leaf_list = list(leaves.values())
        grads = torch.autograd.grad(op.batch_loss(batch, leaves), leaf_list, create_graph=True,
                                    allow_unused=True)
        g = op.flatten(op._zeros_for_unused(grads))  # (P,)
        if not g.requires_grad:
            continue  # the loss is linear in θ: its Hessian is zero
        for i in range(op.dim):
            row = torch.autograd.grad(g[i], leaf_list, retain_graph=True, allow_unused=True)
            rows[i] += op.flatten(op._zeros_for_unused(row))
    scale = rows.abs().max().clamp_min(torch.finfo(rows.dtype).tiny)
    asymmetry = float((rows - rows.T).abs().max() / scale)
    return 0.5 * (rows + rows.T), asymmetry


def finite_difference_hessian(op: HessianOperator, step: float = 1e-5) -> torch.Tensor:
    """(P, P) Hessian by central differences of the gradient, column by column (use float64)."""
    _check_size(op)
    theta = op.point_vector().detach().clone()  # (P,)
    cols = []
    for j in range(op.dim):
        e = torch.zeros_like(theta)
        e[j] = step
        cols.append((op.gradient(theta + e) - op.gradient(theta - e)) / (2 * step))  # (P,)
    return torch.stack(cols, dim=1)  # (P, P)
