"""Sweep files: a base training config, axes to take the product of, and seeds -- plain data in TOML.

    name = "c07-learning-rate"          # also the default output folder: runs/sweeps/<name>
    claim = "C07"                       # optional: the claim of claims.md it serves ("sweep" by default)
    description = "..."
    seeds = 3                           # replicates 0, 1, 2 -- or an explicit list [0, 7, 9]
    curve_points = 100                  # curves are subsampled to at most this many points
    target_acc = 0.9                    # optional: also report the first evaluation step reaching it
    best_over = "lr"                    # optional: per setting of the other axes, report the best value of
                                        # this axis (fewest steps to target_acc, else highest test accuracy)

    [base]                              # a bnlab.train.TrainConfig: every key optional, unknown keys rejected
    model = "mlp"
    dataset = "mnist5k"
    steps = 2000

    [axes]                              # one trial per element of the product, per seed
    norm = ["none", "bn"]
    lr = [0.01, 0.1, 1.0]
    "model_kwargs.hidden" = [[100], [100, 100]]   # a dotted key sets one entry of a dict field (checked by name
                                        # against the model's options: `bnlab.models.model_options`)

Validation (`load_sweep` / `parse_sweep`) happens before anything runs: unknown keys and values of the wrong type
raise `BnlabError` naming the key (``sweep.base.lr``, ``sweep.axes.norm``), and so does every config of the
product that `TrainConfig` rejects. Expansion (`expand`) gives one `Trial` per (axes point, seed):

* its parameters are the complete `TrainConfig` as plain data, so `Trial.key()` -- the config hash -- is a stable
  id: the same config in two sweep files is the same trial and runs once;
* the seed of replicate i is ``seeds[i]``, the same for every point of the axes (common random numbers: BN and
  no-BN runs of seed 0 start from the same data order, so their difference is paired, not confounded);
* ``progress`` is switched off (workers have no terminal) and ``device`` stays as written: ``"auto"`` picks CUDA
  where the worker that runs the trial has a GPU.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnlab.config import config_hash, from_mapping, to_mapping
from bnlab.errors import BnlabError
from bnlab.layers.factory import make_norm
from bnlab.sweeps.trial import Trial
from bnlab.train.config import TrainConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TRIAL_FN = "bnlab.trials.train_trial:train_trial"
# the most trials one sweep may plan. Planning (validate, expand, key every trial) runs at ~8,000 trials a second
# on one core (every point is built and validated once, its seeds are copies; the trial key is one JSON encoding
# and sha256 of the full config), so the cap keeps it under ~15 s, and a typo such as 1000 values on three axes
# is refused at once, with a message, instead of planning in silence for an hour
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class SweepFile:
    """The top level of a sweep file, as read (before the base and axes are checked against TrainConfig)."""

    name: str
    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, Any] = field(default_factory=dict)
    seeds: int | tuple[int, ...] = 1
    claim: str = "sweep"
    description: str = ""
    curve_points: int = 200
    target_acc: float | None = None
    best_over: str | None = None


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: `base` and `axes` hold plain data that builds a valid TrainConfig at every point."""

    name: str
    claim: str
    description: str
    base: Mapping[str, Any]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]  # (key, values) in file order
    seeds: tuple[int, ...]
    curve_points: int
    target_acc: float | None
    best_over: str | None = None

    def points(self) -> list[dict[str, Any]]:
        """Every point of the axes product, as {axis key: value}, in file order (last axis fastest)."""
        keys = [k for k, _ in self.axes]
        return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in self.axes))]

    def __len__(self) -> int:
        return math.prod(len(v) for _, v in self.axes) * len(self.seeds)


def _set(config: dict[str, Any], key: str, value: Any, where: str) -> None:
    """config[key] = value, where a dotted key 'field.entry' sets one entry of a dict-valued field."""
    head, dot, entry = key.partition(".")
    if not dot:
        config[key] = value
        return
    inner = config.get(head, {})
    if not isinstance(inner, Mapping) or not entry or "." in entry:
        raise BnlabError(f"config key '{where}{key}': a dotted key must name one entry of a table field")
    config[head] = {**inner, entry: value}


def _build(base: Mapping[str, Any], point: Mapping[str, Any], where: str) -> Any:
    cls = TrainConfig
    config = dict(base)
    for key, value in point.items():
        _set(config, key, value, where)
    try:
        built = from_mapping(cls, config, where=where)
    except BnlabError as exc:
        raise BnlabError(str(exc) if "config key" in str(exc) else f"{where.rstrip('.')}: {exc}") from None
    return built


def parse_sweep(data: Mapping[str, Any], *, name: str | None = None) -> Sweep:
    """Validate plain data (a parsed TOML document) into a `Sweep`; `name` is the default for a missing name."""
    if not isinstance(data, Mapping):
        raise BnlabError(f"a sweep must be a table of settings, got {type(data).__name__}")
    if "name" not in data and name is not None:
        data = {**data, "name": name}
    raw = from_mapping(SweepFile, data, where="sweep.")
    if not raw.name or not all(c.isalnum() or c in "-_." for c in raw.name) or raw.name.startswith("."):
        raise BnlabError(f"sweep.name must be letters, digits, '-', '_' or '.', got {raw.name!r}")
    if isinstance(raw.seeds, int):
        if raw.seeds < 1:
            raise BnlabError(f"sweep.seeds must be >= 1, got {raw.seeds}")
        seeds = tuple(range(raw.seeds))
    else:
        seeds = tuple(raw.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
            raise BnlabError(f"sweep.seeds must be distinct integers >= 0, got {list(raw.seeds)}")
    if raw.curve_points < 2:
        raise BnlabError(f"sweep.curve_points must be >= 2, got {raw.curve_points}")
    if raw.target_acc is not None and not 0 < raw.target_acc <= 1:
        raise BnlabError(f"sweep.target_acc must be in (0, 1], got {raw.target_acc}")
    if "seed" in raw.base:
        raise BnlabError("sweep.base.seed: set the seeds with the top-level 'seeds' key")

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    _check_norm_options(_build(raw.base, {}, "sweep.base."), "sweep.base.")  # the base alone must be valid
    axes = []
    for key, values in raw.axes.items():
        where = f"sweep.axes.{key}"
        if key.partition(".")[0] not in fields:
            raise BnlabError(f"unknown config key '{where}' (known keys: {', '.join(sorted(fields))})")
        if key == "seed":
            raise BnlabError(f"{where}: set the seeds with the top-level 'seeds' key")
        if not isinstance(values, list) or not values:
            raise BnlabError(f"config key '{where}' must be a non-empty list of values, got {values!r}")
        if len({repr(v) for v in values}) != len(values):
            raise BnlabError(f"config key '{where}' lists a value twice: {values!r}")
        for value in values:  # each value alone, on the base: names the axis when it is the culprit
            _check_norm_options(_build(raw.base, {key: value}, "sweep.axes."), f"{where}: ")
        axes.append((key, tuple(values)))
    planned = math.prod(len(v) for _, v in axes) * len(seeds)
    if planned > MAX_TRIALS:
        raise BnlabError(f"sweep {raw.name!r} plans {planned:,} trials, more than the {MAX_TRIALS:,} one sweep may "
                         "hold; split it into several sweep files (or fewer axis values / seeds)")
    if raw.best_over is not None and raw.best_over not in raw.axes:
        raise BnlabError(f"sweep.best_over must name an axis ({', '.join(raw.axes) or 'none given'}), "
                         f"got {raw.best_over!r}")
    sweep = Sweep(raw.name, raw.claim, raw.description, dict(raw.base), tuple(axes), seeds, raw.curve_points,
                  raw.target_acc, raw.best_over)
    norms: set[str] = set()
    for point in sweep.points():  # combinations can be invalid too (batch_size 1 with bn)
        config = _build(sweep.base, point, "sweep.axes.")
        norm = f"{config.norm}|{config_hash(config.norm_kwargs)}"
        if norm not in norms:  # a norm and its options: built once, so a bad eps is refused before anything runs
            norms.add(norm)
            _check_norm_options(config, "sweep.axes.")
    return sweep


def _check_norm_options(config: TrainConfig, where: str) -> None:
    """Build the config's norm on a small layer with its options, so that a value the norm refuses (``eps = 0``,
    a negative momentum) is refused when the sweep is read, naming where, not in every trial."""
    try:
        make_norm(config.norm, 4, **config.norm_kwargs)
    except BnlabError as exc:
        raise BnlabError(f"{where}{exc}") from None
    except (TypeError, ValueError) as exc:
        raise BnlabError(f"{where}norm {config.norm!r} with options {config.norm_kwargs}: {exc}") from None


def _toml_value(text: str) -> Any:
    """A `--set` value read as a TOML value (``20``, ``0.5``, ``true``, ``[0.1, 1.0]``, ``"x"``); anything that
    is not one (``mnist5k``) is the string as written."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of a parsed sweep file with each ``KEY=VALUE`` of `overrides` set, in order (the last one wins).

    KEY is a top-level key (``seeds=1``, ``target_acc=0.8``), ``base.FIELD`` (``base.steps=200``; ``base.a.b``
    sets entry ``b`` of the table field ``a``) or ``axes.KEY`` (``axes.lr=[0.1, 1.0]`` replaces or adds an axis;
    the axis key may itself be dotted, as in the file). What a file may hold is what an override may set, and the
    result is validated by `parse_sweep` like a file, so a bad key or value is refused naming it. This is how a
    shipped sweep runs shortened (``--set base.steps=200 --set seeds=1``) without editing or copying it."""
    top = {f.name for f in dataclasses.fields(SweepFile)}
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise BnlabError(f"--set takes KEY=VALUE (e.g. base.steps=200), got {item!r}")
        head, dot, rest = key.partition(".")
        if head not in top:
            raise BnlabError(f"--set {key}: unknown sweep key '{head}' (known: {', '.join(sorted(top))})")
        value = _toml_value(text.strip())
        if not dot:
            if head in ("base", "axes"):
                raise BnlabError(f"--set {key}: name a field, e.g. {head}.{'steps' if head == 'base' else 'lr'}=...")
            out[head] = value
        elif head == "axes":
            out["axes"] = {**out.get("axes", {}), rest: value}
        elif head == "base":
            table = out.setdefault("base", {})
            *tables, last = rest.split(".")
            for name in tables:
                inner = table.get(name, {})
                if not isinstance(inner, Mapping):
                    raise BnlabError(f"--set {key}: base.{name} is not a table")
                table[name] = dict(inner)
                table = table[name]
            table[last] = value
        else:
            raise BnlabError(f"--set {key}: '{head}' is not a table (use {head}=VALUE)")
    return out


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Read and validate a sweep file (TOML), with `overrides` (``KEY=VALUE``, see `apply_overrides`) applied
    first; the file's stem is the default name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BnlabError(f"sweep file not found: {str(path)!r}") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise BnlabError(f"cannot read sweep file {str(path)!r}: {exc.__class__.__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BnlabError(f"malformed sweep file {str(path)!r}: {exc}") from None
    return parse_sweep(apply_overrides(data, overrides), name=path.stem)


def point_label(point: Mapping[str, Any]) -> str:
    return "/".join(f"{k}={v}" for k, v in point.items())


def expand(sweep: Sweep) -> list[Trial]:
    """One Trial per (axes point, seed), in order; params are the full TrainConfig (see the module docstring).

    Each point's config is built and validated once; its seeds are copies of that mapping with the seed set (a
    seed is a validated integer >= 0 that no other field depends on), which is what makes planning fast."""
    trials = []
    for point in sweep.points():
        config = _build(sweep.base, {**point, "seed": sweep.seeds[0], "progress": False}, "sweep.axes.")
        mapping = to_mapping(config)
        label = point_label(point)
        for seed in sweep.seeds:
            params: dict[str, Any] = {"config": {**mapping, "seed": seed}, "curve_points": sweep.curve_points}
            if sweep.target_acc is not None:
                params["target_acc"] = sweep.target_acc
            trials.append(Trial(sweep.claim, f"{label}/seed={seed}" if label else f"seed={seed}", TRIAL_FN,
                                params, cost=float(config.steps * config.batch_size)))
    return trials
