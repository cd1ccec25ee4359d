"""Gradient flow through depth: per-layer gradient norms and input–output Jacobian spectra (claim C11).

Yang et al. (2019, "A mean field theory of batch normalization", Thm 3.10) prove that at initialisation the
gradients of a deep *plain* BN network explode going backwards: ‖∂L/∂W_l‖² grows by about π/(π−1) ≈ 1.467 per
ReLU layer (large batch, infinite width). This module measures what is needed to test that, on any `nn.Module`.

What is measured (all precisely defined; nothing here updates parameters or BN buffers)
---------------------------------------------------------------------------------------
*Weight layers* are the ``nn.Linear`` / ``nn.Conv{1,2,3}d`` modules in registration order (`weight_layers`), which
is forward order for bnlab's models and any ``nn.Sequential``. Call h_l the input of weight layer l (h_0 = the
network input, possibly flattened) and h_{L} = the network output.

* **Gradient norms** (`layer_gradient_norms`): for the loss L of one batch, ‖∂L/∂W_l‖²_F of every weight layer and
  ‖∂L/∂h_l‖²_F of the signal entering it (summed over the batch).
* **Batch Jacobians.** The network is treated as a map of the whole batch, F: X ∈ R^{N×d_0} → Y ∈ R^{N×d_out}:

  - ``bn="eval"``: BN uses its running statistics, examples do not interact, the batch Jacobian is block
    diagonal with the per-example Jacobians ∂f(x_i)/∂x_i, so its singular values are the union of the
    per-example ones (this is the per-example input–output Jacobian);
  - ``bn="train"``: BN normalises with the statistics of this very batch, so every output depends on every input
    of the batch and the Jacobian (N·d_out × N·d_0) couples examples. Each BN layer projects out the batch-mean
    and batch-x̂ directions of every unit (claim C08), which adds zero singular values.

  The **layer Jacobian** J_l = ∂h_{l+1}/∂h_l maps the input of weight layer l to the input of weight layer l+1
  (the network output for the last layer), in the same batch sense; for a residual block with one weight layer
  it includes the skip connection. It is meaningful for chains of weight layers (MLPs, plain/residual nets with
  one weight layer per block, plain CNNs).
* **Estimators** of a Jacobian's spectrum from Jacobian-vector products (J v) and vector-Jacobian products (Jᵀu):

  - `mean_squared_singular_value`: ‖J‖²_F / n_in, the mean squared gain of an isotropic random input direction
    (the mean of σ² for a square J), by Hutchinson's estimator E_u ‖Jᵀu‖² = ‖J‖²_F, u ~ N(0, I) (VJPs only);
  - `singular_values(jac, k)`: the top k singular values by randomized subspace iteration (Halko, Martinsson &
    Tropp 2011, Alg. 4.4); exact (up to rounding) once k ≥ min(n_in, n_out); ``k=None`` gives the dense spectrum
    from n_out VJPs against the output basis.

  The whole network's Jacobian uses ``torch.func.jvp`` / ``torch.func.vjp`` over ``functional_call``
  (`network_jacobian`, ``method="func"``) or the autograd graph (``method="autograd"``); layer Jacobians are
  taken on the autograd graph of one forward pass (`layer_jacobians`), with J v computed by the double-VJP
  identity J v = ∂/∂u ⟨Jᵀu, v⟩ (needs double backward through the layers,
  which torch's and bnlab's BN provide).

Products with several probe vectors are looped, not vmapped: on CPU the loop took 0.86–1.08× the time of batched
VJPs (``autograd.grad(..., is_grads_batched=True)``) for the 52 layer Jacobians of a depth-50, width-256 net at
batch 128 with torch's BN (`bench/bench_gradflow.py`), and batched VJPs fail through bnlab's BN backward, which
works in place.

Side effects: none. Every entry point restores the model's mode, BN buffers and settings, gradients and the global
RNG (`bnlab.state.preserved_state`); random probes come from a private, seeded ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bnlab.config import from_mapping, to_mapping
from bnlab.errors import BnlabError
from bnlab.state import BN_MODES, bn_mode, preserved_state

# Yang et al. 2019 (ICLR, arXiv:1902.08129): at initialisation, in a deep plain ReLU net with BN, ‖∂L/∂W_l‖² grows
# by π/(π−1) ≈ 1.467 per layer towards the input (batch size → ∞): the reference for `fit_growth_factor`.
YANG_RELU: float = math.pi / (math.pi - 1)

WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear / Conv modules of `model` in registration order (forward order for sequential models)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


def _check_bn(bn: str) -> None:
    if bn not in BN_MODES:
        raise BnlabError(f"bn mode must be one of {', '.join(BN_MODES)}, got {bn!r}")


def _resolve_layers(model: nn.Module, layers: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    if layers is None:
        found = weight_layers(model)
        if not found:
            raise BnlabError("gradient flow: the model has no nn.Linear / nn.Conv layers to measure")
        return found
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise BnlabError(f"gradient flow: no module named {missing[0]!r} in the model")
    weightless = [name for name in layers if not isinstance(getattr(modules[name], "weight", None), torch.Tensor)]
    if weightless:
        raise BnlabError(f"gradient flow: module {weightless[0]!r} has no weight tensor")
    return [(name, modules[name]) for name in layers]


@contextlib.contextmanager
def _capture_inputs(guard: Any, modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Forward pre-hooks (removed by the state guard) that record each module's first input tensor."""
    captured: list[torch.Tensor | None] = [None] * len(modules)

    def hook_for(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if captured[i] is not None:
                raise BnlabError("gradient flow: a weight layer is called twice in one forward pass (shared "
                                 "weights); name the layers to measure explicitly")
            captured[i] = args[0]

        return hook

    for i, m in enumerate(modules):
        guard.add_hook(m.register_forward_pre_hook(hook_for(i)))
    yield captured


# --------------------------------------------------------------------------------------------- gradient norms


def layer_gradient_norms(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    bn: str = "train",
    layers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """‖∂L/∂W_l‖²_F and ‖∂L/∂h_l‖²_F for every weight layer l, for the loss of one batch.

    `bn` picks how BN normalises ("train": batch statistics, Yang et al.'s setting; "eval": running statistics);
    every other module (Dropout) is in eval mode. Returns plain data: ``layers`` (names), ``weight_grad_sq``,
    ``input_grad_sq`` (lists, one entry per layer) and ``loss``.
    """
    _check_bn(bn)
    named = _resolve_layers(model, layers)
    x, y = batch
    with preserved_state(model, params=False) as guard, bn_mode(model, bn):
        for _, m in named:
            m.weight.requires_grad_(True)  # frozen weights too (restored on exit)
        x0 = x.detach().requires_grad_(True)  # so that h_0 (the flattened input) is on the graph
        with _capture_inputs(guard, [m for _, m in named]) as inputs:
            out = model(x0)
        loss = loss_fn(out, y)
        unused = [name for (name, _), h in zip(named, inputs) if h is None]
        if unused:
            raise BnlabError(f"gradient flow: layer {unused[0]!r} was not called in the forward pass")
        weights = [m.weight for _, m in named]
        grads = torch.autograd.grad(loss, [*weights, *inputs], allow_unused=True)
    n = len(named)

    def sq(g: torch.Tensor | None) -> float:
        return 0.0 if g is None else float(g.detach().double().pow(2).sum())

    return {
        "layers": [name for name, _ in named],
        "weight_grad_sq": [sq(g) for g in grads[:n]],
        "input_grad_sq": [sq(g) for g in grads[n:]],
        "loss": float(loss.detach()),
    }


def fit_growth_factor(sq_norms: Sequence[float], *, skip_first: int = 1, skip_last: int = 1) -> float:
    """Per-layer backward growth factor of squared gradient norms: exp(−b) for the least-squares fit
    log g_l = a + b·l over layers skip_first … L−1−skip_last (the input and output layers differ from the bulk).

    A value of 1.467 means ‖∂L/∂W_l‖² is 1.467× larger one layer closer to the input (Yang et al.'s ReLU rate);
    1 means no vanishing or explosion. Zero or non-finite norms are an error (the fit would be meaningless).
    """
    values = list(sq_norms)[skip_first: len(sq_norms) - skip_last]
    if len(values) < 2:
        raise BnlabError(f"growth factor: need at least 2 layers after trimming, got {len(values)}")
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise BnlabError("growth factor: gradient norms must be positive and finite")
    logs = [math.log(v) for v in values]
    n = len(logs)
    mean_l = (n - 1) / 2
    mean_y = sum(logs) / n
    slope = sum((i - mean_l) * (v - mean_y) for i, v in enumerate(logs)) / sum((i - mean_l) ** 2 for i in range(n))
    return math.exp(-slope)


# --------------------------------------------------------------------------------------------- Jacobians


@dataclass(frozen=True)
class JacobianMap:
    """A Jacobian J: R^{in_shape} → R^{out_shape} available only through products with vectors.

    ``matvec(v)`` = J v (v has `in_shape`), ``rmatvec(u)`` = Jᵀ u (u has `out_shape`). Valid only inside the
    context manager that produced it (`network_jacobian`, `layer_jacobians`).
    """

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    matvec: Callable[[torch.Tensor], torch.Tensor]
    rmatvec: Callable[[torch.Tensor], torch.Tensor]
    dtype: torch.dtype
    device: torch.device

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)


def yang_linear(batch_size: int) -> float:
    """Yang et al.'s per-layer gradient explosion rate for a deep linear BN net with batch size B: (B−2)/(B−3)."""
    if batch_size <= 3:
        raise BnlabError(f"Yang's linear rate needs batch size > 3, got {batch_size}")
    return (batch_size - 2) / (batch_size - 3)


def jacobian_gain(msv: Sequence[float]) -> float:
    """End-to-end squared gain of the hidden blocks, Σ_l log10 msv_l of their layer Jacobians (the first and last
    entries, stem and head, excluded): 0 = norms preserved on average. NaN when a layer's msv is not a positive
    finite number."""
    bulk = list(msv)[1:-1]
    if not bulk or any(not (math.isfinite(v) and v > 0) for v in bulk):
        return math.nan
    return sum(math.log10(v) for v in bulk)


def gradient_spread(weight_grad_sq: Sequence[float]) -> float:
    """|log10(‖∂L/∂W_first‖² / ‖∂L/∂W_last‖²)| of the first and last hidden layer (entries 1 and −2; vanishing and
    exploding count alike). NaN with fewer than 3 layers or a non-positive / non-finite norm."""
    if len(weight_grad_sq) < 3:
        return math.nan
    first, last = weight_grad_sq[1], weight_grad_sq[-2]
    if not (math.isfinite(first) and math.isfinite(last) and first > 0 and last > 0):
        return math.nan
    return abs(math.log10(first / last))


JACOBIAN_METHODS: tuple[str, ...] = ("func", "autograd")


@contextlib.contextmanager
def network_jacobian(model: nn.Module, x: torch.Tensor, *, bn: str = "eval",
                     method: str = "func") -> Iterator[JacobianMap]:
    """The batch Jacobian ∂F(X)/∂X of the whole network (see the module docstring for the two BN modes).

    ``method="func"``: ``torch.func.jvp`` / ``torch.func.vjp`` over ``torch.func.functional_call`` with detached
    parameters (true forward-mode JVPs). It needs every custom ``autograd.Function`` in the model to support
    functorch transforms (a ``setup_context``); bnlab's from-scratch BN in train mode does not, so use
    ``method="autograd"`` there: VJPs on the retained graph of one forward pass and JVPs by double VJP.
    """
    _check_bn(bn)
    if method not in JACOBIAN_METHODS:
        raise BnlabError(f"jacobian method must be one of {', '.join(JACOBIAN_METHODS)}, got {method!r}")
    with preserved_state(model, params=False), bn_mode(model, bn):
        x0 = x.detach()
        if method == "autograd":
            x0 = x0.requires_grad_(True)
            out = model(x0)
            g = _GraphJacobian(x0, out)
            yield JacobianMap("network", tuple(x0.shape), tuple(out.shape), g.matvec, g.rmatvec, x0.dtype,
                              x0.device)
            return
        state = {k: v.detach() for k, v in [*model.named_parameters(), *model.named_buffers()]}

        def f(inp: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(model, state, (inp,))

        out, vjp_fn = torch.func.vjp(f, x0)

        def matvec(v: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(f, (x0,), (v,))[1].detach()

        def rmatvec(u: torch.Tensor) -> torch.Tensor:
            return vjp_fn(u)[0].detach()

        yield JacobianMap("network", tuple(x0.shape), tuple(out.shape), matvec, rmatvec, x0.dtype, x0.device)


class _GraphJacobian:
    """J = ∂b/∂a for two tensors a → b on one retained autograd graph: Jᵀu by autograd.grad, J v by double VJP."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b
        self._dual: tuple[torch.Tensor, torch.Tensor] | None = None  # (u, Jᵀu with create_graph)

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        (g,) = torch.autograd.grad(self.b, self.a, u, retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.a) if g is None else g.detach()

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        if self._dual is None:
            u = torch.zeros_like(self.b, requires_grad=True)
            (g,) = torch.autograd.grad(self.b, self.a, u, retain_graph=True, create_graph=True, allow_unused=True)
            self._dual = (u, g)
        u, g = self._dual
        if g is None or not g.requires_grad:  # b does not depend on a (or only through a constant map)
            return torch.zeros_like(self.b)
        (jv,) = torch.autograd.grad(g, u, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.b) if jv is None else jv.detach()


@contextlib.contextmanager
def layer_jacobians(
    model: nn.Module, x: torch.Tensor, *, bn: str = "eval", layers: Sequence[str] | None = None
) -> Iterator[list[JacobianMap]]:
    """The layer Jacobians J_l = ∂h_{l+1}/∂h_l (batch maps, see the module docstring) of one forward pass on `x`,
    in forward order; the last one ends at the network output."""
    _check_bn(bn)
    named = _resolve_layers(model, layers)
    with preserved_state(model, params=False) as guard, bn_mode(model, bn):
        x0 = x.detach().requires_grad_(True)
        with _capture_inputs(guard, [m for _, m in named]) as inputs:
            out = model(x0)
        unused = [name for (name, _), h in zip(named, inputs) if h is None]
        if unused:
            raise BnlabError(f"gradient flow: layer {unused[0]!r} was not called in the forward pass")
        ends = [*inputs[1:], out]
        maps = []
        for (name, _), a, b in zip(named, inputs, ends):
            g = _GraphJacobian(a, b)
            maps.append(JacobianMap(name, tuple(a.shape), tuple(b.shape), g.matvec, g.rmatvec, a.dtype, a.device))
        yield maps


def _randn(n: int, shape: tuple[int, ...], jac: JacobianMap, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        generator = torch.Generator(device=jac.device).manual_seed(0)
    return torch.randn((n, *shape), generator=generator, device=jac.device, dtype=jac.dtype)


def mean_squared_singular_value(jac: JacobianMap, probes: int = 8,
                                generator: torch.Generator | None = None) -> float:
    """Hutchinson estimate of ‖J‖²_F / n_in = mean of ‖Jᵀu‖² / n_in over u ~ N(0, I_{n_out}) (unbiased; relative
    standard error ≈ √(2/(probes·r_eff)) for an effective rank r_eff)."""
    if probes < 1:
        raise BnlabError(f"probes must be >= 1, got {probes}")
    us = _randn(probes, jac.out_shape, jac, generator)  # (P, *out_shape)
    total = sum(float(jac.rmatvec(u).double().pow(2).sum()) for u in us)
    return total / probes / jac.n_in


def dense_jacobian(jac: JacobianMap) -> torch.Tensor:
    """The dense (n_out, n_in) matrix of `jac`, one VJP per output coordinate (for small maps and tests)."""
    rows = []
    basis = torch.zeros(jac.n_out, dtype=jac.dtype, device=jac.device)
    for i in range(jac.n_out):
        basis.zero_()
        basis[i] = 1.0
        rows.append(jac.rmatvec(basis.view(jac.out_shape)).reshape(-1))  # (n_in,)
    return torch.stack(rows)  # (n_out, n_in)


def _orthonormal_columns(m: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(m.double()).Q.to(m.dtype)  # (n, k) -> (n, k) with orthonormal columns


def singular_values(jac: JacobianMap, k: int | None = None, *, iters: int = 2,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Singular values of `jac`, descending: all of them (``k=None``, dense) or the top `k` by randomized
    subspace iteration with `iters` power steps (Halko et al. 2011, Alg. 4.4), exact once k ≥ min(n_in, n_out).
    Cost: k·(iters+1) JVPs and k·(iters+1) VJPs."""
    if k is None:
        return torch.linalg.svdvals(dense_jacobian(jac).double())
    if k < 1:
        raise BnlabError(f"number of singular values must be >= 1, got {k}")
    k = min(k, jac.n_in, jac.n_out)

    def apply(fn: Callable[[torch.Tensor], torch.Tensor], cols: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([fn(c.view(shape)).reshape(-1) for c in cols.T], dim=1)  # (n, k) -> (m, k)

    omega = _randn(k, jac.in_shape, jac, generator).reshape(k, -1).T  # (n_in, k)
    q = _orthonormal_columns(apply(jac.matvec, omega, jac.in_shape))  # (n_out, k)
    for _ in range(iters):
        z = _orthonormal_columns(apply(jac.rmatvec, q, jac.out_shape))  # (n_in, k)
        q = _orthonormal_columns(apply(jac.matvec, z, jac.in_shape))  # (n_out, k)
    b = apply(jac.rmatvec, q, jac.out_shape)  # (n_in, k) = (Qᵀ J)ᵀ
    return torch.linalg.svdvals(b.double())


# --------------------------------------------------------------------------------------------- engine probe


@dataclass(frozen=True)
class GradFlowProbeConfig:
    """Settings of `GradFlowProbe` (plain data). ``jacobian_probes=0`` skips the Jacobian spectra."""

    every: int = 100
    bn: str = "train"
    jacobian_probes: int = 4  # Hutchinson probes per layer Jacobian
    top_k: int = 1  # top singular values per Jacobian (randomized); 0 = skip
    power_iters: int = 2
    network: bool = True  # also the whole network's Jacobian
    network_method: str = "autograd"  # "func" needs functorch-compatible layers (not bnlab's train-mode BN)
    seed: int = 0


class GradFlowProbe:
    """Engine probe (`bnlab.train`): at step 0 and every `every` steps, on the current batch, records per-layer
    ‖∂L/∂W_l‖², ‖∂L/∂h_l‖², the layer Jacobians' mean squared and top singular values and (``network=True``) the
    whole network's. All Jacobians are batch Jacobians in the configured BN mode (module docstring)."""

    name = "gradflow"

    def __init__(self, config: GradFlowProbeConfig | None = None, **kwargs: Any) -> None:
        base = to_mapping(config) if config is not None else {}
        self.config = from_mapping(GradFlowProbeConfig, {**base, **kwargs}, where="gradflow.")
        _check_bn(self.config.bn)
        if self.config.every < 1:
            raise BnlabError(f"gradflow.every must be >= 1, got {self.config.every}")
        self.every = self.config.every

    def measure(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor],
                batch: tuple[torch.Tensor, torch.Tensor], step: int = 0) -> dict[str, Any]:
        """The probe's record for one batch (also usable outside the training loop)."""
        cfg = self.config
        record: dict[str, Any] = {"step": step, **layer_gradient_norms(model, loss_fn, batch, bn=cfg.bn)}
        if cfg.jacobian_probes < 1 and cfg.top_k < 1:
            return record
        x = batch[0]
        gen = torch.Generator(device=x.device).manual_seed(cfg.seed * 1_000_003 + step)
        msv, top = [], []
        with layer_jacobians(model, x, bn=cfg.bn) as maps:
            for jac in maps:
                if cfg.jacobian_probes > 0:
                    msv.append(mean_squared_singular_value(jac, cfg.jacobian_probes, gen))
                if cfg.top_k > 0:
                    top.append(singular_values(jac, cfg.top_k, iters=cfg.power_iters, generator=gen).tolist())
        record["layer_jac_msv"] = msv
        record["layer_jac_top_sv"] = top
        if cfg.network:
            with network_jacobian(model, x, bn=cfg.bn, method=cfg.network_method) as jac:
                if cfg.jacobian_probes > 0:
                    record["net_jac_msv"] = mean_squared_singular_value(jac, cfg.jacobian_probes, gen)
                if cfg.top_k > 0:
                    record["net_jac_top_sv"] = singular_values(jac, cfg.top_k, iters=cfg.power_iters,
                                                               generator=gen).tolist()
        return record

    def __call__(self, ctx: Any) -> dict[str, Any]:
        return self.measure(ctx.model, ctx.loss_fn, ctx.batch, ctx.step)
