"""The Hessian of a loss as a linear operator: v -> H v, without touching the user's model.

For parameters θ (all of a model's trainable parameters, or a selected subset: a layer, a block) and data
D = {(x_b, y_b)}, the loss over the set is the size-weighted mean of the per-batch losses,

    L(θ) = Σ_b n_b L_b(θ) / N,        N = Σ_b n_b,

and the operator applies H = ∇²_θ L(θ) to a vector v through a Hessian-vector product (Pearlmutter 1994):
H v = ∇_θ (∇_θ L(θ) · v). With a BN net the Hessian depends on which statistics normalise, so the mode is explicit
(`bnlab.state.bn_mode`): ``"train"`` normalises with each batch's own statistics (BN is then part of the
function being differentiated: the per-batch loss depends on every sample of the batch) and leaves the running
statistics alone; ``"eval"`` uses the stored running statistics (PyHessian's only mode).

Two backends, chosen by measurement (bench/bench_hessian.py; 1 CPU thread, small BN CNN / MLP):

* ``"autograd"`` (default): the gradient graph (``create_graph=True``) is built once per batch and kept, and each
  product is one ``torch.autograd.grad`` through it (PyHessian's retained double backward). Building it again
  for every product cost about the same as a product, so reuse halves the work when products dominate.
* ``"linearize"``: ``torch.func.linearize(grad(L))`` traces forward-over-reverse once (2-3 s of tracing on a CPU)
  and then each product is a replay of the traced JVP, 1.0-1.5x faster per product than ``"autograd"``; worth it
  only for long runs (hundreds of products).

* ``"jvp"``: forward-over-reverse, ``torch.func.jvp(grad(L_b))`` at every product — no graph kept, nothing
  traced. Exact (float64 tests against the dense Hessian in both BN modes, through native and composite BN), but
  on the CPU each product re-runs the forward and the backward with dual numbers: 2.1x slower per product than
  ``"autograd"``'s retained double backward on the narrow VGG with BN (P = 24058, batch 256, 1 thread: 35.6 vs
  16.9 ms in mode eval, 38.0 vs 18.4 ms in mode train). Kept for memory-bound cases (no graph held) and as an
  independent check; ``"autograd"`` stays the default because it is the faster exact one.

Batching several vectors in one call (``is_grads_batched=True`` or ``vmap`` over the linearized JVP) measured
*slower* than a loop on the CPU (1.6x and 2x), so `matvec` of a block of vectors loops over its columns.

The model is evaluated through ``torch.func.functional_call`` with detached copies of the selected parameters as
autograd leaves, so its parameters, ``.grad``, buffers and modes are never written (the `hessian_operator`
context manager additionally restores modes and BN settings through `bn_mode`). Side effects: none on the model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, linearize

from bnlab.data.batches import Batch, as_batches
from bnlab.errors import BnlabError
from bnlab.probes.hessian.composite_bn import CompositeBatchNorm
from bnlab.state import BN_MODES, batchnorm_layers
from bnlab.state import bn_mode as set_bn_mode

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
HVP_BACKENDS: tuple[str, ...] = ("autograd", "linearize", "jvp")


def select_parameters(model: nn.Module, params: Sequence[str] | None = None) -> list[str]:
    """Names of the parameters the Hessian is taken over, in the model's order.

    ``None`` -> every parameter with ``requires_grad``. Otherwise each entry is a parameter name
    (``"features.0.weight"``) or a module prefix (``"features.0"`` selects every parameter under it).
    """
    named = dict(model.named_parameters())
    if params is None:
        chosen = [n for n, p in named.items() if p.requires_grad]
        if not chosen:
            raise BnlabError("the model has no trainable parameters")
        return chosen
    if isinstance(params, str):
        params = [params]
    wanted: set[str] = set()
    for entry in params:
        hits = [n for n in named if n == entry or n.startswith(entry + ".")]
        if not hits:
            raise BnlabError(f"no parameter or module named '{entry}' (parameters: {', '.join(named)})")
        wanted.update(hits)
    return [n for n in named if n in wanted]


class HessianOperator:
    """v -> H v for the Hessian of the (set) loss w.r.t. the selected parameters, on flat vectors of length P.

    Build it through `hessian_operator` (which puts the BN layers in the requested mode). Attributes: ``names``,
    ``shapes`` (per selected parameter), ``dim`` (P), ``dtype``, ``device``, ``bn_mode``, ``backend`` and
    ``products`` (Hessian-vector products computed so far; a block of b vectors counts b).

    ``composite_bn=True`` evaluates torch's native `F.batch_norm` as ordinary ops (`bnlab.probes.hessian.composite_bn`):
    the same function with a cheaper double backward.

    ``reuse_graph=True`` keeps one gradient graph per batch in memory (about 2-3x the activations of a forward
    pass each); for a set too large for that, ``reuse_graph=False`` rebuilds each batch's graph per product.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Any, *, params: Sequence[str] | None = None,
                 bn_mode: str = "train", backend: str = "autograd", reuse_graph: bool = True,
                 composite_bn: bool = True) -> None:
        if backend not in HVP_BACKENDS:
            raise BnlabError(f"backend must be one of {', '.join(HVP_BACKENDS)}, got {backend!r}")
        if bn_mode not in BN_MODES:
            raise BnlabError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.batches = as_batches(data)
        self.bn_mode = bn_mode
        self.backend = backend
        self.reuse_graph = reuse_graph
        self.composite_bn = composite_bn
        self.names = select_parameters(model, params)
        named = dict(model.named_parameters())
        self.shapes = [tuple(named[n].shape) for n in self.names]
        self.numels = [math.prod(s) for s in self.shapes]
        self.dim = sum(self.numels)
        first = named[self.names[0]]
        self.dtype, self.device = first.dtype, first.device
        # the point θ at which H is taken, the parameters held fixed and the buffers: private copies, so nothing
        # done to the model inside the block (a nested probe restoring its state in place) can invalidate a graph
        self.point = {n: named[n].detach().clone() for n in self.names}
        self.fixed = {n: p.detach().clone() for n, p in named.items() if n not in self.point}
        self.fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
        self.total = sum(int(x.shape[0]) for x, _ in self.batches)
        # how many examples each BN statistic is computed over: each batch's own size in mode "train" (one int when
        # the batches agree), none in mode "eval" (running statistics) or for a net without BN
        sizes = sorted({int(x.shape[0]) for x, _ in self.batches})
        self.bn_batch_size: int | list[int] | None = None if bn_mode == "eval" or not batchnorm_layers(model) \
            else sizes[0] if len(sizes) == 1 else sizes
        self.products = 0
        self._graphs: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None
        self._jvp: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
        if backend == "linearize":
            self._jvp = self._build_linearized()
        self._gradient_value: torch.Tensor | None = None
        if backend == "autograd" and reuse_graph:
            built = [self._gradient_graph(b) for b in self.batches]
            self._graphs = [(leaves, grads) for leaves, grads, _ in built]
            self._gradient_value = torch.stack([value for _, _, value in built]).sum(0)  # (P,) ∇L, free here

    # ------------------------------------------------------------------ flat <-> per-parameter
    def flatten(self, tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-parameter tensors (a dict by name or a sequence in ``names`` order) -> one (P,) vector."""
        seq = [tensors[n] for n in self.names] if isinstance(tensors, Mapping) else list(tensors)
        return torch.cat([t.reshape(-1) for t in seq])  # (P,)

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """A (P,) vector -> dict name -> tensor shaped like that parameter (views, no copy)."""
        parts = torch.split(vector, self.numels)
        return {n: part.view(shape) for n, part, shape in zip(self.names, parts, self.shapes)}

    def point_vector(self) -> torch.Tensor:
        """θ, the selected parameters as one (P,) vector."""
        return self.flatten(self.point)

    # ------------------------------------------------------------------ loss and gradient
    def batch_loss(self, batch: Batch, point: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """n_b L_b(θ) / N for one batch at `point` (default: θ); differentiable w.r.t. `point`."""
        x, y = batch
        with CompositeBatchNorm() if self.composite_bn else contextlib.nullcontext():
            out = functional_call(self.model, {**self.fixed, **(point or self.point)}, (x,))
        return self.loss_fn(out, y) * (x.shape[0] / self.total)

    def loss(self, point: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """L(θ), the size-weighted mean of the per-batch losses."""
        return sum(self.batch_loss(b, point) for b in self.batches)  # type: ignore[return-value]

    def gradient(self, vector: torch.Tensor | None = None) -> torch.Tensor:
        """∇L at θ (or at the flat point `vector`) as a (P,) vector; no graph kept."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for b in self.batches:
            leaves = self._leaves(vector)
            grads = torch.autograd.grad(self.batch_loss(b, leaves), list(leaves.values()), allow_unused=True)
            total += self.flatten(self._zeros_for_unused(grads))
        return total

    def _leaves(self, vector: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if vector is None:
            return {n: t.clone().requires_grad_(True) for n, t in self.point.items()}
        return {n: t.detach().clone().requires_grad_(True) for n, t in self.unflatten(vector).items()}

    def _zeros_for_unused(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        return [torch.zeros(s, dtype=self.dtype, device=self.device) if g is None else g
                for g, s in zip(grads, self.shapes)]

    def _gradient_graph(self, batch: Batch) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """(leaves, gradient parts that depend on θ, ∇L_b as a (P,) value) with the graph of ∇L_b kept for
        repeated products."""
        leaves = self._leaves()
        leaf_list = list(leaves.values())
        grads = torch.autograd.grad(self.batch_loss(batch, leaves), leaf_list, create_graph=True,
                                    allow_unused=True)
        value = self.flatten(self._zeros_for_unused([None if g is None else g.detach() for g in grads]))
        # a gradient part that does not depend on θ (unused parameter, or one the loss is linear in) adds nothing
        return leaf_list, [g if g is not None and g.requires_grad else None for g in grads], value  # type: ignore[return-value]

    def loss_gradient(self) -> torch.Tensor:
        """∇L at θ as a (P,) vector: free when the gradient graphs are kept (they hold it), one pass otherwise."""
        if self._gradient_value is None:
            self._gradient_value = self.gradient()
        return self._gradient_value

    def _build_linearized(self) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        def gradient(point: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return grad(self.loss)(point)

        try:
            _, jvp_fn = linearize(gradient, dict(self.point))
        except RuntimeError as exc:  # e.g. a custom autograd.Function without setup_context (no torch.func)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BnlabError(f"backend 'linearize' cannot trace this model ({first[:160]}); "
                             "use backend='autograd'") from None
        return jvp_fn

    # ------------------------------------------------------------------ products
    def _hvp_one(self, v: torch.Tensor) -> torch.Tensor:
        if self._jvp is not None:
            return self.flatten(self._jvp(self.unflatten(v)))
        if self.backend == "jvp":
            return self._hvp_forward_over_reverse(v)
        parts = list(self.unflatten(v).values())
        graphs = self._graphs if self._graphs is not None else (self._gradient_graph(b)[:2] for b in self.batches)
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for leaves, grads in graphs:
            outs = [(g, p) for g, p in zip(grads, parts) if g is not None]
            if not outs:
                continue
            hv = torch.autograd.grad([g for g, _ in outs], leaves, grad_outputs=[p for _, p in outs],
                                     retain_graph=self._graphs is not None, allow_unused=True)
            total += self.flatten(self._zeros_for_unused(hv))
        return total

    def _hvp_forward_over_reverse(self, v: torch.Tensor) -> torch.Tensor:
        """H v = d/dt ∇L(θ + t v) at t = 0, one forward-mode pass over the reverse-mode gradient per batch
        (``torch.func.jvp(grad(L_b))``): no graph is kept between products."""
        tangent = self.unflatten(v.to(self.dtype))
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for b in self.batches:
            def gradient(point: dict[str, torch.Tensor], _b: Batch = b) -> dict[str, torch.Tensor]:
                return grad(lambda p: self.batch_loss(_b, p))(point)

            try:
                _, hv = jvp(gradient, (dict(self.point),), (tangent,))
            except RuntimeError as exc:  # e.g. a custom autograd.Function without forward-mode support
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BnlabError(f"backend 'jvp' cannot differentiate this model ({first[:160]}); "
                                 "use backend='autograd'") from None
            total += self.flatten(hv)
        return total

    def _check(self, v: torch.Tensor) -> None:
        if v.shape[0] != self.dim:
            raise BnlabError(f"vector of length {v.shape[0]} does not match the {self.dim} selected parameters")

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for v of shape (P,) or a block (P, b) -> the same shape. Counts one product per column."""
        self._check(v)
        v = v.to(dtype=self.dtype, device=self.device)
        if v.dim() == 1:
            self.products += 1
            return self._hvp_one(v).detach()  # (P,)
        cols = [self._hvp_one(v[:, j]).detach() for j in range(v.shape[1])]  # b x (P,)
        self.products += v.shape[1]
        return torch.stack(cols, dim=1)  # (P, b)

    __matmul__ = matvec

    def to_scipy(self) -> Any:
        """This operator as a `scipy.sparse.linalg.LinearOperator` (`bnlab.probes.hessian.spectra.scipy_operator`)."""
        from bnlab.probes.hessian.spectra import scipy_operator

        return scipy_operator(self)

    def describe(self) -> dict[str, Any]:
        """Plain data recorded in every result: what the Hessian was taken of."""
        return {"bn_mode": self.bn_mode, "dim": self.dim, "params": list(self.names), "backend": self.backend,
                "batches": len(self.batches), "samples": self.total, "bn_batch_size": self.bn_batch_size,
                "dtype": str(self.dtype).replace("torch.", "")}


@contextlib.contextmanager
def hessian_operator(model: nn.Module, loss_fn: LossFn, data: Any, *, params: Sequence[str] | None = None,
                     bn_mode: str = "train", backend: str = "autograd", reuse_graph: bool = True,
                     composite_bn: bool = True) -> Iterator[HessianOperator]:
    """A `HessianOperator` for `model` in BN mode `bn_mode`, valid inside the ``with`` block.

    Take every product inside the block: with ``reuse_graph=False`` each product runs the model's forward
    again, which must see BN in `bn_mode`. On exit every module's train/eval mode and BN setting is restored
    (parameters, buffers and ``.grad`` are never written in the first place).
    """
    if bn_mode not in BN_MODES:
        raise BnlabError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    with set_bn_mode(model, bn_mode):
        yield HessianOperator(model, loss_fn, data, params=params, bn_mode=bn_mode, backend=backend,
                              reuse_graph=reuse_graph, composite_bn=composite_bn)


class MatrixOperator:
    """A dense symmetric matrix behind the same interface as `HessianOperator` (matvec, dim, dtype, device,
    products, describe): lets the estimators run on a known spectrum (tests) or on a Hessian built densely."""

    def __init__(self, matrix: torch.Tensor, *, bn_mode: str | None = None) -> None:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise BnlabError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim = matrix.shape[0]
        self.dtype, self.device = matrix.dtype, matrix.device
        self.bn_mode = bn_mode
        self.products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.products += 1 if v.dim() == 1 else v.shape[1]
        return self.matrix @ v.to(self.dtype)  # (P,) or (P, b)

    __matmul__ = matvec

    def to_scipy(self) -> Any:
        """This operator as a `scipy.sparse.linalg.LinearOperator` (`bnlab.probes.hessian.spectra.scipy_operator`)."""
        from bnlab.probes.hessian.spectra import scipy_operator

        return scipy_operator(self)

    def describe(self) -> dict[str, Any]:
        return {"bn_mode": self.bn_mode, "dim": self.dim, "params": [], "backend": "dense",
                "batches": 0, "samples": 0, "dtype": str(self.dtype).replace("torch.", "")}
