"""bnlab's command line: parses arguments and dispatches; all work lives in the library.

Every bad input (a `BnlabError`, or a usage error from typer/click) ends with a one-line `error: ...` on stderr
and exit code 2, with no traceback. Exit codes (docs/reliability.md):

* 0 success; 1 `bnlab check` found a failing check; 2 bad input; 130 interrupted (Ctrl-C; rerun to resume);
* 74 (EX_IOERR of sysexits.h) an operating-system error while reading or writing files — a full disk, a read-only
  file system, a permission — reported in one line, ``error: <what> (<path>): <reason>`` (`os_error_line`).
  Every file is written atomically, so nothing partial is left looking complete, and the same command, rerun after
  the fix, resumes from what was finished.

A reader that leaves early (``bnlab audit | head -1``) does not stop the work: once standard output is a broken
pipe, further output is dropped (`PipeGuard`), the command runs to its end, writes its files and exits with its
own status. Validation lives in the configs the commands build (`TrainConfig`,
`LandscapeConfig`, `HessianConfig`, ...), which raise those one-line errors. The library is imported inside each
command, not at the top: importing torch costs about a second, and `bnlab --help` must not pay it.
"""

from __future__ import annotations

import errno
import math
import os
import re
import sys
import textwrap
from typing import Any

import typer
from typer.core import TyperCommand

try:  # typer >= 0.25 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions

from bnlab.errors import BnlabError

_REGISTRY_MARK = re.compile(r"\{(?P<kind>models|norms|datasets)(?::(?P<filters>[a-z_,]+))?\}")


def registry_names(kind: str, filters: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The built-in names of `kind` (models | norms | datasets) in registry order, narrowed by `filters`: for
    models, option names the model must take (``activation``); for data sets, ``classification`` (no regression
    set) and ``packaged`` (none read from a --data-dir folder). Imports the registries, so torch."""
    if kind == "models":
        from bnlab.models import MODELS, model_options

        return tuple(n for n in MODELS if all(f in model_options(n) for f in filters))
    if kind == "norms":
        from bnlab.layers.factory import NORM_KINDS

        return NORM_KINDS
    from bnlab.data.registry import DATASETS, FOLDER_DATASETS, REGRESSION_DATASETS

    excluded = {"classification": REGRESSION_DATASETS, "packaged": FOLDER_DATASETS}
    return tuple(n for n in DATASETS if not any(n in excluded[f] for f in filters))


def fill_registry_names(text: str) -> str:
    """`text` with each ``{models}``, ``{norms}``, ``{datasets:classification,packaged}`` mark replaced by the
    registry's names, ``a | b | c``: the help can never list a model or data set the registry lacks."""
    def names(match: re.Match[str]) -> str:
        filters = tuple(match["filters"].split(",")) if match["filters"] else ()
        return " | ".join(registry_names(match["kind"], filters))

    return _REGISTRY_MARK.sub(names, text)


class RegistryHelpCommand(TyperCommand):
    """A command whose option help names the registries' entries, filled in only when the help is shown:
    importing the registries costs torch's import (about a second), which running a command pays anyway and
    `bnlab --help` must not."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            if isinstance(getattr(param, "help", None), str):
                param.help = fill_registry_names(param.help)
        super().format_help(ctx, formatter)


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="bnlab: test, by experiment, why Batch Normalization helps deep networks train.",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"bnlab {version('bnlab')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from bnlab.version import __version__

            typer.echo(f"bnlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="print bnlab's version and exit")) -> None:
    """bnlab: test, by experiment, why Batch Normalization helps deep networks train."""


def _use_threads(threads: int | None) -> None:
    """--threads: torch's CPU thread count for this process (None: torch's own choice)."""
    if threads is None:
        return
    if threads < 1:
        raise BnlabError(f"threads must be an integer >= 1, got {threads}")
    import torch  # heavy: imported only by the commands that compute (bnlab --help stays fast)

    torch.set_num_threads(threads)


# Commands are added below by area: check, train, audit, report, landscape, hessian, sweep.


# --- check (verification table of C01, C08, C09; engine in bnlab.checks) ----------------------------------------------
@app.command()
def check(seed: int = typer.Option(0, help="seed of the random inputs the checks use")) -> None:
    """Verify BN's mechanics, Jacobian and scale invariance against references; exit 1 if any check fails."""
    from bnlab.checks import format_table, run_checks

    rows = run_checks(seed)
    typer.echo(format_table(rows))
    if any(r.status == "fail" for r in rows):
        raise typer.Exit(1)


# --- train (one training run; engine in bnlab.train) ------------------------------------------------------------------
@app.command(cls=RegistryHelpCommand)
def train(
    model: str = typer.Option("mlp", help="{models}"),
    norm: str = typer.Option("none", help="{norms}"),
    dataset: str = typer.Option("mnist5k", help="{datasets}"),
    data_dir: str = typer.Option(None, "--data-dir", help="folder with local data (cifar10: cifar-10-batches-py)"),
    lr: float = typer.Option(0.1, help="learning rate (> 0)"),
    steps: int = typer.Option(1000, help="optimizer steps (> 0)"),
    batch_size: int = typer.Option(60, "--batch-size", help="examples per step (> 0; > 1 with BN)"),
    optimizer: str = typer.Option("sgd", help="sgd | adam"),
    momentum: float = typer.Option(0.0, help="SGD momentum in [0, 1)"),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="L2 weight decay (>= 0)"),
    init_scale: float = typer.Option(1.0, "--init-scale", help="multiplier on the Glorot init (> 0)"),
    seed: int = typer.Option(0, help="seed of init, data order, dropout and noise"),
    eval_every: int = typer.Option(100, "--eval-every", help="evaluate every k steps (0: start and end)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    out: str = typer.Option(None, help="run folder: config.json, checkpoint.pt, metrics.jsonl, result.json"),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="continue the run in --out from its checkpoint (--no-resume: refuse)"),
    model_opt: list[str] = typer.Option(None, "--model-opt", help="model option KEY=VALUE, e.g. config=narrow"),
    norm_opt: list[str] = typer.Option(None, "--norm-opt", help="norm option KEY=VALUE, e.g. affine=false"),
    dataset_opt: list[str] = typer.Option(None, "--dataset-opt", help="data option KEY=VALUE, e.g. train_size=1000"),
    tracker: list[str] = typer.Option(None, "--tracker", help="jsonl (default) | tensorboard | wandb; repeatable"),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice; 1 is fastest for small "
                                "nets on a busy machine)"),
    force: bool = typer.Option(False, "--force", help="write into OUT although it holds files this command did "
                               "not write (see docs/reliability.md)"),
) -> None:
    """Train one network and print a short summary; a diverged run is a result (exit 0)."""
    from bnlab.config import from_mapping
    from bnlab.folders import check_owner, claim_out_folder
    from bnlab.train import TrainConfig
    from bnlab.train import train as run_training
    from bnlab.train.options import parse_key_values

    config = from_mapping(TrainConfig, {
        "model": model, "norm": norm, "dataset": dataset, "data_dir": data_dir, "lr": lr, "steps": steps,
        "batch_size": batch_size, "optimizer": optimizer, "momentum": momentum, "weight_decay": weight_decay,
        "init_scale": init_scale, "seed": seed, "eval_every": eval_every, "device": device,
        "model_kwargs": parse_key_values(model_opt, "--model-opt"),
        "norm_kwargs": parse_key_values(norm_opt, "--norm-opt"),
        "dataset_kwargs": parse_key_values(dataset_opt, "--dataset-opt"),
        "trackers": tuple(tracker) if tracker else ("jsonl",),
    })
    _use_threads(threads)
    if out is not None:  # a run folder is marked once its config.json is there, which also marks it as a run's
        check_owner(out, "train", force=force)
    result = run_training(config, out_dir=out, resume=resume)
    if out is not None:
        claim_out_folder(out, "train", force=True)
    typer.echo(result.summary())


# --- audit, report (claims audit and its report) ----------------------------------------------------------------------
@app.command()
def audit(
    scale: str = typer.Option("default", help="smoke (≤ 60 s) | default (≤ 15 min on a laptop CPU) | paper (GPU)"),
    out: str = typer.Option("runs/audit", help="output folder: results.json, report.html, report.md, trials/"),
    seeds: int = typer.Option(None, help="seeds per setting: a fixed-n audit (default: the sequential plan, 8 seeds "
                              "then 12 where undecided at the default scale; see docs/protocol.md)"),
    first_seed: int = typer.Option(0, "--first-seed", help="run seeds N, N+1, ... (a replication on other seeds)"),
    replicate: bool = typer.Option(False, "--replicate", help="then run the same plan on seeds from 1000 into "
                                   "OUT/replication and report per claim whether the verdict replicated"),
    claims: str = typer.Option(None, help="comma-separated claim ids to run, e.g. C07,C13 (default: all)"),
    executor: str = typer.Option("process", help="process (one worker per core) | local (one process, for "
                                 "debugging) | ray"),
    workers: int = typer.Option(None, help="parallel trials (process/ray; default: all cores)"),
    address: str = typer.Option(None, help="Ray cluster address (ray executor only), e.g. auto"),
    data_dir: str = typer.Option(None, "--data-dir", help="folder with local data sets (e.g. CIFAR-10)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    force: bool = typer.Option(False, "--force", help="write into OUT although it holds files this command did "
                               "not write (see docs/reliability.md)"),
) -> None:
    """Run the claims audit: a measured verdict for every claim C01–C14, and one self-contained HTML report.

    On a terminal a progress bar shows the trials done, the elapsed time and an estimate of the time left; when
    the output is not a terminal (a log file, CI) one plain line is printed per finished trial."""
    from bnlab.experiments.audit import run_audit
    from bnlab.report.terminal import verdict_table
    from bnlab.sweeps.progress import ProgressBar

    bar = ProgressBar() if not quiet and sys.stderr.isatty() else None
    run = run_audit
    if replicate:
        from bnlab.experiments.replication import run_replicated_audit

        def run(*args, **kw):  # type: ignore[no-redef]
            return run_replicated_audit(*args, **kw)[0]
    result = run(scale, seeds, claims, out, executor, workers=workers, address=address, data_dir=data_dir,
                 first_seed=first_seed, log=None if quiet else typer.echo, progress=bar, force=force)
    typer.echo("")
    typer.echo(verdict_table(result.results))
    typer.echo(f"\nreport: {result.report_html}")


@app.command()
def report(out: str = typer.Argument(..., help="an audit folder holding results.json"),
           to: str = typer.Option(None, "--to", help="render into this folder instead (e.g. when OUT is read-only); "
                                  "OUT is only read")) -> None:
    """Re-render report.html, report.md and the figures of an audit folder from its results.json alone (files that
    would not change are not rewritten)."""
    from bnlab.report.build import write_report

    files = write_report(out, to=to)
    for error in files.figure_errors:
        typer.echo(f"figure not drawn: {error}", err=True)
    typer.echo(f"report: {files.html}")


# --- landscape (1-D / 2-D loss landscapes; engine in bnlab.workflows.landscape_command) -------------------------------
@app.command(cls=RegistryHelpCommand)
def landscape(
    out: str = typer.Option("runs/landscape", help="output folder: grids (.npz), figures, summary.json"),
    run: list[str] = typer.Option(None, "--run", help="a run folder of `bnlab train --out` to load instead of "
                                  "training; repeatable (e.g. a BN and a no-BN run)"),
    norms: str = typer.Option("bn,none", help="nets to train, one per norm, same settings (comma-separated)"),
    model: str = typer.Option("vgg", help="{models}"),
    model_opt: list[str] = typer.Option(None, "--model-opt", help="model option KEY=VALUE (default config=narrow "
                                        "for vgg)"),
    dataset: str = typer.Option("digits", help="{datasets:classification}"),
    data_dir: str = typer.Option(None, "--data-dir", help="folder with local data (cifar10)"),
    train_steps: int = typer.Option(300, "--train-steps", help="training steps per net"),
    lr: float = typer.Option(0.05, help="learning rate"),
    momentum: float = typer.Option(0.9, help="SGD momentum"),
    batch_size: int = typer.Option(64, "--batch-size", help="training batch size"),
    seed: int = typer.Option(0, help="seed of init, data order and directions"),
    samples: int = typer.Option(512, help="landscape data: this many training examples, one batch"),
    grid: int = typer.Option(51, help="2-D resolution: grid x grid points (odd)"),
    line: int = typer.Option(101, help="1-D resolution (odd)"),
    range_: float = typer.Option(1.0, "--range", help="coordinates span [-range, range] (filter-normalised units)"),
    directions: str = typer.Option("filter", help="direction normalisation: filter | layer | none"),
    one_d: str = typer.Option("zero", "--one-d", help="1-D parameters (biases, BN): zero | filter | include"),
    orthogonal: bool = typer.Option(False, "--orthogonal", help="orthogonalise the directions (after normalising)"),
    bn_mode: str = typer.Option("train,eval", "--bn-mode", help="train | eval | recalibrated (comma-separated)"),
    precision: str = typer.Option("fp32", help="fp32 | bf16 (bf16 reports its error against fp32 points)"),
    fmt: str = typer.Option("png", "--format", help="figure format: png | svg"),
    zscale: str = typer.Option("log", help="colour / z scale: log | linear"),
    html: bool = typer.Option(False, "--html", help="also an interactive 3-D page (needs the plotly extra)"),
    threads: int = typer.Option(None, help="CPU threads for torch"),
    force: bool = typer.Option(False, "--force", help="write into OUT although it holds files this command did "
                               "not write (see docs/reliability.md)"),
) -> None:
    """Train (or load) a BN / no-BN pair and write their 1-D and 2-D loss landscapes: grids and figures."""
    from bnlab.config import from_mapping
    from bnlab.train.options import parse_key_values
    from bnlab.workflows.landscape_command import LandscapeConfig, run_landscape

    model_kwargs = parse_key_values(model_opt, "--model-opt")
    if model == "vgg" and "config" not in model_kwargs:
        model_kwargs["config"] = "narrow"
    config = from_mapping(LandscapeConfig, {
        "model": model, "model_kwargs": model_kwargs, "dataset": dataset, "data_dir": data_dir,
        "norms": tuple(n.strip() for n in norms.split(",") if n.strip()), "runs": tuple(run or ()),
        "train_steps": train_steps, "lr": lr, "momentum": momentum, "batch_size": batch_size, "seed": seed,
        "samples": samples, "grid": grid, "line": line, "radius": range_, "directions": directions,
        "one_d": one_d, "orthogonal": orthogonal,
        "bn_modes": tuple(m.strip() for m in bn_mode.split(",") if m.strip()), "precision": precision,
        "fmt": fmt, "html": html, "zscale": zscale,
    })
    _use_threads(threads)
    summary = run_landscape(config, out, log=typer.echo, force=force)
    typer.echo(f"figures: {', '.join(summary['figures'])}")


# --- hessian (top eigenvalues, trace, spectral density; engine in bnlab.workflows.hessian_command) --------------------
@app.command(cls=RegistryHelpCommand)
def hessian(
    out: str = typer.Option("runs/hessian", help="output folder: hessian.json and density.<format>"),
    run: str = typer.Option(None, "--run", help="a run folder of `bnlab train --out` to load instead of building"),
    model: str = typer.Option("vgg", help="{models} (built-in model, without --run)"),
    model_opt: list[str] = typer.Option(None, "--model-opt", help="model option KEY=VALUE (default config=narrow "
                                        "for vgg)"),
    norm: str = typer.Option("bn", help="{norms} (built-in model)"),
    dataset: str = typer.Option("digits", help="{datasets}"),
    data_dir: str = typer.Option(None, "--data-dir", help="folder with local data (cifar10)"),
    train_steps: int = typer.Option(0, "--train-steps", help="train the built-in model this many SGD steps first "
                                    "(0: at initialisation)"),
    lr: float = typer.Option(0.05, help="learning rate for --train-steps"),
    batch_size: int = typer.Option(64, "--batch-size", help="training batch size for --train-steps"),
    seed: int = typer.Option(0, help="seed of init, data order and every estimator"),
    samples: int = typer.Option(256, help="Hessian of the loss on this many training examples (one batch)"),
    bn_mode: str = typer.Option("train,eval", "--bn-mode", help="train | eval (comma-separated)"),
    k: int = typer.Option(3, "-k", "--k", help="number of top eigenvalues"),
    tol: float = typer.Option(1e-4, help="Lanczos relative tolerance (on the residual, or see --criterion)"),
    criterion: str = typer.Option("residual", help="Lanczos stopping: residual (a bound, accurate eigenvectors) | "
                                  "eigenvalue (estimated eigenvalue error: fewer products)"),
    start: str = typer.Option("auto", help="Lanczos start: auto (seeded random + loss gradient) | random"),
    trace_rtol: float = typer.Option(0.02, "--trace-rtol", help="stop the trace at SE <= rtol x |trace|"),
    density_runs: int = typer.Option(4, "--density-runs", help="SLQ start vectors"),
    density_steps: int = typer.Option(60, "--density-steps", help="Lanczos steps per SLQ run"),
    fmt: str = typer.Option("png", "--format", help="figure format: png | svg"),
    threads: int = typer.Option(None, help="CPU threads for torch"),
    force: bool = typer.Option(False, "--force", help="write into OUT although it holds files this command did "
                               "not write (see docs/reliability.md)"),
) -> None:
    """Hessian top eigenvalues, trace ± SE and spectral density of a model's training loss, per BN mode."""
    from bnlab.config import from_mapping
    from bnlab.train.options import parse_key_values
    from bnlab.workflows.hessian_command import HessianConfig, run_hessian

    config = from_mapping(HessianConfig, {
        "run": run, "model": model, "model_kwargs": parse_key_values(model_opt, "--model-opt"), "norm": norm,
        "dataset": dataset, "data_dir": data_dir, "train_steps": train_steps, "lr": lr, "batch_size": batch_size,
        "seed": seed, "samples": samples, "bn_modes": tuple(m.strip() for m in bn_mode.split(",") if m.strip()),
        "k": k, "tol": tol, "criterion": criterion, "start": start, "trace_rtol": trace_rtol,
        "density_runs": density_runs, "density_steps": density_steps, "fmt": fmt,
    })
    _use_threads(threads)
    run_hessian(config, out, log=typer.echo, force=force)


# --- gradflow (gradient flow vs depth at initialisation, C11; engine in bnlab.probes.gradflow) ------------------------
@app.command(cls=RegistryHelpCommand)
def gradflow(
    depth: int = typer.Option(50, help="hidden blocks of the deep_mlp"),
    width: int = typer.Option(256, help="units per hidden block"),
    activation: str = typer.Option("relu", help="relu | tanh | linear | sigmoid"),
    residual: bool = typer.Option(False, "--residual", help="h + act(norm(W h)) blocks instead of plain ones"),
    norm: str = typer.Option("bn", help="normalisation after each hidden linear map: {norms}"),
    batch_size: int = typer.Option(128, "--batch-size", help="batch the gradient is taken on (BN batch statistics)"),
    dataset: str = typer.Option("mnist5k", help="{datasets:classification,packaged}"),
    probes: int = typer.Option(2, help="Hutchinson probes per layer Jacobian"),
    seed: int = typer.Option(0, help="seed of the init and the batch"),
) -> None:
    """Per-layer ‖∂L/∂W_l‖² and layer-Jacobian mean σ² of a deep_mlp at initialisation, and the fitted growth."""
    from bnlab.trials.gradient_flow import YANG_RELU, gradient_profile

    rec = gradient_profile(dataset=dataset, depth=depth, width=width, activation=activation, residual=residual,
                           norm=norm, batch_size=batch_size, jacobian_probes=probes, seed=seed)
    typer.echo(f"{'layer':<20} {'|dL/dW|^2':>12} {'|dL/dh|^2':>12} {'mean sv^2(J)':>12}")
    for name, w, h, j in zip(rec["layers"], rec["weight_grad_sq"], rec["input_grad_sq"], rec["layer_jac_msv"]):
        typer.echo(f"{name:<20} {w:12.4e} {h:12.4e} {j:12.4f}")
    typer.echo(f"growth factor per layer (towards the input): {rec['growth_factor']:.4f} "
               f"(Yang et al., plain ReLU BN: {YANG_RELU:.4f})")


# --- sharpness (the edge of stability, BN vs no BN; engine in bnlab.workflows.sharpness_command) ----------------------
@app.command(cls=RegistryHelpCommand)
def sharpness(
    out: str = typer.Option("runs/sharpness", help="output folder: sharpness.json and sharpness.<format>"),
    model: str = typer.Option("mlp", help="{models:activation} (built-in model, or FILE.py:FACTORY returning "
                              "your nn.Module; norm bn = as given, none = its BN layers replaced by identities)"),
    activation: str = typer.Option("tanh", help="activation of the built-in model"),
    dataset: str = typer.Option("digits", help="{datasets:classification,packaged}"),
    data: str = typer.Option(None, help="FILE.py:FACTORY returning your data (train_x, train_y, test_x, test_y) "
                             "or a (train, test) pair of Datasets / DataLoaders; replaces --dataset"),
    train_size: int = typer.Option(500, "--train-size", help="training examples (the full batch of GD)"),
    norm: str = typer.Option("none,bn", help="comma-separated norms to compare"),
    lr: str = typer.Option("0.02,0.03,0.04", help="comma-separated learning rates η (2/η is drawn for each)"),
    optimizer: str = typer.Option("gd", help="gd (full batch, Cohen et al.) | sgd (mini-batches of --batch-size)"),
    batch_size: int = typer.Option(64, "--batch-size", help="mini-batch size for --optimizer sgd"),
    sgd_batches: int = typer.Option(8, "--sgd-batches", help="mini-batches behind each batch-sharpness estimate "
                                    "(--optimizer sgd: E_B[g_Bᵀ H_B g_B / ‖g_B‖²], Andreyev & Beneventano 2024)"),
    loss: str = typer.Option("mse", help="mse (½‖f − onehot‖², Cohen et al.) | cross_entropy"),
    steps: int = typer.Option(3000, help="training steps per (norm, lr)"),
    every: int = typer.Option(100, help="measure λ_max every this many steps"),
    bn_mode: str = typer.Option("train,eval", "--bn-mode", help="BN modes of the Hessian (comma-separated)"),
    tol: float = typer.Option(1e-3, help="Lanczos relative residual tolerance"),
    seed: int = typer.Option(0, help="seed of the init and of every estimator"),
    fmt: str = typer.Option("png", "--format", help="figure format: png | svg"),
    threads: int = typer.Option(None, help="CPU threads for torch"),
    force: bool = typer.Option(False, "--force", help="write into OUT although it holds files this command did "
                               "not write (see docs/reliability.md)"),
) -> None:
    """Sharpness over training: λ_max(t) against 2/η for each (norm, lr), in each BN mode (the edge of stability);
    under --optimizer sgd also the batch sharpness, the quantity that settles at 2/η under SGD."""
    from bnlab.workflows.sharpness_command import SharpnessConfig, run_sharpness

    def floats(text: str, name: str) -> tuple[float, ...]:
        try:
            return tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise BnlabError(f"{name} must be comma-separated numbers, got {text!r}") from None

    user_model = model if ":" in model else None
    cfg = SharpnessConfig(model="mlp" if user_model else model, activation=activation, dataset=dataset,
                          train_size=train_size, model_file=user_model, data_file=data, sgd_batches=sgd_batches,
                          norms=tuple(n.strip() for n in norm.split(",") if n.strip()), lrs=floats(lr, "--lr"),
                          optimizer=optimizer, batch_size=batch_size, loss=loss, steps=steps, every=every,
                          bn_modes=tuple(m.strip() for m in bn_mode.split(",") if m.strip()), tol=tol, seed=seed,
                          fmt=fmt)
    _use_threads(threads)
    run_sharpness(cfg, out, log=typer.echo, force=force)
    typer.echo(f"sharpness: {out}/sharpness.json, {out}/sharpness.{fmt}")


# --- study (the model-agnostic claims on a user's own model; engine in bnlab.workflows.study) -------------------------
@app.command()
def study(
    model: str = typer.Option(..., help="FILE.py:FACTORY returning your nn.Module with BN (imported from that path)"),
    data: str = typer.Option(..., help="FILE.py:FACTORY returning (train_x, train_y, test_x, test_y) tensors, a "
                                       "(train, test) pair of torch Datasets, or of DataLoaders"),
    twin: str = typer.Option("remove-bn", help="remove-bn = identity (only the normalisation removed; fused "
                             "norm+act layers keep their activation) | groupnorm | layernorm | FILE.py:FACTORY"),
    match_init: bool = typer.Option(False, "--match-init", help="where the BN net's γ starts at 0 (timm ResNets), "
                                    "start the twin's branch off too"),
    loss: str = typer.Option("cross_entropy", help="cross_entropy | mse | FILE.py:FN (called as FN(output, y))"),
    out: str = typer.Option("runs/study", help="output folder: results.json, report.html, report.md, figures/"),
    seeds: int = typer.Option(3, help="seeds (each trains both nets with the same init stream and batches)"),
    steps: int = typer.Option(300, help="training steps per net"),
    lr: str = typer.Option("0.05", help="learning rate, or a grid (0.01,0.05,0.2): each net trains at the grid lr "
                           "with its lowest final training loss on a held-out seed"),
    optimizer: str = typer.Option("sgd", help="sgd (momentum 0.9) | adam"),
    batch_size: int = typer.Option(64, "--batch-size", help="training batch size"),
    probe_every: int = typer.Option(None, "--probe-every", help="probe every k steps (default steps / 5)"),
    target_acc: float = typer.Option(None, "--target-acc", help="C13: steps until the test accuracy reaches A"),
    samples: int = typer.Option(128, help="training examples the landscapes are measured on (the Hessian on the "
                                "first 64 of them)"),
    grid: int = typer.Option(11, help="landscape points per axis (a grid × grid plane, a (2 grid − 1)-point line)"),
    probes: str = typer.Option("all", help="what to measure: all, or some of gradient_flow, ics, along_gradient, "
                               "hessian, landscape, eval_modes (comma-separated; a claim whose probe is left out is "
                               "not measured)"),
    checkpoint: list[str] = typer.Option(None, help="BN.pt then TWIN.pt (state dicts, read weights_only): measure "
                                                    "these weights instead of training; give it twice"),
    executor: str = typer.Option("local", help="local | process | ray (each net a cached trial in OUT/trials)"),
    workers: int = typer.Option(None, help="parallel nets (process, ray)"),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N | auto"),
    threads: int = typer.Option(None, help="CPU threads for torch"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    force: bool = typer.Option(False, "--force", help="write into OUT although it holds files this command did "
                               "not write (see docs/reliability.md)"),
) -> None:
    """Measure C03, C05, C06, C11, C13 and C14 (and the Hessian) on your own model against its twin without BN.

    On a terminal a progress bar shows the nets done, the elapsed time and the time left; elsewhere one plain line
    is printed per finished net."""
    from bnlab.report.terminal import verdict_table
    from bnlab.sweeps.progress import ProgressBar
    from bnlab.sweeps.run import ProgressPrinter
    from bnlab.workflows.study import StudyConfig
    from bnlab.workflows.study import study as run_study
    from bnlab.workflows.study.config import PROBES

    lrs = _floats("--lr", lr)
    cfg = StudyConfig(steps=steps, lr=lrs[0], lr_grid=lrs if len(lrs) > 1 else (), optimizer=optimizer,
                      batch_size=batch_size, seeds=seeds,
                      probe_every=max(steps // 5, 1) if probe_every is None else probe_every,  # 0 is refused
                      eval_every=max(min(25, steps // 10), 1), target_acc=target_acc, samples=samples,
                      landscape_points=grid, device=device, match_init=match_init,
                      probes=PROBES if probes == "all" else tuple(p.strip() for p in probes.split(",") if p.strip()))
    _use_threads(threads)
    progress = None if quiet else ProgressBar() if sys.stderr.isatty() else ProgressPrinter(sys.stdout)
    result = run_study(model, data, twin=twin, loss=loss, config=cfg, checkpoints=checkpoint or None,
                       executor=executor, workers=workers, out=out, log=None if quiet else typer.echo,
                       progress=progress, force=force)
    typer.echo("\n".join(textwrap.fill(line, 118, subsequent_indent="  ") for line in result.results["header"]))
    typer.echo("\n" + verdict_table(result.results))
    notes: dict[str, list[str]] = {}  # each caveat once, with the claims it touches
    for c in result.results["claims"]:
        for note in c.get("caveats") or []:
            notes.setdefault(note, []).append(c["id"])
    for note, ids in notes.items():
        typer.echo(textwrap.fill(f"{', '.join(ids)}: {note}", 118, subsequent_indent="  "))
    typer.echo(f"study: {out}/report.html, {out}/report.md, {out}/results.json")


def _floats(option: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BnlabError(f"{option} must be a number or comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise BnlabError(f"{option} must be a finite number > 0 (or several, comma-separated), got {text!r}")
    return values


# --- sweep (sweep files; executors local | process | ray) -------------------------------------------------------------
@app.command()
def sweep(
    path: str = typer.Argument(..., help="a sweep file (TOML), e.g. sweeps/c07_learning_rate.toml"),
    executor: str = typer.Option("process", help="local | process | ray"),
    address: str = typer.Option(None, help="Ray cluster address, e.g. auto (ray only; default: a private local Ray)"),
    out: str = typer.Option(None, help="sweep folder (default: runs/sweeps/<name>); reruns resume it"),
    workers: int = typer.Option(None, help="parallel trials (process/ray; default: all cores)"),
    retries: int = typer.Option(1, help="extra attempts of a failing trial before it is recorded as failed"),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="GPUs each Ray task reserves (ray only)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    set_: list[str] = typer.Option(None, "--set", help="override a value of the file, KEY=VALUE (repeatable): "
                                   "base.steps=200, seeds=1, axes.lr=[0.1,1.0]"),
    force: bool = typer.Option(False, "--force", help="write into OUT although it holds files this command did "
                               "not write (see docs/reliability.md)"),
) -> None:
    """Run a sweep file: a base training config x axes x seeds, one trial each, results table at the end.

    On a terminal a progress bar shows the trials done, the elapsed time and an estimate of the time left; when
    the output is not a terminal (a log file, CI) one plain line is printed per finished trial."""
    from bnlab.sweeps.progress import ProgressBar
    from bnlab.sweeps.run import ProgressPrinter, format_table, run_sweep
    from bnlab.sweeps.spec import load_sweep

    spec = load_sweep(path, set_ or ())
    if quiet:
        progress = None
    elif sys.stderr.isatty():
        typer.echo(f"sweep {spec.name}: {len(spec)} trials, executor {executor}", err=True)
        progress = ProgressBar()
    else:
        progress = ProgressPrinter(header=f"sweep {spec.name}: {len(spec)} trials, executor {executor}")
    result = run_sweep(spec, out=out, executor=executor, workers=workers, address=address, retries=retries,
                       gpus_per_trial=gpus_per_trial, progress=progress, force=force)
    typer.echo(format_table(spec, result.rows))
    typer.echo(f"\nresults: {result.out / 'results.json'}")


# config fields a command fills from an option of another name (the study's `--grid` is StudyConfig.landscape_points)
_FIELD_OPTION = {"study": {"landscape_points": "grid"}}
_FIELD_MESSAGE = re.compile(r"^(?P<field>[a-z][a-z0-9_]*) (?P<rest>(must|should) .*)$", re.S)


def _as_option(message: str, argv: list[str]) -> str:
    """A config's "batch_size must be ..." as "--batch-size must be ..." when the command has that option: the
    configs name their fields (they are also built from Python and sweep files), the command line its options."""
    match = _FIELD_MESSAGE.match(message)
    command_name = next((a for a in argv if not a.startswith("-")), None)
    if match is None or command_name is None:
        return message
    command = getattr(typer.main.get_command(app), "commands", {}).get(command_name)
    if command is None:
        return message
    field = _FIELD_OPTION.get(command_name, {}).get(match["field"], match["field"])
    for param in command.params:
        if param.name in (field, f"{field}_") and param.param_type_name == "option":
            return f"{max(param.opts, key=len)} {match['rest']}"
    return message


EXIT_OS_ERROR = 74  # sysexits.h EX_IOERR
_OS_WHAT = {errno.ENOSPC: "no space left on the disk", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted",
            errno.ENOENT: "no such file or folder", errno.ENOTDIR: "not a folder", errno.EISDIR: "is a folder",
            errno.ELOOP: "too many symbolic links", errno.EIO: "input/output error"}


def os_error_line(exc: OSError) -> str:
    """``error: <what> (<path>): <reason>`` for an OSError, with what to do next."""
    what = _OS_WHAT.get(exc.errno or 0, "file system error")
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None) or "path unknown"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return (f"error: {what} ({paths}): {reason}; nothing partial was kept, fix it and rerun the same command to "
            "resume")


class PipeGuard:
    """Standard output that outlives its reader: the first broken-pipe error (the reader of ``| head`` has
    left) points the file descriptor at /dev/null and drops all further output, so the command goes on to its
    end instead of dying half way with a BrokenPipeError (and Python does not complain again at exit)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no real descriptor (a test's capture): dropping suffices
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors, exit codes as in the module docstring."""
    stdout, sys.stdout = sys.stdout, PipeGuard(sys.stdout)
    try:
        return _main(argv)
    finally:
        sys.stdout = stdout


def _main(argv: list[str] | None) -> int:
    try:
        # non-standalone typer *returns* the code of a typer.Exit (and 130 for a Ctrl-C it caught)
        code = app(args=argv, standalone_mode=False, prog_name="bnlab")
    except click_exceptions.NoArgsIsHelpError:
        return 0
    except click_exceptions.UsageError as exc:  # unknown command / option, bad option value
        typer.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except typer.Abort:  # typer >= 0.25 has no Abort/Exit in typer._click.exceptions; typer.* works everywhere
        typer.echo("error: interrupted", err=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except BnlabError as exc:
        typer.echo(f"error: {_as_option(str(exc), argv if argv is not None else sys.argv[1:])}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("error: interrupted; rerun the same command to resume", err=True)
        return 130
    except OSError as exc:  # after BnlabError: the disk, not the input (a full disk, a read-only mount, ...)
        typer.echo(os_error_line(exc), err=True)
        return EXIT_OS_ERROR
    if code == 130:
        typer.echo("error: interrupted; rerun the same command to resume", err=True)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
