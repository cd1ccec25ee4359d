"""The training engine: one readable, step-based loop.

    for step in range(start, steps):
        [checkpoint]  [evaluate]           -- at their schedules, on the weights after `step` updates
        x, y = next(batches)
        [probes(ctx)]                      -- before this step's forward pass and update (bnlab.train.probe)
        loss = loss_fn(model(x), y); loss.backward(); optimizer.step()
        record loss; stop if diverged

Cost: nothing beyond a bare PyTorch loop per step except appending the loss; on CUDA the losses are read back
every `sync_every` steps (one sync), on CPU every step (no sync cost). Divergence -- a non-finite train loss or
one above `diverge_factor` x the first step's loss -- ends the run as a result: `diverged_at_step` is the first
such step and the curves stop there (with sync_every > 1 the model may have taken a few more steps).

Reproducibility: `seed_everything(seed)` before building the model; the data order has its own generator seeded
with `seed`; a run with a run folder checkpoints (model, optimizer, RNG streams, data position, history) and
picks up from the last checkpoint when started again with the same config, giving the same numbers as an
uninterrupted run.

Side effects with `out_dir`: writes config.json, checkpoint.pt, metrics.jsonl (trackers) and result.json there.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bnlab.atomic import write_json
from bnlab.config import to_mapping
from bnlab.data import load_dataset
from bnlab.data.batches import BatchIterator
from bnlab.data.dataset import Dataset, check_finite
from bnlab.errors import BnlabError
from bnlab.models import build_model
from bnlab.tracking import make_trackers
from bnlab.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from bnlab.train.config import TrainConfig
from bnlab.train.metrics import loss_and_accuracy
from bnlab.train.optim import make_optimizer
from bnlab.train.probe import Probe, ProbeContext
from bnlab.train.result import TrainResult, empty_history
from bnlab.train.seeding import rng_state, seed_everything, set_rng_state

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_run_dir(run_dir: Path) -> None:
    """BnlabError when the run folder is a file or lies below a file (checked before anything is written)."""
    probe = run_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe == run_dir and run_dir.exists() and not run_dir.is_dir():
        raise BnlabError(f"run folder '{run_dir}' is a file, not a folder")
    if probe.exists() and not probe.is_dir():
        raise BnlabError(f"run folder '{run_dir}' is inside '{probe}', which is a file")
    try:  # root passes os.access everywhere: try a real (anonymous, at once deleted) file instead
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise BnlabError(f"run folder '{run_dir}' is not writable ({probe}: {exc.strerror or exc})") from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BnlabError(f"device '{name}' requested but CUDA is not available")
    return device


def sum_squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ_i ‖f(x_i) − y_i‖² over the batch (Santurkar et al. 2018, deep linear net: ‖W_L⋯W_1 x − A x‖² summed)."""
    return F.mse_loss(output, target, reduction="sum")


def default_loss(config: TrainConfig, dataset: Dataset) -> LossFn:
    kind = config.loss if config.loss != "auto" else (
        "cross_entropy" if dataset.task == "classification" else "mse")
    return {"cross_entropy": F.cross_entropy, "mse": F.mse_loss, "sum_squared": sum_squared_error}[kind]


def load_for_config(config: TrainConfig) -> Dataset:
    return load_dataset(config.dataset, data_dir=config.data_dir, seed=config.data_seed, **config.dataset_kwargs)


def build_for_config(config: TrainConfig, dataset: Dataset) -> nn.Module:
    return build_model(config.model, norm=config.norm, init_scale=config.init_scale, in_shape=dataset.in_shape,
                       num_classes=dataset.out_features, norm_kwargs=dict(config.norm_kwargs),
                       **config.model_kwargs)


class _Run:
    """The mutable state of one run; `train` below drives it."""

    def __init__(self, config: TrainConfig, dataset: Dataset, model: nn.Module, loss_fn: LossFn,
                 probes: Sequence[Probe], device: torch.device, out_dir: Path | None) -> None:
        self.config, self.dataset, self.model, self.loss_fn = config, dataset, model, loss_fn
        self.probes = list(probes)
        self.device, self.out_dir = device, out_dir
        self.optimizer = make_optimizer(model, config)
        self.batches = BatchIterator(dataset.train_x, dataset.train_y, config.batch_size,
                                     torch.Generator().manual_seed(config.seed))
        self.history = empty_history()
        self.probe_records: dict[str, list[dict[str, Any]]] = {p.name: [] for p in self.probes}
        self.initial_loss: float | None = None
        self.diverged_at: int | None = None
        self.pending: list[torch.Tensor] = []
        self.pending_first = 0  # step of pending[0]
        n_eval = min(config.eval_train_size, len(dataset.train_x))
        self.train_eval = (dataset.train_x[:n_eval], dataset.train_y[:n_eval])
        self.trackers: list = []

    # ------------------------------------------------------------------ bookkeeping
    def flush(self) -> bool:
        """Read pending losses back, record them, and return True when the run has diverged."""
        if not self.pending:
            return self.diverged_at is not None
        values = [self.pending[0].item()] if len(self.pending) == 1 else torch.stack(self.pending).tolist()
        self.pending.clear()
        step = self.pending_first
        if self.initial_loss is None:
            self.initial_loss = values[0]
        limit = self.config.diverge_factor * abs(self.initial_loss)
        steps, losses = self.history["step"], self.history["train_loss"]
        for value in values:
            steps.append(step)
            losses.append(value)
            if not math.isfinite(value) or value > limit:
                self.diverged_at = step
                return True
            step += 1
        return False

    def evaluate(self, step: int) -> None:
        classification = self.dataset.task == "classification"
        bs = self.config.eval_batch_size
        test_loss, test_acc = loss_and_accuracy(self.model, self.dataset.test_x, self.dataset.test_y, self.loss_fn, bs,
                                       classification)
        train_loss, train_acc = loss_and_accuracy(self.model, *self.train_eval, self.loss_fn, bs, classification)
        record = {"eval_step": step, "test_loss": test_loss, "test_acc": test_acc, "train_acc": train_acc,
                  "train_eval_loss": train_loss}
        for key, value in record.items():
            self.history[key].append(value)
        recent = self.history["train_loss"][-max(self.config.eval_every, 1):]
        self.log("eval", step, {**{k: v for k, v in record.items() if k != "eval_step"},
                                "train_loss": sum(recent) / len(recent) if recent else math.nan})

    def call_probes(self, step: int, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        due = [p for p in self.probes if step % p.every == 0]
        if not due:
            return
        saved = rng_state()
        ctx = ProbeContext(step, self.model, self.loss_fn, batch, self.optimizer, self.config, self.dataset,
                           self.device)
        for probe in due:
            out = probe(ctx)
            if not isinstance(out, dict):
                raise TypeError(f"probe {probe.name!r} returned {type(out).__name__}, expected dict")
            record = {"step": step, **out}
            self.probe_records[probe.name].append(record)
            self.log(f"probe/{probe.name}", step, out)
        set_rng_state(saved)
        self.model.train()

    def log(self, kind: str, step: int, metrics: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log(kind, step, metrics)

    def checkpoint(self, step: int) -> None:
        if self.out_dir is None:
            return
        save_checkpoint(self.out_dir / CHECKPOINT_NAME, config=self.config, step=step, model=self.model,
                        optimizer=self.optimizer, rng=rng_state(), batches=self.batches.state_dict(),
                        initial_loss=self.initial_loss, history=self.history, probes=self.probe_records)

    def restore(self, state: dict[str, Any]) -> int:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:  # a user's model that is not the one the checkpoint was written from
            detail = " ".join(line.strip() for line in str(exc).splitlines()[1:2])
            raise BnlabError(f"the checkpoint in '{self.out_dir}' does not fit the model: {detail}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
        set_rng_state(state["rng"])
        self.initial_loss = state["initial_loss"]
        self.history = {key: list(state["history"].get(key, [])) for key in self.history}
        for name in self.probe_records:
            self.probe_records[name] = list(state["probes"].get(name, []))
        return int(state["step"])

    # ------------------------------------------------------------------ the loop
    def run(self, start: int) -> None:
        cfg = self.config
        model, optimizer, loss_fn, batches = self.model, self.optimizer, self.loss_fn, self.batches
        eval_every = cfg.eval_every or cfg.steps + 1
        ckpt_every = cfg.checkpoint_every or eval_every
        sync_every = cfg.sync_every or (1 if self.device.type == "cpu" else 50)
        probes = self.probes
        model.train()

        bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and sys.stderr.isatty()),
                   desc=f"{cfg.model}/{cfg.norm}", leave=False)
        try:
            for step in range(start, cfg.steps):
                checkpoint_due = step % ckpt_every == 0 and step > start
                if checkpoint_due or step % eval_every == 0:
                    bar.update(len(self.pending))
                    if self.flush():  # the history must be complete before it is saved or averaged
                        break
                    if checkpoint_due:
                        self.checkpoint(step)
                    if step % eval_every == 0:
                        self.evaluate(step)
                x, y = next(batches)
                if probes:
                    self.call_probes(step, (x, y))
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                if not self.pending:
                    self.pending_first = step
                self.pending.append(loss.detach())
                if len(self.pending) >= sync_every:
                    bar.update(len(self.pending))
                    if self.flush():
                        break
            else:
                bar.update(len(self.pending))
                self.flush()
        finally:
            bar.close()


def _final(run: _Run, steps_done: int, seconds: float, trained_steps: int) -> dict[str, Any]:
    h = run.history
    final: dict[str, Any] = {"steps_done": steps_done, "diverged": run.diverged_at is not None,
                             "seconds": seconds, "steps_per_s": trained_steps / seconds if seconds > 0 else math.nan}
    if h["eval_step"]:
        final.update(eval_step=h["eval_step"][-1], test_loss=h["test_loss"][-1], test_acc=h["test_acc"][-1],
                     train_acc=h["train_acc"][-1], train_eval_loss=h["train_eval_loss"][-1])
    final["train_loss"] = h["train_loss"][-1] if h["train_loss"] else math.nan
    return final


def train(config: TrainConfig, *, out_dir: str | Path | None = None, probes: Sequence[Probe] = (),
          model: nn.Module | None = None, dataset: Dataset | None = None, loss_fn: LossFn | None = None,
          resume: bool = True) -> TrainResult:
    """Train per `config`; see the module docstring. A user's `model` / `dataset` / `loss_fn` replace the ones
    named in the config. With `out_dir`, an existing checkpoint there is resumed when `resume` (the default) and
    refused otherwise, so nothing is overwritten."""
    if not isinstance(config, TrainConfig):
        raise BnlabError(f"train() needs a TrainConfig, got {type(config).__name__}")
    names = [p.name for p in probes]
    if len(set(names)) != len(names):
        raise BnlabError(f"probe names must be unique, got {names}")
    for probe in probes:
        if not isinstance(probe.every, int) or probe.every < 1:
            raise BnlabError(f"probe {probe.name!r}: every must be an integer >= 1, got {probe.every!r}")
    device = resolve_device(config.device)
    run_dir = Path(out_dir) if out_dir is not None else None
    if run_dir is not None:
        _check_run_dir(run_dir)
    checkpoint_path = run_dir / CHECKPOINT_NAME if run_dir is not None else None
    if checkpoint_path is not None and checkpoint_path.exists() and not resume:
        raise BnlabError(f"run folder '{run_dir}' already holds a run; resume it or choose another folder")

    seed_everything(config.seed)
    if dataset is not None:  # the loaders check their own data; a user's Dataset is checked here
        check_finite(dataset.name, train_x=dataset.train_x, train_y=dataset.train_y, test_x=dataset.test_x,
                     test_y=dataset.test_y)
    data = (dataset if dataset is not None else load_for_config(config)).to(device)
    if config.batch_size > len(data.train_x):
        raise BnlabError(f"batch_size {config.batch_size} is larger than the training set ({len(data.train_x)})")
    net = (model if model is not None else build_for_config(config, data)).to(device)
    run = _Run(config, data, net, loss_fn or default_loss(config, data), probes, device, run_dir)

    start = 0
    if checkpoint_path is not None and checkpoint_path.exists():
        start = run.restore(load_checkpoint(checkpoint_path, config, map_location=device))
    if run_dir is not None:
        write_json(run_dir / "config.json", to_mapping(config))
        run.trackers = make_trackers(config.trackers, run_dir, to_mapping(config))
        for tracker in run.trackers:
            tracker.truncate(start)

    t0 = time.perf_counter()
    try:
        run.run(start)
        steps_done = run.diverged_at + 1 if run.diverged_at is not None else config.steps
        if run.diverged_at is None:
            # saved before the final evaluation, like every periodic checkpoint, so a rerun re-evaluates and
            # re-logs it; a diverged run keeps its last good checkpoint (a rerun diverges again, identically)
            run.checkpoint(steps_done)
            if not run.history["eval_step"] or run.history["eval_step"][-1] != steps_done:
                run.evaluate(steps_done)
        seconds = time.perf_counter() - t0
        final = _final(run, steps_done, seconds, max(steps_done - start, 0))
        if run.diverged_at is not None:
            final["diverged_at_step"] = run.diverged_at
        run.log("summary", steps_done, final)
    finally:
        for tracker in run.trackers:
            tracker.close()
    result = TrainResult(config, run.history, run.probe_records, run.diverged_at, net, final, run_dir)
    if run_dir is not None:
        write_json(run_dir / "result.json", result.to_dict())
    return result
