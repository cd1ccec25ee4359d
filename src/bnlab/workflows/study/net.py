"""One net of a study, on one seed: train it through `bnlab.train` with Santurkar's probes attached, and measure
what the claims' endpoints need, with the very functions the audit's trials use.

At initialisation (before any step):
* C11: ‖∂L/∂W_l‖² of every weight layer on the first batch, BN in train mode (`layer_gradient_norms`), and the
  spread |log10 ‖∂L/∂W_first hidden‖²/‖∂L/∂W_last hidden‖²| (`gradient_spread`, the audit's C11 measure);
* the Hessian λ_max (Lanczos to `hessian_tol`) and trace (Hutch++ to `trace_rtol`) in each BN mode.
During training, at step 0 and every `probe_every` steps, before the step's update and on the step's batch:
* C03: ICS per weight layer (Santurkar Def. 2.1, `ICSProbe`, under the run's own optimizer);
* C05, C06: loss variation and gradient predictiveness along −g (`AlongGradientProbe`, η = eta_factors × lr);
* C13: test accuracy every `eval_every` steps (the training loop's evaluation).
At the end:
* C14: 2-D and 1-D landscapes of the training loss on `samples` examples, filter-normalised directions, in BN
  modes train, eval and recalibrated (`random_plane`, `random_line`), and their roughness;
* the Hessian again, in each BN mode.
A net without BN has one function in every mode: it is measured once and the numbers are shared.
A diverged run is a result: its end-of-training numbers are NaN and `diverged_at_step` says when.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from bnlab.data.dataset import Dataset
from bnlab.errors import BnlabError
from bnlab.landscape import random_directions, random_line, random_plane, roughness
from bnlab.landscape.directions import model_origin
from bnlab.landscape.points import BN_MODES as LANDSCAPE_MODES
from bnlab.probes.along_gradient import AlongGradientProbe
from bnlab.probes.gradflow import gradient_spread, layer_gradient_norms
from bnlab.probes.hessian import top_eigenvalues, trace
from bnlab.probes.ics import ICSProbe
from bnlab.results import finite_or_none
from bnlab.state import BN_MODES as HESSIAN_MODES
from bnlab.state import batchnorm_layers
from bnlab.train import TrainConfig, train
from bnlab.trials.probed_run import along_gradient_series, ics_series
from bnlab.workflows.study.config import StudyConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CURVE_POINTS = 200  # the training-loss curve kept per net (subsampled)
TRACE_MAX_SAMPLES = 30  # Hutch++ stops at trace_rtol or here (a trace near 0 has no relative accuracy)


def hessian_numbers(net: nn.Module, loss_fn: LossFn, sample: tuple[torch.Tensor, torch.Tensor], modes: tuple[str, ...],
                    cfg: StudyConfig, seed: int) -> dict[str, dict[str, float | None]]:
    """Per BN mode (train, eval): λ_max and the trace of the Hessian of the loss on `sample` (seeded: reproducible)."""
    out = {}
    for mode in [m for m in modes if m in HESSIAN_MODES]:
        lam = top_eigenvalues(net, loss_fn, sample, bn_mode=mode, tol=cfg.hessian_tol, seed=seed).eigenvalues[0]
        tr = trace(net, loss_fn, sample, bn_mode=mode, rtol=cfg.trace_rtol, max_samples=TRACE_MAX_SAMPLES,
                   seed=seed)
        out[mode] = {"lambda_max": finite_or_none(float(lam)), "trace": finite_or_none(float(tr.trace)),
                     "trace_se": finite_or_none(float(tr.se))}
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
                     "roughness_1d": finite_or_none(roughness(curve.loss, curve.t, None, cfg.rough_radius))}
    return out


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


def _probe_once(net: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor], cfg: StudyConfig,
                probes: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """The training probes at the loaded weights, once (a checkpoint has no training run to probe)."""
    opt = (torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum) if cfg.optimizer == "sgd"
           else torch.optim.Adam(net.parameters(), lr=cfg.lr))
    ctx = SimpleNamespace(step=0, model=net, loss_fn=loss_fn, batch=batch, optimizer=opt,
                          config=SimpleNamespace(lr=cfg.lr))
    return {p.name: [p(ctx)] for p in probes}


def measure_net(build: Callable[[], nn.Module], data: Dataset, loss_fn: LossFn, cfg: StudyConfig, seed: int, *,
                checkpoint: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train (or load) one net and measure it (module doc); returns (plain-data record, final state dict)."""
    torch.manual_seed(seed)
    net = build()
    modes = LANDSCAPE_MODES if batchnorm_layers(net) else LANDSCAPE_MODES[:1]
    sample = (data.train_x[: cfg.samples], data.train_y[: cfg.samples])  # (S, *in_shape), (S, ...)
    gen = torch.Generator().manual_seed(10_000 + seed)
    first = torch.randperm(len(data.train_x), generator=gen)[: cfg.batch_size]
    grads = layer_gradient_norms(net, loss_fn, (data.train_x[first], data.train_y[first]), bn="train")
    rec: dict[str, Any] = {"seed": seed, "has_bn": len(modes) > 1, "trained": checkpoint is None,
                           "layers": grads["layers"], "weight_grad_sq_init": [finite_or_none(v) for v in
                                                                              grads["weight_grad_sq"]],
                           "gradient_spread": finite_or_none(gradient_spread(grads["weight_grad_sq"])),
                           "hessian_start": hessian_numbers(net, loss_fn, sample, modes, cfg, seed)}
    probes = [AlongGradientProbe(cfg.probe_every, cfg.eta_factors), ICSProbe(cfg.probe_every)]
    if checkpoint is not None:
        load_weights(net, checkpoint)
        records = _probe_once(net, loss_fn, (data.train_x[first], data.train_y[first]), cfg, probes)
        rec.update(diverged_at_step=None, steps_done=0, history={})
    else:
        config = TrainConfig(model="mlp", dataset="digits", optimizer=cfg.optimizer, lr=cfg.lr,
                             momentum=cfg.momentum if cfg.optimizer == "sgd" else 0.0, steps=cfg.steps,
                             batch_size=min(cfg.batch_size, len(data.train_x)), eval_every=cfg.eval_every,
                             eval_train_size=min(1000, len(data.train_x)), seed=seed, device=cfg.device,
                             progress=False, trackers=())
        result = train(config, model=net, dataset=data, loss_fn=loss_fn, probes=probes)
        net, records = result.model.cpu(), result.probes
        h = result.history
        keep = max(1, len(h["step"]) // CURVE_POINTS)
        rec.update(diverged_at_step=result.diverged_at_step, steps_done=int(result.final.get("steps_done", 0)),
                   history={"step": h["step"][::keep],
                            "train_loss": [finite_or_none(v) for v in h["train_loss"][::keep]],
                            "eval_step": list(h["eval_step"]), "test_acc": [finite_or_none(v) for v in h["test_acc"]],
                            "test_loss": [finite_or_none(v) for v in h["test_loss"]]})
    rec["along_gradient"] = along_gradient_series(records.get("along_gradient", []))
    rec["ics"] = ics_series(records.get("ics", []))
    ok = rec["diverged_at_step"] is None
    with torch.no_grad():
        net.eval()
        out = net(data.test_x)
        rec["test_loss"] = finite_or_none(float(loss_fn(out, data.test_y))) if ok else None
        rec["test_acc"] = (finite_or_none(float((out.argmax(1) == data.test_y).float().mean()))
                           if ok and data.task == "classification" else None)
    rec["landscape"] = landscape_numbers(net, loss_fn, sample, modes, cfg, seed) if ok else {}
    rec["hessian_end"] = hessian_numbers(net, loss_fn, sample, modes, cfg, seed) if ok else {}
    for key in ("hessian_start", "hessian_end", "landscape"):  # one function in every mode: shared numbers
        if rec[key] and len(modes) == 1:
            shared = LANDSCAPE_MODES if key == "landscape" else HESSIAN_MODES
            rec[key] = {mode: rec[key]["train"] for mode in shared}
    return rec, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
