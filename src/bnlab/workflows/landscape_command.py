"""`bnlab landscape`: train (or load) a BN / no-BN pair and write their landscapes as grids and figures.

For every net (one per norm in `norms`, trained with `bnlab.train` under identical settings, or loaded from run
folders written by `bnlab train --out`) and every BN mode: a 2-D plane (``plane_<net>_<mode>.npz``) and a 1-D line
(``line_<net>_<mode>.npz``) on the same fixed subset of the training set; for trained nets also the straight line
init -> final (``interp_<net>.npz``). Figures share axes, levels and colour scale across all panels:
``contours.<fmt>`` (filled), ``contour_lines.<fmt>``, ``surface.png`` (3-D), ``lines.<fmt>`` (1-D),
``interpolation.<fmt>``, ``surface.html`` (interactive, with the ``plotly`` extra), and ``summary.json`` (roughness,
centre loss, timings). Every grid resumes from its saved part when the command is rerun with the same settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnlab.atomic import write_json
from bnlab.config import check_choice, to_mapping
from bnlab.data import load_dataset
from bnlab.errors import BnlabError
from bnlab.landscape.directions import NORMS as DIRECTION_NORMS
from bnlab.landscape.directions import ONE_D_POLICIES, model_origin, random_directions
from bnlab.landscape.interpolate import interpolate
from bnlab.landscape.plane import random_line, random_plane
from bnlab.landscape.points import BN_MODES, PRECISIONS
from bnlab.landscape.roughness import roughness
from bnlab.landscape.surface import Curve, Surface
from bnlab.report.figures import save_figure
from bnlab.report.interactive import plotly_html
from bnlab.state import batchnorm_layers
from bnlab.train import TrainConfig, train
from bnlab.train.loop import build_for_config
from bnlab.train.run_folder import load_run
from bnlab.train.seeding import seed_everything

LABELS = {"bn": "BN", "torch_bn": "BN (torch)", "none": "no BN", "noisy_bn": "noisy BN", "l1": "l1 norm",
          "l2": "l2 norm", "linf": "linf norm", "layer": "LayerNorm", "group": "GroupNorm", "noise": "noise"}


@dataclass(frozen=True)
class LandscapeConfig:
    """Settings of one `bnlab landscape` run (validated at the edge with `bnlab.config.from_mapping`)."""

    model: str = "vgg"
    model_kwargs: dict[str, Any] = field(default_factory=lambda: {"config": "narrow"})
    dataset: str = "digits"
    data_dir: str | None = None
    norms: tuple[str, ...] = ("bn", "none")  # one net per norm, trained alike
    runs: tuple[str, ...] = ()  # run folders (bnlab train --out) to load instead of training
    train_steps: int = 300
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    seed: int = 0
    samples: int = 512  # landscape data: this prefix of the training set
    grid: int = 51  # 2-D resolution (odd)
    line: int = 101  # 1-D resolution (odd)
    radius: float = 1.0
    directions: str = "filter"  # filter | layer | none
    one_d: str = "zero"  # zero | filter | include
    orthogonal: bool = False
    bn_modes: tuple[str, ...] = ("train", "eval")
    precision: str = "fp32"
    fmt: str = "png"
    html: bool = False
    zscale: str = "log"

    def __post_init__(self) -> None:
        for mode in self.bn_modes:
            if mode not in BN_MODES:
                raise BnlabError(f"bn mode must be one of {', '.join(BN_MODES)}, got {mode!r}")
        if not self.bn_modes:
            raise BnlabError("give at least one bn mode")
        check_choice("directions", self.directions, DIRECTION_NORMS)
        check_choice("one_d", self.one_d, ONE_D_POLICIES)
        check_choice("precision", self.precision, PRECISIONS)
        if self.fmt not in ("png", "svg"):
            raise BnlabError(f"format must be png or svg, got {self.fmt!r}")
        if self.zscale not in ("linear", "log"):
            raise BnlabError(f"zscale must be linear or log, got {self.zscale!r}")
        for key in ("grid", "line"):
            value = getattr(self, key)
            if value < 3 or value % 2 == 0:
                raise BnlabError(f"{key} must be an odd number >= 3 (the grid must contain the centre), got {value}")
        for key in ("train_steps", "batch_size", "samples"):
            if getattr(self, key) < 1:
                raise BnlabError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.radius > 0:
            raise BnlabError(f"range must be > 0, got {self.radius}")
        if not self.runs and not self.norms:
            raise BnlabError("give at least one norm to train or one run folder to load")


@dataclass
class _Net:
    label: str
    model: nn.Module
    init: dict[str, torch.Tensor] | None  # parameters at initialisation (trained here only)


def _train_nets(cfg: LandscapeConfig, out: Path, dataset: Any, log: Any) -> list[_Net]:
    nets = []
    for norm in cfg.norms:
        tcfg = TrainConfig(model=cfg.model, norm=norm, dataset=cfg.dataset, data_dir=cfg.data_dir,
                           model_kwargs=dict(cfg.model_kwargs), steps=cfg.train_steps, batch_size=cfg.batch_size,
                           lr=cfg.lr, momentum=cfg.momentum, seed=cfg.seed, eval_every=0, progress=False,
                           device="cpu", trackers=("jsonl",))
        seed_everything(cfg.seed)
        model = build_for_config(tcfg, dataset)
        init = {k: v.detach().clone() for k, v in model.named_parameters()}
        result = train(tcfg, out_dir=out / f"train_{norm}", model=model, dataset=dataset)
        label = LABELS.get(norm, norm)
        log(f"trained {label}: {result.summary()}")
        nets.append(_Net(label, result.model, init))
    return nets


def _check_nets(cfg: LandscapeConfig, dataset: Any) -> None:
    """BnlabError for a bad norm, model or model option, before anything is written (builds each net once)."""
    for norm in cfg.norms:
        build_for_config(TrainConfig(model=cfg.model, norm=norm, model_kwargs=dict(cfg.model_kwargs), lr=cfg.lr,
                                     momentum=cfg.momentum, batch_size=cfg.batch_size, steps=cfg.train_steps),
                         dataset)


def _load_nets(cfg: LandscapeConfig, dataset: Any) -> list[_Net]:
    nets = []
    for folder in cfg.runs:
        run = load_run(folder, dataset)
        base = LABELS.get(run.config.norm, run.config.norm)
        label = base if all(n.label != base for n in nets) else f"{base} ({Path(folder).name})"
        nets.append(_Net(label, run.model, None))
    return nets


def _spec(kind: str, title: str, data: dict[str, Any]) -> dict[str, Any]:
    """A figure spec of the report's one plotting stack (`bnlab.report.figures`)."""
    return {"id": kind, "kind": kind, "title": title, "caption": "", "data": data}


def _surface_panel(surface: Surface, title: str) -> dict[str, Any]:
    """A contour / surface panel of a `Surface`'s loss grid, with its PCA path when it has one."""
    panel: dict[str, Any] = {"title": title, "x": surface.x.tolist(), "y": surface.y.tolist(),
                             "z": surface.loss.tolist()}
    if getattr(surface, "path", None) is not None:
        panel["path"] = [[float(a), float(b)] for a, b in surface.path]
    return panel


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def run_landscape(cfg: LandscapeConfig, out: str | Path, log: Any = print) -> dict[str, Any]:
    """Train or load the nets, evaluate and save every landscape, draw the figures; returns the summary."""
    out = Path(out)
    # every input is checked before the output folder is touched: bad input writes nothing
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir)
    if dataset.task != "classification":
        raise BnlabError(f"landscape needs a classification data set, {cfg.dataset} is {dataset.task}")
    loaded = _load_nets(cfg, dataset) if cfg.runs else None
    if loaded is None:
        _check_nets(cfg, dataset)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # the folder, or a folder above it, is a file
        raise BnlabError(f"output folder '{out}' is a file or lies inside a file") from None
    except OSError as exc:  # read-only or special file system
        raise BnlabError(f"output folder '{out}' cannot be created: {exc.strerror or exc}") from None
    write_json(out / "landscape_config.json", to_mapping(cfg))
    nets = loaded if loaded is not None else _train_nets(cfg, out, dataset, log)
    batch = (dataset.train_x[: cfg.samples], dataset.train_y[: cfg.samples])
    summary: dict[str, Any] = {"config": to_mapping(cfg), "nets": {}}
    drawn = _Landscapes({}, {}, {})
    for net in nets:
        summary["nets"][net.label] = _measure_net(cfg, net, batch, out, drawn, log)
    summary["figures"] = [str(p) for p in _draw(cfg, drawn, out)]
    write_json(out / "summary.json", summary)
    return summary


@dataclass
class _Landscapes:
    """Every net's landscapes, as the figures group them."""

    planes: dict[tuple[str, str], Surface]  # (net, BN mode) -> 2-D plane
    lines: dict[tuple[str, str], Curve]  # (net, BN mode) -> 1-D line
    interps: dict[str, Curve]  # net -> init-to-final interpolation


def _measure_net(cfg: LandscapeConfig, net: _Net, batch: tuple[torch.Tensor, torch.Tensor], out: Path,
                 drawn: _Landscapes, log: Any) -> dict[str, Any]:
    """One net's plane and line in each BN mode (and its interpolation when trained here), saved under `out` and
    added to `drawn`; returns the net's summary entry (roughness, centre loss, bf16 error, seconds per mode)."""
    loss_fn = nn.CrossEntropyLoss()
    dirs = random_directions(model_origin(net.model), 3, cfg.seed, norm=cfg.directions, one_d=cfg.one_d,
                             orthogonal=cfg.orthogonal)
    info = {"net": net.label, "model": cfg.model, "dataset": cfg.dataset, "samples": cfg.samples}
    entry: dict[str, Any] = {}
    # without BN layers every BN mode is the same function (other modules are always in eval mode)
    modes = cfg.bn_modes if batchnorm_layers(net.model) else cfg.bn_modes[:1]
    for mode in modes:
        t = time.perf_counter()
        stem = f"{_slug(net.label)}_{mode}"
        plane = random_plane(net.model, loss_fn, batch, radius=cfg.radius, steps=cfg.grid, seed=cfg.seed,
                             norm=cfg.directions, one_d=cfg.one_d, orthogonal=cfg.orthogonal, bn_mode=mode,
                             directions=dirs[:2], out=out / f"plane_{stem}.npz", info=info,
                             precision=cfg.precision)
        line = random_line(net.model, loss_fn, batch, radius=cfg.radius, steps=cfg.line, seed=cfg.seed,
                           norm=cfg.directions, one_d=cfg.one_d, bn_mode=mode, direction=dirs[2], info=info,
                           precision=cfg.precision)
        line.save(out / f"line_{stem}.npz")
        drawn.planes[(net.label, mode)], drawn.lines[(net.label, mode)] = plane, line
        entry[mode] = {"roughness_2d": roughness(plane.loss, plane.x, plane.y),
                       "roughness_1d": roughness(line.loss, line.t),
                       "centre_loss": float(plane.loss[cfg.grid // 2, cfg.grid // 2]),
                       "bf16_error": plane.bf16_error, "seconds": time.perf_counter() - t}
        log(f"{net.label}, BN mode {mode}: {cfg.grid}x{cfg.grid} plane + {cfg.line}-point line in "
            f"{entry[mode]['seconds']:.1f} s, roughness {entry[mode]['roughness_2d']:.4g}")
    if net.init is not None:
        mode = "recalibrated" if "recalibrated" in cfg.bn_modes else cfg.bn_modes[0]
        final = {k: v.detach().clone() for k, v in net.model.named_parameters()}
        drawn.interps[net.label] = interpolate(net.model, loss_fn, batch, net.init, final, bn_mode=mode,
                                               steps=31, info={"net": net.label, "from": "init", "to": "final"})
        drawn.interps[net.label].save(out / f"interp_{_slug(net.label)}.npz")
    return entry


def _draw(cfg: LandscapeConfig, drawn: _Landscapes, out: Path) -> list[Path]:
    """The contour, surface, 1-D and interpolation figures (and the interactive page with cfg.html)."""
    planes, lines, interps = drawn.planes, drawn.lines, drawn.interps
    panels = []
    for (label, mode), plane in planes.items():
        with_bn = sum(1 for key in planes if key[0] == label) > 1 or len(cfg.bn_modes) == 1
        panels.append(_surface_panel(plane, f"{label}, {mode} mode" if with_bn else label))
    data = {"panels": panels, "levels": 30, "zscale": cfg.zscale, "zlabel": "loss"}
    title = "2-D loss landscapes"
    figures = [save_figure(_spec("contours", title, data), out / f"contours.{cfg.fmt}"),
               save_figure(_spec("contours", title, {**data, "style": "lines"}), out / f"contour_lines.{cfg.fmt}"),
               save_figure(_spec("surface", title, data), out / "surface.png")]

    def single_mode(label: str) -> bool:  # a net without BN: its one curve goes in every panel
        return sum(1 for key in lines if key[0] == label) == 1

    curve_panels = [{"title": f"BN {mode} mode", "xlabel": "filter-normalised step", "ylabel": "loss",
                     "series": [{"label": label, "x": c.t.tolist(), "y": c.loss.tolist()}
                                for (label, m), c in lines.items() if m == mode or single_mode(label)]}
                    for mode in cfg.bn_modes]
    figures.append(save_figure(_spec("lines", "1-D loss landscapes",
                                     {"panels": curve_panels, "yscale": cfg.zscale, "sharey": True}),
                               out / f"lines.{cfg.fmt}"))
    if interps:
        series = [{"label": label, "x": c.t.tolist(), "y": c.loss.tolist()} for label, c in interps.items()]
        mode = next(iter(interps.values())).bn_mode
        figures.append(save_figure(_spec("lines", "Linear interpolation",
                                         {"panels": [{"title": f"init (t=0) -> final (t=1), BN {mode} mode",
                                                      "xlabel": "t", "ylabel": "loss", "series": series}],
                                          "yscale": cfg.zscale}), out / f"interpolation.{cfg.fmt}"))
    if cfg.html:
        figures.append(plotly_html({"panels": panels}, out / "surface.html", title=title))
    return figures
