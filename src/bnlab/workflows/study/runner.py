"""Run a study: validate every input before anything is written, train and measure both nets of every seed
(in-process, or as cached trials through the sweep executors), decide the claims, and hand back a `StudyResult`.

With ``executor="local"`` and callables, the nets run here, one after another. Given as FILE.py:FACTORY specs
(what the command line passes), every net is a `Trial` of `net_trial` in a trial store under ``OUT/trials``: any
executor (local | process | ray) runs them, an interrupted study resumes where it stopped, and the trial key holds
the sha256 of each user file, so editing the model or data file recomputes instead of reusing old results.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnlab import results as results_schema
from bnlab.atomic import write_bytes, write_json
from bnlab.config import from_mapping, to_mapping
from bnlab.errors import BnlabError
from bnlab.state import batchnorm_layers
from bnlab.sweeps.executors import EXECUTORS
from bnlab.workflows.study.config import StudyConfig
from bnlab.workflows.study.inputs import (
    call_factory,
    check_model,
    file_digest,
    load_data,
    load_factory,
    remove_bn,
    resolve_loss,
)
from bnlab.workflows.study.net import measure_net
from bnlab.workflows.study.verdicts import claim_entries

ARMS: tuple[str, ...] = ("bn", "twin")
Factory = Callable[[], nn.Module]


@dataclass
class StudyResult:
    """A finished study: `results` is results.json (the audit's schema, plus ``study`` and ``runs``); `weights`
    the trained state dict of every net, keyed "bn/seed=0", "twin/seed=0", ..."""

    results: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def verdicts(self) -> dict[str, str]:
        return {c["id"]: c["verdict"] for c in self.results["claims"]}

    def write_report(self, out: str | Path) -> Path:
        """results.json, report.html (self-contained), report.md, figures/ and weights/*.pt into `out`; returns the
        path of report.html."""
        from bnlab.report.build import write_report

        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise BnlabError(f"output path {folder} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        for label, state in self.weights.items():
            buffer = io.BytesIO()
            torch.save(state, buffer)
            write_bytes(folder / "weights" / (label.replace("/", "-").replace("=", "") + ".pt"), buffer.getvalue())
        write_json(folder / "results.json", self.results)
        return write_report(folder, self.results).html


def _twin_factory(model_fn: Factory, twin: str | Factory) -> Factory:
    if twin == "remove-bn":
        def twin_fn() -> nn.Module:
            return remove_bn(model_fn())[0]
        return twin_fn
    if callable(twin):
        return twin
    raise BnlabError(f"twin must be 'remove-bn' or a factory, got {twin!r}")


def _factory(spec: str | Factory) -> Factory:
    return load_factory(spec) if isinstance(spec, str) else spec


def _data(spec: Any) -> Any:
    if isinstance(spec, str):
        return call_factory(load_factory(spec), "data")
    return call_factory(spec, "data") if callable(spec) else spec


def net_trial(*, model: str, twin: str, arm: str, data: str, loss: str, config: Mapping[str, Any], seed: int,
              checkpoint: str | None, weights: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """Trial: one net of a study (arm "bn" or "twin"), from the user's files; writes its final weights to
    `weights` and returns its record. `digests` (the files' sha256) is here only to key the cache."""
    del digests
    cfg = from_mapping(StudyConfig, dict(config), where="study config: ")
    model_fn = load_factory(model)
    build = model_fn if arm == "bn" else _twin_factory(model_fn, twin if twin == "remove-bn"
                                                        else load_factory(twin))
    dataset = load_data(_data(data))
    loss_fn = resolve_loss(loss, dataset.task == "classification", dataset.num_classes)
    rec, state = measure_net(build, dataset, loss_fn, cfg, seed, checkpoint=checkpoint)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(weights, buffer.getvalue())
    return rec


def _model_facts(net: nn.Module) -> dict[str, Any]:
    return {"class": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
            "bn_layers": [name for name, _ in batchnorm_layers(net)]}


def _header(study: Mapping[str, Any]) -> list[str]:
    cfg, model = study["config"], study["model"]
    lines = [f"Your model: {study['model_spec']} ({model['class']}, {model['parameters']:,} parameters, "
             f"{len(model['bn_layers'])} BatchNorm layers). Twin: {study['twin_spec']} "
             f"({study['twin_model']['parameters']:,} parameters).",
             f"Data: {study['data_spec']}: train {study['data']['train_x']}, test {study['data']['test_x']}, "
             f"{study['data']['task']}" + (f" with {study['data']['classes']} classes" if study['data']['classes']
                                           else "") + f"; loss {study['loss']}.",
             f"Budget: {cfg['seeds']} seeds × {cfg['steps']} {cfg['optimizer']} steps, lr {cfg['lr']}, batch "
             f"{cfg['batch_size']}; probes every {cfg['probe_every']} steps; landscapes and Hessian on "
             f"{cfg['samples']} training examples" + ("; nets loaded from checkpoints (not trained)"
                                                      if study["checkpoints"] else "") + "."]
    if study["replaced"]:
        lines.append("Replaced by an identity in the twin: " + "; ".join(
            f"{r['layer']} ({r['kind']}; the layer before it has a bias: "
            f"{'yes' if r['bias_before'] else 'no' if r['bias_before'] is False else 'no layer before'})"
            for r in study["replaced"]) + ".")
    return lines


def study(model: str | Factory, data: Any, *, twin: str | Factory = "remove-bn", loss: str | Callable = "cross_entropy",
          config: StudyConfig | None = None, checkpoints: Sequence[str] | None = None, executor: str = "local",
          workers: int | None = None, out: str | Path | None = None,
          log: Callable[[str], None] | None = None) -> StudyResult:
    """Measure the model-agnostic claims on `model` (a factory returning your nn.Module with BN, or "FILE.py:NAME")
    against its `twin` (``"remove-bn"``: every BatchNorm -> identity; or a second factory) on `data` (four tensors,
    a (train, test) pair of Datasets or DataLoaders, a factory returning one, or "FILE.py:NAME").
    `checkpoints` = (BN.pt, TWIN.pt): measure those weights instead of training. See the package doc."""
    cfg = config or StudyConfig()
    if executor not in EXECUTORS:
        raise BnlabError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    specs = all(isinstance(s, str) for s in (model, data, twin, loss))
    if executor != "local" and not specs:
        raise BnlabError(f"executor {executor!r} runs each net in another process: give the model, data, twin and "
                         "loss as FILE.py:NAME (a Python object cannot be sent there)")
    if checkpoints is not None and len(checkpoints) != 2:
        raise BnlabError(f"give two checkpoints (BN, then twin), got {len(checkpoints)}")
    for path in checkpoints or ():
        if not Path(path).is_file():
            raise BnlabError(f"no such checkpoint file: {path}")
    # --- validate everything before anything is written
    model_fn = _factory(model)
    dataset = load_data(_data(data))
    probe_model = call_factory(model_fn, "model")
    check_model(probe_model, dataset)
    replaced: list[dict[str, Any]] = []
    if twin == "remove-bn":
        if not batchnorm_layers(probe_model):
            raise BnlabError("--twin remove-bn needs a model with BatchNorm layers; this one has none")
        replaced = remove_bn(call_factory(model_fn, "model"))[1]
    twin_fn = _twin_factory(model_fn, twin if twin == "remove-bn" else _factory(twin))
    twin_model = call_factory(twin_fn, "twin")
    check_model(twin_model, dataset)
    loss_fn = resolve_loss(loss, dataset.task == "classification", dataset.num_classes)
    if cfg.target_acc is not None and dataset.task != "classification":
        raise BnlabError("--target-acc needs classification data (integer labels)")
    folder = Path(out) if out is not None else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise BnlabError(f"output path {folder} is a file, not a folder")
    say = log or (lambda _line: None)
    start = time.time()
    seeds = list(range(cfg.seeds))
    weights: dict[str, dict[str, torch.Tensor]] = {}
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    if specs and folder is not None:
        runs, weights = _run_trials(model, twin, data, loss, cfg, seeds, checkpoints, executor, workers, folder, say)
    else:
        for seed in seeds:
            for i, (arm, build) in enumerate((("bn", model_fn), ("twin", twin_fn))):
                say(f"study: {arm} seed {seed} ...")
                rec, state = measure_net(build, dataset, loss_fn, cfg, seed,
                                         checkpoint=checkpoints[i] if checkpoints else None)
                runs[arm].append(rec)
                weights[f"{arm}/seed={seed}"] = state
    chance = 1.0 / dataset.num_classes if dataset.num_classes else math.nan
    study_facts = {
        "model_spec": model if isinstance(model, str) else getattr(model, "__name__", "model"),
        "twin_spec": twin if isinstance(twin, str) else getattr(twin, "__name__", "twin"),
        "data_spec": data if isinstance(data, str) else "(given in Python)",
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "loss"),
        "model": _model_facts(probe_model), "twin_model": _model_facts(twin_model), "replaced": replaced,
        "data": {"train_x": list(dataset.train_x.shape), "test_x": list(dataset.test_x.shape),
                 "task": dataset.task, "classes": dataset.num_classes},
        "config": to_mapping(cfg), "checkpoints": list(checkpoints or []),
    }
    results = {"kind": "study", "title": "bnlab study: BN against its twin on your model",
               "scale": "study", "seeds": cfg.seeds, "first_seed": 0, "executor": executor,
               "created": results_schema.created_now(), "duration_s": round(time.time() - start, 1),
               "claims": claim_entries(runs, cfg, chance), "study": study_facts, "runs": runs}
    results["header"] = _header(study_facts)
    results.update(results_schema.provenance())
    result = StudyResult(results, weights)
    if folder is not None:
        result.write_report(folder)
    return result


def _absolute(spec: str) -> str:
    """FILE.py:NAME with FILE made absolute (a worker may run in another folder); names pass unchanged."""
    if ":" not in spec:
        return spec
    path, _, name = spec.rpartition(":")
    return f"{Path(path).resolve()}:{name}"


def _run_trials(model: str, twin: str, data: str, loss: str, cfg: StudyConfig, seeds: list[int],
                checkpoints: Sequence[str] | None, executor: str, workers: int | None, folder: Path,
                say: Callable[[str], None]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Every net as a cached trial in OUT/trials, run by `executor`."""
    from bnlab.experiments.base import Trial
    from bnlab.sweeps import TrialStore, get_executor

    digests = {spec: file_digest(spec) for spec in {model, data, twin, loss} if ":" in spec}
    trials, paths = [], {}
    for seed in seeds:
        for i, arm in enumerate(ARMS):
            label = f"{arm}/seed={seed}"
            paths[label] = folder / "weights" / f"{arm}-seed{seed}.pt"
            trials.append(Trial("study", label, "bnlab.workflows.study.runner:net_trial",
                                {"model": _absolute(model), "twin": _absolute(twin), "arm": arm,
                                 "data": _absolute(data), "loss": _absolute(loss), "config": to_mapping(cfg),
                                 "seed": seed,
                                 "checkpoint": str(Path(checkpoints[i]).resolve()) if checkpoints else None,
                                 "weights": str(paths[label].resolve()), "digests": digests},
                                cost=2.0 if arm == "bn" else 1.0))
    folder.mkdir(parents=True, exist_ok=True)
    store = TrialStore(folder / "trials")
    records = get_executor(executor, workers=workers).run(trials, store)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    weights: dict[str, Any] = {}
    for trial in trials:
        record = records[trial.key()]
        if record.get("status") != "ok":
            raise BnlabError(f"study net {trial.name} failed: {record.get('error', 'unknown error')}")
        runs[trial.params["arm"]].append(record["result"])
        path = paths[trial.name]
        if path.is_file():  # written by the trial (a cached trial's file may have been removed by hand)
            weights[trial.name] = torch.load(path, map_location="cpu", weights_only=True)
    say(f"study: {len(trials)} nets done (trial records in {folder / 'trials'})")
    return runs, weights
