"""Loss and accuracy at points ``w = origin + sum_i c_i d_i`` of parameter space, with the BN mode explicit.

`evaluate_points(model, loss_fn, data, origin, directions, coords, bn_mode=...)` evaluates every row of `coords` (P, k)
through `torch.func.functional_call`: the point's parameters are built once per point (one fused add per direction
and tensor) and swapped into the model for the forward pass only, so there is no deep copy per point and the
user's model is left bit-for-bit as it was (`bnlab.state.preserved_state` also restores modes, BN settings,
buffers and RNG).

BN modes (recorded by the callers in the Surface / Curve):

* ``train``  -- every BN layer normalises with the statistics of the batch being evaluated; the running statistics
  are not touched (``track_running_stats=False`` for the duration). Li et al.'s and Santurkar's choice.
* ``eval``   -- every BN layer uses the model's stored running statistics (what tomgoldstein/loss-landscape does
  implicitly; at a displaced point those statistics are stale, which this mode makes explicit).
* ``recalibrated`` -- the population statistics are re-estimated at every point from the batches of `recal_data`
  (default: the evaluated data) as an equal-weight average over batches of the batch means and unbiased variances
  (``momentum=None``, the semantics of `bnlab.layers.precise_statistics` / fvcore's precise BN), written into fresh
  buffers handed to `functional_call` -- the model's buffers are never written -- and the point is then evaluated
  in eval mode with them.

Every other module (Dropout) is in eval mode. With several batches the loss is the size-weighted mean of the
batches' mean losses (``loss_fn`` must reduce by the mean) and the accuracy is over all samples.

Speed (choose by measurement: `bench/bench_landscape.py`):

* ``strategy="loop"`` evaluates one point at a time; ``"vmap"`` evaluates `chunk` points per call with
  `torch.func.vmap` (batched parameters); ``"auto"`` is the loop on CPU (measured faster there: bench 0.5-0.8x
  for vmap) and vmap on CUDA (where batching points fills the device; not yet measured by bnlab -- run the bench
  on a GPU), falling back to the loop for models vmap cannot batch (custom autograd Functions, recalibration).
* ``channels_last`` (auto: on for 4-D inputs) -- oneDNN's convolutions and BN are faster in NHWC on CPU.
* ``linear_first_layer`` -- the first layer (an `nn.Linear` / `nn.ConvNd` fed the input directly) is affine in
  its parameters, so its output at any point is ``F(x; W0) + sum_i c_i F(x; D_i)``: the k + 1 products are computed
  once per batch and every point costs k fused multiply-adds instead of a matmul / convolution. Auto: on when the
  layer's fan-in is >= 64 (below that the combination moves more memory than the product costs) and the cached
  products fit in 1 GiB.
* ``precision="bf16"`` -- opt-in CPU/GPU autocast to bfloat16; callers report its error against fp32 points.
* ``compile=True`` -- `torch.compile` the forward (inductor fuses BN, ReLU and pooling into few passes over
  memory). Off by default: compiling costs tens of seconds on a CPU and only pays back on long grids; the compiled
  function is cached per model within the process, so later planes of the same model skip that cost.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from bnlab.data.batches import Batch, as_batches
from bnlab.errors import BnlabError
from bnlab.state import batchnorm_layers, preserved_state

BN_MODES: tuple[str, ...] = ("train", "eval", "recalibrated")
STRATEGIES: tuple[str, ...] = ("auto", "loop", "vmap")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_FIRST_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_FIRST_LAYER_CACHE_BYTES = 1 << 30
_COMPILED: dict[int, tuple[nn.Module, Callable]] = {}  # id(model) -> (model, compiled forward); last 4 models


def _forward_fn(model: nn.Module, compile: bool) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """functional_call of `model`, compiled with torch.compile (cached per model) when asked."""
    def forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, state, (x,))

    if not compile:
        return forward
    cached = _COMPILED.get(id(model))
    if cached is None or cached[0] is not model:
        cached = (model, torch.compile(forward, dynamic=False))
        while len(_COMPILED) >= 4:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[id(model)] = cached
    return cached[1]


def data_hash(batches: Sequence[Batch]) -> str:
    """The data's identity: sha256 over shapes, dtypes and bytes of every x and y (first 16 hex digits)."""
    h = hashlib.sha256()
    for x, y in batches:
        for t in (x, y):
            t = t.detach().cpu().contiguous()
            h.update(f"{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


@dataclass
class _FirstLayer:
    """The model's first affine layer and its cached products, per input batch (matched by identity)."""

    module: nn.Module
    name: str
    products: list[tuple[torch.Tensor, list[torch.Tensor | None]]]  # (x, [F(x; W0), F(x; D_1), ...])
    coeffs: list[float]


def _same_data(a: torch.Tensor, x: torch.Tensor) -> bool:
    """`a` is `x` or a contiguous reshape of it (e.g. ``x.flatten(1)`` in a forward): same memory, same values."""
    return a is x or (a.is_contiguous() and x.is_contiguous() and a.data_ptr() == x.data_ptr()
                      and a.numel() == x.numel() and a.dtype == x.dtype and a.shape[0] == x.shape[0])


def _find_first_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module, tuple[int, ...]] | None:
    """The leaf module that receives the model input itself (or a reshape of it), when it is a plain Linear/Conv
    called once; with the per-sample shape of what it receives."""
    calls: list[tuple[str, nn.Module, tuple[int, ...] | None]] = []
    handles = []
    for name, m in model.named_modules():
        if len(list(m.children())) == 0:
            def hook(mod: nn.Module, args: tuple, _name: str = name) -> None:
                ok = bool(args) and torch.is_tensor(args[0]) and _same_data(args[0], x)
                calls.append((_name, mod, tuple(args[0].shape[1:]) if ok else None))
            handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not calls or calls[0][2] is None:
        return None
    name, module, sample_shape = calls[0]
    if type(module) not in _FIRST_LAYER_TYPES or sum(1 for c in calls if c[1] is module) != 1:
        return None
    if "forward" in module.__dict__ or module._forward_hooks or module._forward_pre_hooks:
        return None
    return name, module, sample_shape


def _fan_in(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features
    return (module.in_channels // module.groups) * int(np.prod(module.kernel_size))


def _layer_output(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return functional_call(module, {"weight": weight, **({"bias": bias} if bias is not None else {})}, (x,))


@contextlib.contextmanager
def _linear_first_layer(model: nn.Module, batches: Sequence[Batch], origin: Mapping[str, torch.Tensor],
                        directions: Sequence[Mapping[str, torch.Tensor]], wanted: bool | None):
    """Install the cached-products forward on the first layer (or yield None when it does not apply)."""
    if wanted is False:
        yield None
        return
    found = _find_first_layer(model, batches[0][0])
    if found is None:
        if wanted:
            raise BnlabError("linear_first_layer: the model's input does not go straight into one Linear/Conv layer")
        yield None
        return
    name, module, sample_shape = found
    batches = [(x.reshape(x.shape[0], *sample_shape), y) for x, y in batches]  # what the layer sees
    prefix = f"{name}." if name else ""
    wkey, bkey = prefix + "weight", prefix + "bias"
    has_bias = getattr(module, "bias", None) is not None
    if wkey not in origin:
        yield None
        return
    with torch.no_grad():
        probe = _layer_output(module, batches[0][0][:1], origin[wkey], origin.get(bkey) if has_bias else None)
    per_sample = probe.numel() * probe.element_size()
    total = per_sample * sum(b[0].shape[0] for b in batches) * (1 + len(directions))
    if wanted is None and (_fan_in(module) < 64 or total > _FIRST_LAYER_CACHE_BYTES):
        yield None
        return
    products = []
    with torch.no_grad():
        for x, _ in batches:
            prods: list[torch.Tensor | None] = [
                _layer_output(module, x, origin[wkey], origin[bkey] if has_bias else None)]
            for d in directions:
                zero = not bool(d[wkey].any()) and not (has_bias and bool(d[bkey].any()))
                prods.append(None if zero else _layer_output(module, x, d[wkey], d[bkey] if has_bias else None))
            products.append((x, prods))
    state = _FirstLayer(module=module, name=name, products=products, coeffs=[0.0] * len(directions))
    cls_forward = type(module).forward

    def fast_forward(inp: torch.Tensor) -> torch.Tensor:
        for x, prods in state.products:
            if _same_data(inp, x) and inp.shape == x.shape:
                out = prods[0].clone()
                for c, p in zip(state.coeffs, prods[1:]):
                    if p is not None and c != 0.0:
                        out.add_(p, alpha=c)
                return out
        return cls_forward(module, inp)  # another input (e.g. recalibration batches): the plain layer

    module.forward = fast_forward  # instance attribute shadows the class method for this call only
    try:
        yield state
    finally:
        del module.forward


def _configure_bn(model: nn.Module, bn_mode: str) -> list[nn.Module]:
    """Set modes for `bn_mode` (inside preserved_state); return the BN layers."""
    model.eval()
    layers = [m for _, m in batchnorm_layers(model)]
    for m in layers:
        if bn_mode == "train":
            m.train()
            m.track_running_stats = False  # batch statistics; no running-stat update
        elif bn_mode == "recalibrated":
            m.momentum = None  # cumulative average over the recalibration batches
            m.track_running_stats = True
    return layers


def _bn_buffer_names(model: nn.Module) -> list[str]:
    names = []
    for prefix, m in batchnorm_layers(model):
        for bname, _ in m.named_buffers(prefix=prefix, recurse=False):
            names.append(bname)
    return names


def _fresh_bn_buffers(buffers: Mapping[str, torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    out = {}
    for n in names:
        b = buffers[n]
        out[n] = torch.ones_like(b) if n.endswith("running_var") else torch.zeros_like(b)
    return out


def _point_params(origin: Mapping[str, torch.Tensor], directions: Sequence[Mapping[str, torch.Tensor]],
                  active: Sequence[set[str]], coeffs: Sequence[float],
                  work: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``origin + sum_i coeffs[i] directions[i]`` per tensor (untouched tensors are the origin's own); written into
    the preallocated `work` tensors when given (one buffer per moving tensor, reused from point to point)."""
    params = {}
    for name, w in origin.items():
        terms = [(c, d[name]) for c, d, act in zip(coeffs, directions, active) if c != 0.0 and name in act]
        if not terms:
            params[name] = w
            continue
        c0, d0 = terms[0]
        if work is not None:
            p = torch.add(w, d0, alpha=c0, out=work[name])
        else:
            p = torch.add(w, d0, alpha=c0)
        for c, d in terms[1:]:
            p.add_(d, alpha=c)
        params[name] = p
    return params


def _batch_metrics(out: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> tuple[float, float]:
    """(mean loss, number correct or NaN) of one batch. Outputs are upcast only from bf16 / half (so the loss of a
    bf16 evaluation is summed in fp32); fp32 and fp64 models keep their own precision."""
    if out.dtype in (torch.bfloat16, torch.float16):
        out = out.float()
    loss = float(loss_fn(out, y))
    if out.dim() == 2 and not y.is_floating_point() and y.dim() == 1:
        return loss, float((out.argmax(dim=1) == y).sum())
    return loss, float("nan")


def _should_vmap(strategy: str, device: torch.device, bn_mode: str) -> bool:
    if strategy == "loop" or bn_mode == "recalibrated":
        if strategy == "vmap" and bn_mode == "recalibrated":
            raise BnlabError("strategy 'vmap' cannot recalibrate BN statistics (in-place buffer updates); use 'loop'")
        return False
    if strategy == "vmap":
        return True
    return device.type == "cuda"


def _checked_coords(model: nn.Module, origin: Mapping[str, torch.Tensor],
                    directions: Sequence[Mapping[str, torch.Tensor]], coords: np.ndarray | Sequence[Sequence[float]],
                    bn_mode: str, strategy: str, precision: str) -> tuple[np.ndarray, list[str]]:
    """The options, and `origin` / `directions` against the model's parameters (names and shapes), checked before
    anything runs; returns `coords` as a float64 (P, k) array and the parameter names."""
    if bn_mode not in BN_MODES:
        raise BnlabError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    if strategy not in STRATEGIES:
        raise BnlabError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if precision not in PRECISIONS:
        raise BnlabError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim == 1:
        coords = coords[:, None]
    if coords.ndim != 2 or coords.shape[1] != len(directions):
        raise BnlabError(f"coords must have shape (points, {len(directions)}), got {coords.shape}")
    names = [n for n, _ in model.named_parameters()]
    if set(origin) != set(names):
        extra = sorted(set(origin) ^ set(names))
        raise BnlabError(f"origin does not match the model's parameters (e.g. {extra[0]!r})")
    for i, d in enumerate(directions):
        if set(d) != set(names):
            raise BnlabError(f"direction {i} does not match the model's parameters")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    for what, params in (("origin", origin), *((f"direction {i}", d) for i, d in enumerate(directions))):
        for n in names:
            if tuple(params[n].shape) != shapes[n]:  # e.g. a saved landscape of another (wider) model
                raise BnlabError(f"{what} does not match the model's parameters: {n!r} has shape "
                                 f"{tuple(params[n].shape)}, the model's has {shapes[n]}")
    if not names:
        raise BnlabError("the model has no parameters: there is no landscape to draw")
    return coords, names


@dataclass
class _Placed:
    """The evaluation's inputs on the model's device, in its memory layout (NHWC when `channels_last`)."""

    batches: list[Batch]
    recal: list[Batch]
    origin: dict[str, torch.Tensor]
    directions: list[dict[str, torch.Tensor]]
    active: list[set[str]]  # per direction, the tensors it moves (a zero block, e.g. a zeroed bias, stays put)
    total: int  # examples over all batches


def _placed(model: nn.Module, names: Sequence[str], data: Batch | Sequence[Batch],
            recal_data: Batch | Sequence[Batch] | None, origin: Mapping[str, torch.Tensor],
            directions: Sequence[Mapping[str, torch.Tensor]], channels_last: bool | None) -> _Placed:
    device = next(model.parameters()).device
    batches = as_batches(data)
    if channels_last is None:  # NHWC pays off for convolutions only
        channels_last = batches[0][0].dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())

    def prepare(bs: list[Batch]) -> list[Batch]:
        bs = [(x.to(device), y.to(device)) for x, y in bs]
        if channels_last:
            bs = [(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, y) for x, y in bs]
        return bs

    def layout(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to(device)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    batches = prepare(batches)
    recal = batches if recal_data is None else prepare(as_batches(recal_data))
    placed_dirs = [{n: layout(d[n]) for n in names} for d in directions]
    return _Placed(batches, recal, {n: layout(origin[n]) for n in names}, placed_dirs,
                   [{n for n in names if bool(d[n].any())} for d in placed_dirs], sum(x.shape[0] for x, _ in batches))


def evaluate_points(model: nn.Module, loss_fn: LossFn, data: Batch | Sequence[Batch],
                    origin: Mapping[str, torch.Tensor], directions: Sequence[Mapping[str, torch.Tensor]],
                    coords: np.ndarray | Sequence[Sequence[float]], bn_mode: str = "train", *,
                    recal_data: Batch | Sequence[Batch] | None = None, strategy: str = "auto", chunk: int = 16,
                    channels_last: bool | None = None, linear_first_layer: bool | None = None,
                    precision: str = "fp32", compile: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Loss and accuracy at ``origin + sum_i coords[p, i] * directions[i]`` for every row p of `coords` (P, k).

    Returns ``{"loss": (P,), "acc": (P,)}`` float64 arrays (acc is NaN when the task is not classification with
    integer labels). Side effects: none on `model` (restored exactly; RNG restored too).
    """
    coords, names = _checked_coords(model, origin, directions, coords, bn_mode, strategy, precision)
    device = next(model.parameters()).device
    at = _placed(model, names, data, recal_data, origin, directions, channels_last)
    loss = np.full(coords.shape[0], np.nan)
    acc = np.full(coords.shape[0], np.nan)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    with preserved_state(model, params=False, rng=True):
        bn_layers = _configure_bn(model, bn_mode)
        buffers = dict(model.named_buffers())
        use_vmap = _should_vmap(strategy, device, bn_mode)
        first_wanted = False if (use_vmap or compile) else linear_first_layer
        if compile and linear_first_layer:
            raise BnlabError("linear_first_layer and compile cannot be combined; choose one")
        forward = _forward_fn(model, compile)
        with torch.inference_mode(), autocast, _linear_first_layer(model, at.batches, at.origin, at.directions,
                                                                   first_wanted) as first:
            done = 0
            if use_vmap:
                try:
                    done = _evaluate_vmap(model, loss_fn, at.batches, at.origin, at.directions, at.active, coords,
                                          buffers, chunk, at.total, loss, acc, progress)
                except BnlabError:
                    raise
                except Exception:  # noqa: BLE001 - models vmap cannot batch fall back to the loop
                    if strategy == "vmap":
                        raise
                    done = 0
            recalibrate = (bn_layers, buffers, _bn_buffer_names(model)) if bn_mode == "recalibrated" else None
            _evaluate_loop(forward, loss_fn, at, coords[done:], first, recalibrate, compile, loss[done:], acc[done:],
                           None if progress is None else lambda p, _: progress(done + p, coords.shape[0]))
    return {"loss": loss, "acc": acc}


def _evaluate_loop(forward: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor], loss_fn: LossFn,
                   at: _Placed, coords: np.ndarray, first: _FirstLayer | None,
                   recalibrate: tuple[list[nn.Module], dict[str, torch.Tensor], list[str]] | None, compile: bool,
                   loss: np.ndarray, acc: np.ndarray, progress: Callable[[int, int], None] | None) -> None:
    """One point at a time; fills the views `loss` / `acc` (P,). `recalibrate`: (BN layers, buffers, BN buffer
    names) to re-estimate the population statistics at each point from `at.recal` (BN mode recalibrated)."""
    # one reusable buffer per moving tensor: no allocation per point (a point's tensors are dead once its
    # forward has returned; torch.compile'd forwards get fresh tensors, as they may keep references)
    work = None if compile else {n: torch.empty_like(at.origin[n]) for n in set().union(*at.active)}
    for p in range(coords.shape[0]):
        c = [float(v) for v in coords[p]]
        if first is not None:
            first.coeffs[:] = c
        params = _point_params(at.origin, at.directions, at.active, c, work)
        state = params  # buffers stay the module's own (read-only in train / eval mode): fewer swaps
        if recalibrate is not None:
            bn_layers, buffers, bn_names = recalibrate
            state = {**params, **_fresh_bn_buffers(buffers, bn_names)}
            for m in bn_layers:
                m.train()
            for x, _ in at.recal:
                forward(state, x)
            for m in bn_layers:
                m.eval()
        lsum, correct = 0.0, 0.0
        for x, y in at.batches:
            out = forward(state, x)
            lb, cb = _batch_metrics(out, y, loss_fn)
            lsum += lb * x.shape[0]
            correct += cb
        loss[p] = lsum / at.total
        acc[p] = correct / at.total
        if progress is not None:
            progress(p + 1, coords.shape[0])


def _evaluate_vmap(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], origin: Mapping[str, torch.Tensor],
                   directions: Sequence[Mapping[str, torch.Tensor]], active: Sequence[set[str]], coords: np.ndarray,
                   buffers: Mapping[str, torch.Tensor], chunk: int, total: int, loss: np.ndarray, acc: np.ndarray,
                   progress: Callable[[int, int], None] | None) -> int:
    """Evaluate `chunk` points per call with batched parameters; fills loss/acc, returns the number done."""
    n_points = coords.shape[0]
    moving = sorted(set().union(*active))
    still = {n: t for n, t in origin.items() if n not in moving}

    def forward(moved: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**buffers, **still, **moved}, (x,))

    for start in range(0, n_points, chunk):
        c = torch.as_tensor(coords[start:start + chunk], dtype=origin[moving[0]].dtype,
                            device=origin[moving[0]].device)  # (B, k)
        moved = {}
        for n in moving:
            w = origin[n].unsqueeze(0)  # (1, *shape)
            view = (c.shape[0],) + (1,) * origin[n].dim()
            acc_t = w.expand(c.shape[0], *origin[n].shape).clone()  # (B, *shape)
            for i, d in enumerate(directions):
                if n in active[i]:
                    acc_t.add_(c[:, i].view(view) * d[n].unsqueeze(0))
            moved[n] = acc_t
        lsum = torch.zeros(c.shape[0], dtype=torch.float64, device=c.device)
        correct = torch.zeros(c.shape[0], dtype=torch.float64, device=c.device)
        classify = True
        for x, y in batches:
            outs = torch.func.vmap(forward, in_dims=(0, None))(moved, x)  # (B, N, ...)
            for b in range(outs.shape[0]):
                lb, cb = _batch_metrics(outs[b], y, loss_fn)
                lsum[b] += lb * x.shape[0]
                if np.isnan(cb):
                    classify = False
                else:
                    correct[b] += cb
        end = start + c.shape[0]
        loss[start:end] = (lsum / total).cpu().numpy()
        acc[start:end] = (correct / total).cpu().numpy() if classify else np.nan
        if progress is not None:
            progress(end, n_points)
    return n_points
