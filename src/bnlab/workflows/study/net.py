"""One net of a study, on one seed: train it through `bnlab.train` with Santurkar's probes attached, and measure
what the claims' endpoints need, with the very functions the audit's trials use.

At initialisation (before any step):
* C11: ‖∂L/∂W_l‖² of every weight layer on the first batch, BN in train mode (`layer_gradient_norms`), and the
  spread |log10 ‖∂L/∂W_first hidden‖²/‖∂L/∂W_last hidden‖²| (`gradient_spread`, the audit's C11 measure);
* the Hessian λ_max (Lanczos to `hessian_tol`) and trace (Hutch++ on that Lanczos basis, `trace_samples`) in
  each BN mode -- not in eval mode while every running statistic is still (0, 1) (`running_stats_at_init`).
During training, at step 0 and every `probe_every` steps, before the step's update and on the step's batch:
* C03: ICS per weight layer (Santurkar Def. 2.1, `ICSProbe`, under the run's own optimizer);
* C05, C06: loss variation and gradient predictiveness along −g (`AlongGradientProbe`, η = eta_factors × lr);
* C13: test accuracy every `eval_every` steps (the training loop's evaluation).
At the end:
* C14: 2-D and 1-D landscapes of the training loss on `samples` examples, filter-normalised directions, in BN
  modes train, eval and recalibrated (`random_plane`, `random_line`), their roughness and ruggedness;
* the Hessian again, in each BN mode.
A net without BN has one function in every mode: it is measured once and the numbers are shared.
A diverged run is a result: its end-of-training numbers are NaN and `diverged_at_step` says when.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from bnlab.atomic import write_json
from bnlab.data.dataset import Dataset
from bnlab.errors import BnlabError
from bnlab.landscape import random_directions, random_line, random_plane, roughness
from bnlab.landscape.directions import model_origin
from bnlab.landscape.points import BN_MODES as LANDSCAPE_MODES
from bnlab.landscape.roughness import quadratic_residual
from bnlab.probes.along_gradient import AlongGradientProbe
from bnlab.probes.gradflow import gradient_spread, layer_gradient_norms
from bnlab.probes.hessian import hessian_operator, top_and_trace
from bnlab.probes.ics import ICSProbe
from bnlab.results import finite_or_none
from bnlab.state import BN_MODES as HESSIAN_MODES
from bnlab.state import batchnorm_layers
from bnlab.train import TrainConfig, train
from bnlab.trials.probed_run import along_gradient_series, ics_series
from bnlab.workflows.study.config import PROBES, StudyConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CURVE_POINTS = 200  # the training-loss curve kept per net (subsampled)
TRACE_MIN_SAMPLES = 10  # Hutch++ checks trace_rtol from here on (a standard error of fewer is itself noisy)
TRACE_SKETCH = 10  # Lanczos vectors deflated before the trace's Hutchinson samples


def hessian_numbers(net: nn.Module, loss_fn: LossFn, sample: tuple[torch.Tensor, torch.Tensor], modes: tuple[str, ...],
                    cfg: StudyConfig, seed: int) -> dict[str, dict[str, float | None]]:
    """Per BN mode (train, eval): λ_max and the trace of the Hessian of the loss on the first `hessian_samples` of
    `sample` (seeded: reproducible), both from one Lanczos run (`bnlab.probes.hessian.top_and_trace`).

    λ_max: Lanczos from the gradient-plus-random start, stopped when the estimated eigenvalue error
    min(r, r²/δ) <= hessian_tol·|θ| (Parlett, *The Symmetric Eigenvalue Problem*, Thm 11.7.1, δ the gap to the
    next Ritz value: ``hessian_criterion="eigenvalue"``; an estimate, where the residual criterion r <= tol·|θ| is
    a bound and takes more products) and holding at least TRACE_SKETCH vectors. The trace: Krylov-aware Hutch++
    on that basis (exact there) plus at most `trace_samples` Hutchinson samples on the rest, fewer once its
    standard error is below trace_rtol·|trace|; `trace_se` is that standard error. The examples and the
    Hessian-vector products each took are recorded."""
    sample = (sample[0][: cfg.hessian_samples], sample[1][: cfg.hessian_samples])  # (H, *in_shape), (H, ...)
    out = {}
    for mode in [m for m in modes if m in HESSIAN_MODES]:
        with hessian_operator(net, loss_fn, sample, bn_mode=mode) as op:
            eig, tr = top_and_trace(op, tol=cfg.hessian_tol, criterion=cfg.hessian_criterion, sketch=TRACE_SKETCH,
                                    rtol=cfg.trace_rtol, min_samples=min(TRACE_MIN_SAMPLES, cfg.trace_samples),
                                    max_samples=cfg.trace_samples, seed=seed)
        out[mode] = {"lambda_max": finite_or_none(float(eig.eigenvalues[0])), "trace": finite_or_none(float(tr.trace)),
                     "trace_se": finite_or_none(float(tr.se)), "examples": len(sample[0]),
                     "lambda_products": eig.products, "trace_products": tr.products}
    return out


def landscape_numbers(net: nn.Module, loss_fn: LossFn, sample: tuple[torch.Tensor, torch.Tensor],
                      modes: tuple[str, ...], cfg: StudyConfig, seed: int) -> dict[str, dict[str, Any]]:
    """Per BN mode: the 2-D grid and 1-D line of the loss around the net (the same three seeded directions in
    every mode, as the audit's C14 trial) and their roughness."""
    dirs = random_directions(model_origin(net), 3, 1000 + seed)  # two for the plane, one for the line
    n, r = cfg.landscape_points, cfg.landscape_radius
    out = {}
    for mode in modes:
        plane = random_plane(net, loss_fn, sample, radius=r, steps=n, bn_mode=mode, directions=dirs[:2])
        curve = random_line(net, loss_fn, sample, radius=r, steps=2 * n - 1, bn_mode=mode, direction=dirs[2])
        out[mode] = {"x": plane.x.tolist(), "y": plane.y.tolist(), "loss": plane.loss.tolist(),
                     "t": curve.t.tolist(), "line_loss": curve.loss.tolist(),
                     "roughness_2d": finite_or_none(roughness(plane.loss, plane.x, plane.y, cfg.rough_radius)),
                     "roughness_1d": finite_or_none(roughness(curve.loss, curve.t, None, cfg.rough_radius)),
                     "ruggedness_2d": _ruggedness(plane.loss, plane.x, plane.y, cfg.rough_radius),
                     "examples": len(sample[0])}
    return out


def _ruggedness(loss: Any, x: Any, y: Any, radius: float) -> float | None:
    """C14's ruggedness (`quadratic_residual`); None when the grid holds fewer than 6 points within the radius
    (too coarse a landscape for a quadratic fit: that seed's ruggedness is missing, not made up)."""
    try:
        return finite_or_none(quadratic_residual(loss, x, y, radius))
    except BnlabError:
        return None


def load_weights(net: nn.Module, path: str) -> None:
    """A state dict saved with torch.save (or a bnlab checkpoint), read with weights_only=True, into `net`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
        first = (str(exc).splitlines() or [""])[0].split(". ")[0]
        raise BnlabError(f"cannot read checkpoint '{path}': {type(exc).__name__}: {first}") from None
    if isinstance(state, Mapping) and isinstance(state.get("model") or state.get("state_dict"), Mapping):
        state = state.get("model") or state.get("state_dict")
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise BnlabError(f"'{path}' holds no state dict (a mapping of parameter names to tensors)")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise BnlabError(f"checkpoint '{path}' does not fit the model: {' '.join(str(exc).split())[:300]}") from None


def _reason(exc: BaseException) -> str:
    """One line naming why a probe could not run (an op without double backward, out of memory, ...)."""
    text = " ".join((str(exc).splitlines() or [""])[0].split())
    return f"{type(exc).__name__}: {text}"[:300]


def guarded(failed: dict[str, str], key: str, fn: Callable[[], Any], default: Any,
            clock: dict[str, float] | None = None) -> Any:
    """fn(), or `default` with failed[key] = the reason when the model cannot support the probe. Only torch's
    errors (RuntimeError -- which out-of-memory errors are -- and NotImplementedError) are caught: a bug of
    bnlab's own is not turned into "not measured". With `clock`, the process's CPU seconds (all threads) spent
    are added to clock[key]: where a study's time goes."""
    start = time.process_time()
    try:
        return fn()
    except (RuntimeError, NotImplementedError) as exc:
        failed.setdefault(key, _reason(exc))
        return default
    finally:
        if clock is not None:
            clock[key] = round(clock.get(key, 0.0) + time.process_time() - start, 2)


class GuardedProbe:
    """A training probe that records "not measured: <reason>" instead of stopping the run when it fails; after
    its first failure it is not called again and its earlier records are dropped (a series with holes would be
    averaged over other probe times than the other net's)."""

    def __init__(self, probe: Any, failed: dict[str, str], clock: dict[str, float] | None = None) -> None:
        self.probe, self.failed, self.clock = probe, failed, clock
        self.name, self.every = probe.name, probe.every

    def __call__(self, ctx: Any) -> dict[str, Any]:
        if self.name in self.failed:
            return {"failed": True}
        out = guarded(self.failed, self.name, lambda: self.probe(ctx), None, self.clock)
        return {"failed": True} if out is None else out


def _records(records: Mapping[str, list[dict[str, Any]]], name: str, failed: Mapping[str, str]) -> list[Any]:
    return [] if name in failed else [r for r in records.get(name, []) if not r.get("failed")]


def _probe_once(net: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor], cfg: StudyConfig,
                probes: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """The training probes at the loaded weights, once (a checkpoint has no training run to probe)."""
    opt = (torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum) if cfg.optimizer == "sgd"
           else torch.optim.Adam(net.parameters(), lr=cfg.lr))
    ctx = SimpleNamespace(step=0, model=net, loss_fn=loss_fn, batch=batch, optimizer=opt,
                          config=SimpleNamespace(lr=cfg.lr))
    return {p.name: [p(ctx)] for p in probes}


def _init_numbers(net: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor],
                  sample: tuple[torch.Tensor, torch.Tensor], modes: tuple[str, ...], cfg: StudyConfig, seed: int,
                  failed: dict[str, str], clock: dict[str, float]) -> dict[str, Any]:
    """C11's gradient norms and the Hessian, at initialisation (each only when selected and supported)."""
    out: dict[str, Any] = {"layers": [], "weight_grad_sq_init": [], "gradient_spread": None, "hessian_start": {}}
    if "gradient_flow" in cfg.probes:
        grads = guarded(failed, "gradient_flow", lambda: layer_gradient_norms(net, loss_fn, batch, bn="train"), None,
                        clock)
        if grads is not None:
            out.update(layers=grads["layers"], weight_grad_sq_init=[finite_or_none(v) for v in grads["weight_grad_sq"]],
                       gradient_spread=finite_or_none(gradient_spread(grads["weight_grad_sq"])))
    if "hessian" in cfg.probes:
        start_modes = tuple(m for m in modes if m != "eval" or not running_stats_at_init(net))
        out["hessian_start"] = guarded(failed, "hessian", lambda: hessian_numbers(net, loss_fn, sample, start_modes,
                                                                                  cfg, seed), {}, clock)
    return out


def running_stats_at_init(net: nn.Module) -> bool:
    """Every BN layer's running statistics are still torch's initial ones (mean 0, variance 1) or it keeps none:
    the net in eval mode is then the net without normalisation (each BN the affine map γ·x/√(1+ε) + β) or the
    train-mode net, so its eval-mode Hessian says nothing of BN's and is not measured."""
    for _, bn in batchnorm_layers(net):
        mean, var = getattr(bn, "running_mean", None), getattr(bn, "running_var", None)
        if mean is None or var is None:
            continue
        if bool(mean.any()) or not bool((var == 1).all()):
            return False
    return True


def _train_config(cfg: StudyConfig, data: Dataset, seed: int, lr: float) -> TrainConfig:
    return TrainConfig(model="mlp", dataset="digits", optimizer=cfg.optimizer, lr=lr,
                       momentum=cfg.momentum if cfg.optimizer == "sgd" else 0.0, steps=cfg.steps,
                       batch_size=min(cfg.batch_size, len(data.train_x)), eval_every=cfg.eval_every,
                       eval_train_size=min(1000, len(data.train_x)), seed=seed, device=cfg.device,
                       progress=False, trackers=())


def lr_score(build: Callable[[], nn.Module], data: Dataset, loss_fn: LossFn, cfg: StudyConfig, seed: int,
             lr: float) -> float:
    """The final training loss (mean over the last 10% of steps; inf when the run diverged) of a net trained at
    `lr` on a held-out seed, without probes: the number the lr grid is chosen by (training data only, so the
    test set reported later plays no part in the choice)."""
    torch.manual_seed(seed)
    result = train(_train_config(cfg, data, seed, lr), model=build(), dataset=data, loss_fn=loss_fn)
    losses = result.history["train_loss"]
    if result.diverged_at_step is not None or not losses:
        return math.inf
    tail = losses[-max(1, len(losses) // 10):]
    value = sum(tail) / len(tail)
    return value if math.isfinite(value) else math.inf


def _train(net: nn.Module, data: Dataset, loss_fn: LossFn, cfg: StudyConfig, seed: int, probes: list[Any],
           run_dir: str | None) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Train through `bnlab.train` (checkpointed in `run_dir` when given, so an interrupted net resumes)."""
    config = _train_config(cfg, data, seed, cfg.lr)
    result = train(config, model=net, dataset=data, loss_fn=loss_fn, probes=probes, out_dir=run_dir)
    h = result.history
    keep = max(1, len(h["step"]) // CURVE_POINTS)
    rec = {"diverged_at_step": result.diverged_at_step, "steps_done": int(result.final.get("steps_done", 0)),
           "train_acc": finite_or_none(result.final.get("train_acc")) if result.diverged_at_step is None else None,
           "history": {"step": h["step"][::keep], "train_loss": [finite_or_none(v) for v in h["train_loss"][::keep]],
                       "eval_step": list(h["eval_step"]), "test_acc": [finite_or_none(v) for v in h["test_acc"]],
                       "test_loss": [finite_or_none(v) for v in h["test_loss"]]}}
    return result.model.cpu(), rec, result.probes


def _end_numbers(net: nn.Module, loss_fn: LossFn, sample: tuple[torch.Tensor, torch.Tensor], modes: tuple[str, ...],
                 cfg: StudyConfig, seed: int, failed: dict[str, str], clock: dict[str, float]) -> dict[str, Any]:
    """C14's landscapes and the Hessian around the trained net (each only when selected and supported)."""
    out: dict[str, Any] = {"landscape": {}, "hessian_end": {}}
    if "landscape" in cfg.probes:
        out["landscape"] = guarded(failed, "landscape",
                                   lambda: landscape_numbers(net, loss_fn, sample, modes, cfg, seed), {}, clock)
    if "hessian" in cfg.probes and "hessian" not in failed:
        out["hessian_end"] = guarded(failed, "hessian", lambda: hessian_numbers(net, loss_fn, sample, modes, cfg,
                                                                                seed), {}, clock)
    return out


def measure_net(build: Callable[[], nn.Module], data: Dataset, loss_fn: LossFn, cfg: StudyConfig, seed: int, *,
                checkpoint: str | None = None,
                run_dir: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train (or load) one net and measure it (module doc); returns (plain-data record, final state dict). With
    `run_dir`, the numbers at initialisation and training checkpoints are kept there, so an interrupted net resumes.
    A probe the model cannot support is listed in the record's ``not_measured`` with the reason, and the rest
    goes on; a probe left out of ``cfg.probes`` is listed in ``not_selected``."""
    torch.manual_seed(seed)
    net = build()
    has_bn = bool(batchnorm_layers(net))
    modes = LANDSCAPE_MODES if has_bn and "eval_modes" in cfg.probes else LANDSCAPE_MODES[:1]
    sample = (data.train_x[: cfg.samples], data.train_y[: cfg.samples])  # (S, *in_shape), (S, ...)
    gen = torch.Generator().manual_seed(10_000 + seed)
    first = torch.randperm(len(data.train_x), generator=gen)[: cfg.batch_size]
    batch = (data.train_x[first], data.train_y[first])  # (B, *in_shape), (B, ...)
    init = Path(run_dir) / "init.json" if run_dir is not None and checkpoint is None else None
    if init is not None and init.is_file():  # an interrupted net: its numbers at initialisation are kept
        saved = json.loads(init.read_text())
        failed, numbers, clock = saved["not_measured"], saved["numbers"], saved["cpu_s"]
    else:
        failed, clock = {}, {}
        numbers = _init_numbers(net, loss_fn, batch, sample, modes, cfg, seed, failed, clock)
        if init is not None:
            write_json(init, {"not_measured": failed, "numbers": numbers, "cpu_s": clock})
    rec: dict[str, Any] = {"seed": seed, "has_bn": has_bn, "trained": checkpoint is None, "lr": cfg.lr,
                           "not_measured": failed, "not_selected": [p for p in PROBES if p not in cfg.probes],
                           "cpu_s": clock, **numbers}
    wanted = [AlongGradientProbe(cfg.probe_every, cfg.eta_factors), ICSProbe(cfg.probe_every)]
    probes = [GuardedProbe(p, failed, clock) for p in wanted if p.name in cfg.probes]
    if checkpoint is not None:
        load_weights(net, checkpoint)
        records = _probe_once(net, loss_fn, batch, cfg, probes)
        rec.update(diverged_at_step=None, steps_done=0, history={}, train_acc=None)
    else:
        start = time.process_time()
        net, trained, records = _train(net, data, loss_fn, cfg, seed, probes, run_dir)
        rec.update(trained)
        probe_s = sum(clock.get(p.name, 0.0) for p in probes)  # the training probes ran inside the loop
        clock["training"] = round(time.process_time() - start - probe_s, 2)
    rec["along_gradient"] = along_gradient_series(_records(records, "along_gradient", failed))
    rec["ics"] = ics_series(_records(records, "ics", failed))
    ok = rec["diverged_at_step"] is None
    with torch.no_grad():
        net.eval()
        out = net(data.test_x)
        rec["test_loss"] = finite_or_none(float(loss_fn(out, data.test_y))) if ok else None
        rec["test_acc"] = (finite_or_none(float((out.argmax(1) == data.test_y).float().mean()))
                           if ok and data.task == "classification" else None)
    rec.update(_end_numbers(net, loss_fn, sample, modes, cfg, seed, failed, clock) if ok else
               {"landscape": {}, "hessian_end": {}})
    for key in ("hessian_start", "hessian_end", "landscape"):  # one function in every mode: shared numbers
        if rec[key] and not has_bn:
            shared = LANDSCAPE_MODES if key == "landscape" else HESSIAN_MODES
            rec[key] = {mode: rec[key]["train"] for mode in shared}
    return rec, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
