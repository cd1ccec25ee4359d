"""`bnlab study`: the model-agnostic claims measured on a user's own model and data, BN against its twin.

The user's file is imported from the path given, and only from there (it is their code, run as such): `--model
FILE.py:FACTORY` returns an `nn.Module` with BN; `--data FILE.py:FACTORY` returns tensors (train_x, train_y, test_x,
test_y) for classification. The twin is the same factory's model with every BatchNorm (torch's and bnlab's)
replaced by an identity (``remove-bn``; the report lists the layers replaced and whether the layer before each has
a bias), or a second factory. Both nets train with the same seeds, batches, optimizer and budget, and per seed the
study measures, as the audit's claims do:

* C05 loss variation and C06 gradient predictiveness along the gradient (Santurkar Fig. 4), mean of log over probe
  times, no BN / BN;
* C11 gradient spread at initialisation, |log10 ‖∂L/∂W_first‖²/‖∂L/∂W_last‖²| of the first and last weight layers,
  twin minus BN;
* C14 2-D roughness of the training-loss landscape at the end (filter-normalised directions, BN in train mode);
* the Hessian λ_max at the end in BN modes train and eval (reported, as in the audit).

Each claim's per-seed values are judged by the rule of the audit's primary endpoints (95% t-interval against 0,
`bnlab.experiments.base.setting_result`); with one seed no interval exists and every verdict is inconclusive.
Writes ``study.json`` and ``report.md`` under `out`.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnlab.errors import BnlabError
from bnlab.state import batchnorm_layers

# which claim each measure stands for, and how its per-seed value is named (positive = the claim's direction)
MEASURES: dict[str, tuple[str, str]] = {
    "C05": ("loss_variation", "log(loss variation twin / BN)"),
    "C06": ("gradient_predictiveness", "log(gradient predictiveness twin / BN)"),
    "C11": ("gradient_spread", "gradient spread at init, twin − BN (decades)"),
    "C14": ("roughness", "log(2-D roughness twin / BN), BN mode train"),
}


def load_factory(spec: str) -> Callable[..., Any]:
    """FILE.py:NAME -> the callable NAME of that file, imported from that path only."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise BnlabError(f"expected FILE.py:FACTORY, got {spec!r}")
    path = Path(path_text)
    if not path.is_file():
        raise BnlabError(f"no such file: {path}")
    module_name = f"bnlab_user_{abs(hash(str(path.resolve())))}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise BnlabError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module  # registered while it runs: dataclasses and pickling look a module up there
    try:
        loader.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's own error, in one line
        sys.modules.pop(module_name, None)
        raise BnlabError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise BnlabError(f"{path} has no function {name!r}")
    return factory


def _call(factory: Callable[..., Any], what: str) -> Any:
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001
        raise BnlabError(f"the {what} factory {getattr(factory, '__name__', factory)!r} raised "
                         f"{type(exc).__name__}: {exc}") from None


def remove_bn(model: nn.Module) -> tuple[nn.Module, list[dict[str, Any]]]:
    """The model with every BN layer replaced by nn.Identity (in place), and per replaced layer its name and whether
    the weight layer just before it (in registration order) has a bias."""
    replaced: list[dict[str, Any]] = []
    previous: nn.Module | None = None
    bn_names = {n for n, _ in batchnorm_layers(model)}
    for name, module in list(model.named_modules()):
        if name in bn_names:
            bias = getattr(previous, "bias", None) is not None if previous is not None else None
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, nn.Identity())
            replaced.append({"layer": name, "kind": type(module).__name__, "bias_before": bias})
        elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            previous = module
    return model, replaced


def check_data(data: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y) as float inputs and int64 labels, or a BnlabError naming the problem."""
    if not isinstance(data, (tuple, list)) or len(data) != 4 or not all(torch.is_tensor(t) for t in data):
        raise BnlabError("the data factory must return four tensors (train_x, train_y, test_x, test_y)")
    train_x, train_y, test_x, test_y = data
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if len(x) != len(y) or len(x) < 2:
            raise BnlabError(f"{name}_x and {name}_y must hold the same number (>= 2) of examples, got "
                             f"{len(x)} and {len(y)}")
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise BnlabError(f"{name}_x must be a finite floating-point tensor (NaN or inf found, or wrong dtype)")
        if y.dtype not in (torch.int64, torch.int32) or y.dim() != 1:
            raise BnlabError(f"{name}_y must be a 1-D tensor of integer class labels, got {y.dtype} {tuple(y.shape)}")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise BnlabError(f"train and test inputs differ in shape: {tuple(train_x.shape[1:])} vs "
                         f"{tuple(test_x.shape[1:])}")
    return train_x.float(), train_y.long(), test_x.float(), test_y.long()


@dataclass(frozen=True)
class StudyConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    seeds: int = 3
    probe_every: int = 50
    eta_factors: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    landscape_points: int = 9
    landscape_samples: int = 256

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "seeds", "probe_every", "landscape_points", "landscape_samples"):
            if getattr(self, key) < 1:
                raise BnlabError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise BnlabError(f"lr must be a finite number > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise BnlabError(f"optimizer must be sgd or adam, got {self.optimizer!r}")


def _one_net(build: Callable[[], nn.Module], data: tuple, cfg: StudyConfig, seed: int) -> dict[str, Any]:
    """Train one net on seed `seed`; the measures of the module doc."""
    from bnlab.landscape import random_plane, roughness
    from bnlab.probes.along_gradient import along_gradient
    from bnlab.probes.gradflow import gradient_spread, layer_gradient_norms
    from bnlab.probes.hessian import top_eigenvalues

    train_x, train_y, test_x, test_y = data
    loss_fn = nn.functional.cross_entropy
    torch.manual_seed(seed)
    net = build()
    gen = torch.Generator().manual_seed(10_000 + seed)
    first = torch.randperm(len(train_x), generator=gen)[: cfg.batch_size]
    grads = layer_gradient_norms(net, loss_fn, (train_x[first], train_y[first]), bn="train")
    spread = gradient_spread([0.0, *grads["weight_grad_sq"], 0.0]) if len(grads["weight_grad_sq"]) >= 1 else math.nan
    opt = (torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9) if cfg.optimizer == "sgd"
           else torch.optim.Adam(net.parameters(), lr=cfg.lr))
    lv, gp, diverged = [], [], None
    for step in range(cfg.steps):
        idx = torch.randint(0, len(train_x), (min(cfg.batch_size, len(train_x)),), generator=gen)
        batch = (train_x[idx], train_y[idx])
        if step % cfg.probe_every == 0:
            along = along_gradient(net, loss_fn, batch, [f * cfg.lr for f in cfg.eta_factors])
            lv.append(along.loss_variation)
            gp.append(along.gradient_predictiveness)
        net.train()
        opt.zero_grad()
        loss = loss_fn(net(batch[0]), batch[1])
        if not torch.isfinite(loss):
            diverged = step
            break
        loss.backward()
        opt.step()
    out: dict[str, Any] = {"seed": seed, "diverged_at": diverged, "gradient_spread": spread,
                           "loss_variation": _log_mean(lv), "gradient_predictiveness": _log_mean(gp)}
    with torch.no_grad():
        net.eval()
        out["test_acc"] = float((net(test_x).argmax(1) == test_y).float().mean()) if diverged is None else math.nan
    sample = (train_x[: cfg.landscape_samples], train_y[: cfg.landscape_samples])
    if diverged is None:
        plane = random_plane(net, loss_fn, sample, radius=1.0, steps=cfg.landscape_points, bn_mode="train",
                             seed=1000 + seed)
        out["roughness"] = roughness(plane.loss, plane.x, plane.y, 1.0)
        for mode in ("train", "eval"):
            out[f"lambda_max_{mode}"] = top_eigenvalues(net, loss_fn, sample, bn_mode=mode, tol=1e-3,
                                                        seed=seed).eigenvalues[0]
    return out


def _log_mean(values: list[float]) -> float:
    logs = [math.log(v) for v in values if math.isfinite(v) and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


def run_study(model_fn: Callable[[], nn.Module], data: Any, *, twin: str | Callable[[], nn.Module] = "remove-bn",
              config: StudyConfig | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Measure the study (module doc) and, with `out`, write ``study.json`` and ``report.md`` there."""
    from bnlab.atomic import write_json, write_text
    from bnlab.config import to_mapping
    from bnlab.experiments import stats
    from bnlab.experiments.base import Endpoint, setting_result

    cfg = config or StudyConfig()
    tensors = check_data(data)
    probe_model = _call(model_fn, "model")
    if not isinstance(probe_model, nn.Module):
        raise BnlabError(f"the model factory must return an nn.Module, got {type(probe_model).__name__}")
    try:
        with torch.no_grad():
            probe_model.eval()(tensors[0][:2])
    except Exception as exc:  # noqa: BLE001
        raise BnlabError(f"the model does not accept the data (inputs of shape {tuple(tensors[0].shape[1:])}): "
                         f"{type(exc).__name__}: {exc}") from None
    replaced: list[dict[str, Any]] = []
    if twin == "remove-bn":
        if not batchnorm_layers(probe_model):
            raise BnlabError("--twin remove-bn needs a model with BatchNorm layers; this one has none")
        _, replaced = remove_bn(_call(model_fn, "model"))

        def twin_fn() -> nn.Module:
            return remove_bn(model_fn())[0]
    elif callable(twin):
        twin_fn = twin
    else:
        raise BnlabError(f"twin must be 'remove-bn' or a factory, got {twin!r}")
    seeds = list(range(cfg.seeds))
    runs = {"bn": [_one_net(model_fn, tensors, cfg, s) for s in seeds],
            "twin": [_one_net(twin_fn, tensors, cfg, s) for s in seeds]}
    claims = {}
    for claim, (key, name) in MEASURES.items():
        bn, other = [r.get(key, math.nan) for r in runs["bn"]], [r.get(key, math.nan) for r in runs["twin"]]
        values = stats.paired_differences(other, bn) if key == "gradient_spread" else \
            stats.paired_log_ratios(other, bn)
        result = setting_result(Endpoint(name=name, measure=name, unit="", test="t"), "all", values)
        claims[claim] = {"name": name, "values": values, **result.to_dict()}
    n_params = sum(p.numel() for p in probe_model.parameters())
    study = {"config": to_mapping(cfg), "parameters": n_params, "replaced": replaced,
             "data": {"train": list(tensors[0].shape), "test": list(tensors[2].shape)}, "runs": runs,
             "claims": claims}
    if out is not None:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise BnlabError(f"output path {folder} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "study.json", study)
        write_text(folder / "report.md", study_markdown(study))
    return study


def study_markdown(study: dict[str, Any]) -> str:
    """The study as a short Markdown report: the model, what was replaced, the verdict table, the Hessian."""
    from bnlab.report.markdown import escape

    cfg = study["config"]
    lines = ["# bnlab study", "",
             f"Model: {study['parameters']} parameters; data: train {study['data']['train']}, test "
             f"{study['data']['test']}; {cfg['seeds']} seeds × {cfg['steps']} {cfg['optimizer']} steps, lr "
             f"{cfg['lr']}, batch {cfg['batch_size']}.", ""]
    if study["replaced"]:
        lines.append("Twin: every BatchNorm replaced by an identity: " + ", ".join(
            f"`{escape(r['layer'])}` ({r['kind']}; layer before it has a bias: {r['bias_before']})"
            for r in study["replaced"]) + ".")
        lines.append("")
    lines += ["| claim | measure (per seed, twin vs BN) | effect [95% CI] | verdict |", "|---|---|---|---|"]
    for claim, c in study["claims"].items():
        ci = f"[{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]" if c["ci_low"] is not None else "(no CI)"
        eff = f"{c['effect']:+.3g}" if c["effect"] is not None and math.isfinite(c["effect"]) else "n/a"
        lines.append(f"| {claim} | {escape(c['name'])} | {eff} {ci} | {c['vote']} |")
    lines.append("")
    for label in ("bn", "twin"):
        lam = [r.get("lambda_max_train") for r in study["runs"][label]]
        lines.append(f"- {label}: Hessian λ_max (train mode) per seed {lam}; test accuracy "
                     f"{[round(r['test_acc'], 4) for r in study['runs'][label]]}")
    return "\n".join(lines) + "\n"
