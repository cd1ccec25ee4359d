"""Run a study: validate every input before anything is written, train and measure both nets of every seed
(in-process, or as cached trials through the sweep executors), decide the claims, and hand back a `StudyResult`.

With ``executor="local"`` and callables, the nets run here, one after another. Given as FILE.py:FACTORY specs
(what the command line passes), every net is a `Trial` of `net_trial` in a trial store under ``OUT/trials``: any
executor (local | process | ray) runs them, an interrupted study resumes where it stopped, and the trial key holds
the sha256 of each user file, so editing the model or data file recomputes instead of reusing old results.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from bnlab.folders import claim_out_folder
from bnlab.state import batchnorm_layers
from bnlab.sweeps.executors import EXECUTORS
from bnlab.workflows.study.config import StudyConfig
from bnlab.workflows.study.inputs import (
    call_factory,
    check_model,
    file_digest,
    load_data,
    load_factory,
    resolve_loss,
)
from bnlab.workflows.study.net import load_weights, lr_score, measure_net
from bnlab.workflows.study.twin import TWINS, init_confounds, make_twin
from bnlab.workflows.study.verdicts import claim_entries, net_problems

ARMS: tuple[str, ...] = ("bn", "twin")
WEIGHTS_DIGEST = "weights_sha256"  # in a net trial's record: the sha256 of the weights file it wrote
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
            path = folder / "weights" / (label.replace("/", "-").replace("=", "") + ".pt")
            if not (path.is_file() and path.read_bytes() == buffer.getvalue()):  # a net trial wrote it already
                write_bytes(path, buffer.getvalue())
        write_json(folder / "results.json", self.results)
        return write_report(folder, self.results).html


def _twin_factory(model_fn: Factory, twin: str | Factory, match_init: bool = False) -> Factory:
    """The twin's factory: one of `TWINS` applied to a fresh model, or the user's own factory."""
    if isinstance(twin, str) and twin in TWINS:
        def twin_fn() -> nn.Module:
            return make_twin(model_fn(), twin, match_init=match_init)[0]
        return twin_fn
    if callable(twin):
        return twin
    raise BnlabError(f"twin must be one of {', '.join(TWINS)} or FILE.py:FACTORY, got {twin!r}")


def _factory(spec: str | Factory) -> Factory:
    return load_factory(spec) if isinstance(spec, str) else spec


def _data(spec: Any) -> Any:
    if isinstance(spec, str):
        return call_factory(load_factory(spec), "data")
    return call_factory(spec, "data") if callable(spec) else spec


def _arm_inputs(model: str, twin: str, arm: str, data: str, loss: str,
                config: Mapping[str, Any]) -> tuple[StudyConfig, Factory, Any, Callable]:
    cfg = from_mapping(StudyConfig, dict(config), where="study config: ")
    model_fn = load_factory(model)
    build = model_fn if arm == "bn" else _twin_factory(model_fn, twin if twin in TWINS else load_factory(twin),
                                                        cfg.match_init)
    dataset = load_data(_data(data))
    return cfg, build, dataset, resolve_loss(loss, dataset.task == "classification", dataset.num_classes)


def lr_trial(*, model: str, twin: str, arm: str, data: str, loss: str, config: Mapping[str, Any], seed: int,
             lr: float, digests: Mapping[str, str]) -> dict[str, Any]:
    """Trial: one run of the lr grid (arm "bn" or "twin", held-out `seed`, no probes): its final training loss
    (None when it diverged). `digests` (the files' sha256) is here only to key the cache."""
    del digests
    cfg, build, dataset, loss_fn = _arm_inputs(model, twin, arm, data, loss, config)
    value = lr_score(build, dataset, loss_fn, cfg, seed, lr)
    return {"final_train_loss": value if math.isfinite(value) else None}


def net_trial(*, model: str, twin: str, arm: str, data: str, loss: str, config: Mapping[str, Any], seed: int,
              checkpoint: str | None, weights: str, digests: Mapping[str, str],
              run_dir: str | None = None) -> dict[str, Any]:
    """Trial: one net of a study (arm "bn" or "twin"), from the user's files; writes its final weights to
    `weights` and returns its record, with the sha256 of the weights file written (checked when it is read back);
    `run_dir` keeps its checkpoints (an interrupted net resumes there). `digests` (the files' sha256) is here only
    to key the cache: the paths are the trial's locations, outside its key, so a study folder that is moved is
    reused."""
    del digests
    cfg, build, dataset, loss_fn = _arm_inputs(model, twin, arm, data, loss, config)
    rec, state = measure_net(build, dataset, loss_fn, cfg, seed, checkpoint=checkpoint, run_dir=run_dir)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(weights, buffer.getvalue())
    return {**rec, WEIGHTS_DIGEST: hashlib.sha256(buffer.getvalue()).hexdigest()}


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
             f"{cfg['batch_size']}; probes every {cfg['probe_every']} steps; landscapes on {cfg['samples']} "
             f"training examples ({cfg['landscape_points']}×{cfg['landscape_points']} grid)" + _hessian_budget(cfg)
             + ("; nets loaded from checkpoints (not trained)" if study["checkpoints"] else "") + "."]
    return lines + _twin_lines(study)


def _hessian_budget(cfg: Mapping[str, Any]) -> str:
    """What the Hessian was measured on and to what precision (nothing when it was not selected)."""
    if "hessian" not in cfg.get("probes", ()) or "hessian_samples" not in cfg:
        return ""
    trace = f"its trace from at most {cfg['trace_samples']} samples" if "trace_samples" in cfg else "its trace"
    bound = "" if cfg.get("hessian_criterion") == "residual" else "an estimated "
    return (f", the Hessian on the first {min(cfg['samples'], cfg['hessian_samples'])} (λ_max to {bound}"
            f"{100 * cfg['hessian_tol']:g}%, {trace})")


def _twin_lines(study: Mapping[str, Any]) -> list[str]:
    """What the twin replaced and kept, and the init confound (γ = 0 in the BN net), in words."""
    lines = []
    if study["replaced"]:
        def one(r: Mapping[str, Any]) -> str:
            bias = {True: "yes", False: "no"}.get(r["bias_before"], "no layer before")
            kept = f", kept {', '.join(r['kept'])}" if r.get("kept") else ""
            return f"{r['layer']} ({r['kind']} -> {r.get('by', 'Identity')}{kept}; bias before: {bias})"
        kept = sum(len(r.get("kept") or []) for r in study["replaced"])
        lines.append(f"Twin: {len(study['replaced'])} BN layers replaced, {kept} activation/dropout parts of fused "
                     "layers kept: " + "; ".join(one(r) for r in study["replaced"]) + ".")
    zero = study.get("zero_gamma") or []
    if zero:
        matched = any(r.get("matched") for r in study["replaced"])
        lines.append(f"Init confound: {len(zero)} BN layers start with γ = 0 ({', '.join(zero[:6])}"
                     f"{', ...' if len(zero) > 6 else ''}): the BN net starts with those branches off, "
                     + ("and the twin too (--match-init)." if matched else
                        "the twin with them on; --match-init starts the twin's off as well."))
    return lines


def study(model: str | Factory, data: Any, *, twin: str | Factory = "remove-bn", loss: str | Callable = "cross_entropy",
          config: StudyConfig | None = None, checkpoints: Sequence[str] | None = None, executor: str = "local",
          workers: int | None = None, out: str | Path | None = None,
          log: Callable[[str], None] | None = None, progress: Any = None, force: bool = False) -> StudyResult:
    """Measure the model-agnostic claims on `model` (a factory returning your nn.Module with BN, or "FILE.py:NAME")
    against its `twin` (one of `TWINS`: ``"remove-bn"`` = ``"identity"``, ``"groupnorm"``, ``"layernorm"`` -- only
    the normalisation replaced --, or a second factory) on `data` (four tensors, a (train, test) pair of Datasets or
    DataLoaders, a factory returning one, or "FILE.py:NAME"). `checkpoints` = (BN.pt, TWIN.pt): measure those
    weights instead of training (read weights_only and loaded into both nets here, before anything is written).
    `progress`: a `bnlab.sweeps.progress.ProgressBar` or `ProgressPrinter` for the cached trials (FILE.py specs
    with `out`). `out` must be empty or a study's folder, unless `force` (`bnlab.folders.claim_out_folder`).
    See the package doc."""
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
    named_twin = isinstance(twin, str) and twin in TWINS
    if named_twin:
        if not batchnorm_layers(probe_model):
            raise BnlabError(f"--twin {twin} needs a model with BatchNorm layers; this one has none")
        replaced = make_twin(call_factory(model_fn, "model"), twin, match_init=cfg.match_init)[1]
    twin_fn = _twin_factory(model_fn, twin if named_twin else _factory(twin), cfg.match_init)
    twin_model = call_factory(twin_fn, "twin")
    check_model(twin_model, dataset)
    if checkpoints:  # a bad checkpoint (a pickle, another model's) is refused now, not inside every trial
        load_weights(call_factory(model_fn, "model"), checkpoints[0])
        load_weights(call_factory(twin_fn, "twin"), checkpoints[1])
    loss_fn = resolve_loss(loss, dataset.task == "classification", dataset.num_classes)
    if cfg.target_acc is not None and dataset.task != "classification":
        raise BnlabError("--target-acc needs classification data (integer labels)")
    folder = claim_out_folder(out, "study", force=force) if out is not None else None
    say = log or (lambda _line: None)
    start = time.time()
    if specs and folder is not None:
        trials = _Trials(model, twin, data, loss, executor, workers, folder, say, progress)
        lrs = trials.lr_stage(cfg) if cfg.lr_grid and not checkpoints else {}
        runs, weights = trials.nets(_arm_configs(cfg, lrs), checkpoints)
    else:
        builds = {"bn": model_fn, "twin": twin_fn}
        lrs = (_choose(cfg, {arm: {lr: [lr_score(builds[arm], dataset, loss_fn, cfg, LR_SEED + s, lr)
                                        for s in range(cfg.lr_seeds)] for lr in cfg.lr_grid} for arm in ARMS})
               if cfg.lr_grid and not checkpoints else {})
        runs, weights = _run_local(builds, dataset, loss_fn, _arm_configs(cfg, lrs), checkpoints, say)
    chance = 1.0 / dataset.num_classes if dataset.num_classes else math.nan
    facts = {
        "model_spec": model if isinstance(model, str) else getattr(model, "__name__", "model"),
        "twin_spec": twin if isinstance(twin, str) else getattr(twin, "__name__", "twin"),
        "data_spec": data if isinstance(data, str) else "(given in Python)",
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "loss"),
        "model": _model_facts(probe_model), "twin_model": _model_facts(twin_model), "replaced": replaced,
        "zero_gamma": init_confounds(probe_model), "lr_choice": lrs,
        "data": {"train_x": list(dataset.train_x.shape), "test_x": list(dataset.test_x.shape),
                 "task": dataset.task, "classes": dataset.num_classes},
        "config": to_mapping(cfg), "checkpoints": list(checkpoints or []),
    }
    results = {"kind": "study", "title": "bnlab study: BN against its twin on your model",
               "scale": "study", "seeds": cfg.seeds, "first_seed": 0, "executor": executor,
               "created": results_schema.created_now(), "duration_s": round(time.time() - start, 1),
               "claims": claim_entries(runs, cfg, chance), "study": facts, "runs": runs}
    results["header"] = _header(facts) + _outcome_lines(runs, chance, bool(lrs))
    results.update(results_schema.provenance())
    result = StudyResult(results, weights)
    if folder is not None:
        result.write_report(folder)
    return result


LR_SEED = 1000  # the held-out seeds the lr grid is chosen on: 1000, 1001, ... (the study's seeds are 0, 1, ...)


def _arm_configs(cfg: StudyConfig, lrs: Mapping[str, Mapping[str, Any]]) -> dict[str, StudyConfig]:
    return {arm: dataclasses.replace(cfg, lr=lrs[arm]["lr"]) if arm in lrs else cfg for arm in ARMS}


def _choose(cfg: StudyConfig, scores: Mapping[str, Mapping[float, Sequence[float]]]) -> dict[str, Any]:
    """Per net, the grid lr with the lowest mean final training loss over the held-out seeds (a diverged run
    scores inf; when every lr diverged, the smallest), and the whole grid's scores."""
    out = {}
    for arm, per_lr in scores.items():
        grid = [{"lr": lr, "final_train_loss": (sum(v) / len(v) if v and all(math.isfinite(x) for x in v)
                                                else None)} for lr, v in per_lr.items()]
        finite = [g for g in grid if g["final_train_loss"] is not None]
        chosen = min(finite, key=lambda g: g["final_train_loss"])["lr"] if finite else min(per_lr)
        out[arm] = {"lr": chosen, "grid": grid, "seeds": [LR_SEED + s for s in range(cfg.lr_seeds)]}
    return out


def _run_local(builds: Mapping[str, Factory], dataset: Any, loss_fn: Callable, cfgs: Mapping[str, StudyConfig],
               checkpoints: Sequence[str] | None,
               say: Callable[[str], None]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Both nets of every seed, here, one after another."""
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    weights: dict[str, Any] = {}
    seeds = range(cfgs["bn"].seeds)
    for seed in seeds:
        for i, arm in enumerate(ARMS):
            say(f"study: {arm} seed {seed} ({2 * seed + i + 1} of {2 * len(seeds)} nets) ...")
            rec, state = measure_net(builds[arm], dataset, loss_fn, cfgs[arm], seed,
                                     checkpoint=checkpoints[i] if checkpoints else None)
            runs[arm].append(rec)
            weights[f"{arm}/seed={seed}"] = state
    return runs, weights


def _outcome_lines(runs: Mapping[str, Sequence[Mapping[str, Any]]], chance: float, grid: bool) -> list[str]:
    """The final train and test accuracy of both nets (mean over seeds), and every net that did not train."""
    def mean(arm: str, key: str) -> str:
        values = [r.get(key) for r in runs[arm]]
        ok = [v for v in values if v is not None]
        return f"{sum(ok) / len(ok):.3f}" if ok and len(ok) == len(values) else "n/a (diverged)" if not ok else \
            f"{sum(ok) / len(ok):.3f} over {len(ok)} of {len(values)} seeds"

    lines = []
    if any(r.get("trained") for r in runs["bn"]) and all(r.get("test_acc") is not None or r.get("diverged_at_step")
                                                         is not None for arm in ARMS for r in runs[arm]):
        lines.append("Final accuracy (mean over seeds): " + "; ".join(
            f"{name} train {mean(arm, 'train_acc')}, test {mean(arm, 'test_acc')} (lr {runs[arm][0].get('lr')})"
            for arm, name in (("bn", "BN net"), ("twin", "twin"))) + ".")
    cpu: dict[str, float] = {}
    for r in (r for arm in ARMS for r in runs[arm]):
        for key, seconds in (r.get("cpu_s") or {}).items():
            cpu[key] = cpu.get(key, 0.0) + seconds
    if cpu:
        lines.append("Where the time went (CPU seconds, all nets, all threads): " + ", ".join(
            f"{key.replace('_', ' ')} {seconds:.0f} s" for key, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]))
            + ".")
    problems = net_problems(runs, chance)
    if problems:
        lines.append("Did not train: " + "; ".join(problems) + ". The claims measured on trained nets are "
                     "inconclusive for that reason" + ("" if grid else "; try --lr with a grid (each net at its "
                                                                       "best lr)") + ".")
    return lines


def _absolute(spec: str) -> str:
    """FILE.py:NAME with FILE made absolute (a worker may run in another folder); names pass unchanged."""
    if ":" not in spec:
        return spec
    path, _, name = spec.rpartition(":")
    return f"{Path(path).resolve()}:{name}"


def _spec_digest(spec: str) -> str:
    """What a FILE.py:NAME spec keys a trial by: the file's sha256 and the name (not the path); other specs
    ("remove-bn", "cross_entropy") as they are."""
    return f"sha256:{file_digest(spec)}:{spec.rpartition(':')[2]}" if ":" in spec else spec


def _file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_weights(path: Path, digest: Any) -> dict[str, Any] | None:
    """The state dict a net trial wrote to `path`, or None when it is missing, altered since (its sha256 differs
    from the one in the trial's record) or unreadable with weights_only=True."""
    try:
        if not isinstance(digest, str) or _file_sha256(path) != digest:
            return None
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any damage (OSError, an UnpicklingError, a torn zip) means: recompute
        return None


class _Trials:
    """Every net (and every lr-grid run) as a cached trial in OUT/trials, run by `executor`: an interrupted study
    resumes ("resuming: 2 of 4 nets cached"), and an interrupted net resumes from its checkpoint in OUT/nets.
    A trial's key holds the contents (digests) of every input, its locations the paths, so neither moving the
    study folder nor the user's files recomputes anything; a net whose weights file is missing, altered or
    unreadable is recomputed, and the run says so."""

    def __init__(self, model: str, twin: str, data: str, loss: str, executor: str, workers: int | None,
                 folder: Path, say: Callable[[str], None], progress: Any) -> None:
        from bnlab.sweeps import TrialStore

        self.specs = {"model": _absolute(model), "twin": _absolute(twin), "data": _absolute(data),
                      "loss": _absolute(loss)}
        self.digests = {role: _spec_digest(spec) for role, spec in (("model", model), ("twin", twin),
                                                                    ("data", data), ("loss", loss))}
        self.executor, self.workers, self.folder, self.say, self.progress = executor, workers, folder, say, progress
        folder.mkdir(parents=True, exist_ok=True)
        self.store = TrialStore(folder / "trials")

    def run(self, trials: list[Any], what: str) -> dict[str, Any]:
        """Every trial's record (cached ones read back); a failed trial is an error naming it."""
        from bnlab.sweeps import get_executor

        cached = {t.key() for t in trials if self.store.done(t.key())}
        if cached:
            self.say(f"study: resuming: {len(cached)} of {len(trials)} {what} cached")
        if self.progress is not None and hasattr(self.progress, "expect"):
            self.progress.expect(trials, cached)
        records = get_executor(self.executor, workers=self.workers).run(trials, self.store, progress=self.progress)
        if self.progress is not None and hasattr(self.progress, "close"):
            self.progress.close()
        for trial in trials:
            record = records[trial.key()]
            if record.get("status") != "ok":
                raise BnlabError(f"study {trial.name} failed: {record.get('error', 'unknown error')}")
        return records

    def lr_stage(self, cfg: StudyConfig) -> dict[str, Any]:
        """Each net's lr, chosen from `cfg.lr_grid` on the held-out seeds (`_choose`)."""
        from bnlab.experiments.base import Trial

        trials = [Trial("study", f"lr/{arm}/lr={lr:g}/seed={LR_SEED + s}", "bnlab.workflows.study.runner:lr_trial",
                        {"arm": arm, "config": to_mapping(cfg), "seed": LR_SEED + s, "lr": lr,
                         "digests": self.digests}, cost=1.0, locations=self.specs)
                  for arm in ARMS for lr in cfg.lr_grid for s in range(cfg.lr_seeds)]
        self.say(f"study: choosing each net's lr from {', '.join(f'{lr:g}' for lr in cfg.lr_grid)} "
                 f"({len(trials)} training runs)")
        records = self.run(trials, "lr-grid runs")
        scores: dict[str, dict[float, list[float]]] = {arm: {lr: [] for lr in cfg.lr_grid} for arm in ARMS}
        for t in trials:
            value = records[t.key()]["result"]["final_train_loss"]
            scores[t.params["arm"]][t.params["lr"]].append(math.inf if value is None else value)
        return _choose(cfg, scores)

    def _net_trials(self, cfgs: Mapping[str, StudyConfig],
                    checkpoints: Sequence[str] | None) -> tuple[list[Any], dict[str, Path]]:
        """One `Trial` per (seed, arm), keyed by digests; paths (inputs, weights, checkpoints dir) as locations."""
        from bnlab.config import config_hash
        from bnlab.experiments.base import Trial

        trials, paths = [], {}
        for seed in range(cfgs["bn"].seeds):
            for i, arm in enumerate(ARMS):
                label = f"{arm}/seed={seed}"
                paths[label] = self.folder / "weights" / f"{arm}-seed{seed}.pt"
                run_dir = self.folder / "nets" / f"{arm}-seed{seed}-{config_hash(cfgs[arm])[:12]}"
                checkpoint = str(Path(checkpoints[i]).resolve()) if checkpoints else None
                key_digests = {**self.digests, "checkpoint": _file_sha256(checkpoint) if checkpoint else None}
                trials.append(Trial("study", label, "bnlab.workflows.study.runner:net_trial",
                                    {"arm": arm, "config": to_mapping(cfgs[arm]), "seed": seed,
                                     "digests": key_digests}, cost=2.0 if arm == "bn" else 1.0,
                                    locations={**self.specs, "checkpoint": checkpoint,
                                               "weights": str(paths[label].resolve()),
                                               "run_dir": str(run_dir.resolve())}))
        return trials, paths

    def nets(self, cfgs: Mapping[str, StudyConfig],
             checkpoints: Sequence[str] | None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        """Every net's record and weights; a net whose weights file is missing or damaged runs again."""
        trials, paths = self._net_trials(cfgs, checkpoints)
        records = self.run(trials, "nets")
        weights: dict[str, Any] = {}
        damaged = []
        for trial in trials:
            state = _read_weights(paths[trial.name], records[trial.key()]["result"].get(WEIGHTS_DIGEST))
            if state is None:
                self.say(f"study: weights file {paths[trial.name]} is missing or damaged; recomputing net "
                         f"{trial.name}")
                self.store.path(trial.key()).unlink(missing_ok=True)
                damaged.append(trial)
            else:
                weights[trial.name] = state
        if damaged:
            records.update(self.run(damaged, "nets"))
            for trial in damaged:
                state = _read_weights(paths[trial.name], records[trial.key()]["result"].get(WEIGHTS_DIGEST))
                if state is not None:
                    weights[trial.name] = state
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        for trial in trials:
            result = records[trial.key()]["result"]
            runs[trial.params["arm"]].append({k: v for k, v in result.items() if k != WEIGHTS_DIGEST})
        self.say(f"study: {len(trials)} nets done (trial records in {self.folder / 'trials'})")
        return runs, weights
