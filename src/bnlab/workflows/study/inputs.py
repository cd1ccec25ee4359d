"""What a study is given: the user's factories (imported from their path only), their data, the loss, the twin.

`load_factory("FILE.py:NAME")` imports FILE.py from that path -- never by a module name taken from a checkpoint or a
results file -- and returns NAME; it is the user's code, run as such. `load_data` accepts what a data factory may
return -- four tensors (train_x, train_y, test_x, test_y), a (train, test) pair of `torch.utils.data.Dataset`s, or a
pair of `DataLoader`s -- and turns it into a `bnlab.data.Dataset`, naming the problem when shapes, dtypes or values
are wrong. The twin is built in `bnlab.workflows.study.twin`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bnlab.data.dataset import Dataset
from bnlab.errors import BnlabError

LOSSES: tuple[str, ...] = ("cross_entropy", "mse")


def split_spec(spec: str) -> tuple[Path, str]:
    """"FILE.py:NAME" -> (Path(FILE.py), NAME), or a BnlabError naming the problem."""
    path_text, sep, name = str(spec).rpartition(":")
    if not sep or not path_text or not name:
        raise BnlabError(f"expected FILE.py:FACTORY, got {spec!r}")
    path = Path(path_text)
    if not path.is_file():
        raise BnlabError(f"no such file: {path}")
    return path, name


def file_digest(spec: str) -> str:
    """sha256 of the file a FILE.py:NAME spec names: part of every cached study trial's key, so editing the
    user's model or data file recomputes instead of reusing results computed with the old code."""
    path, _ = split_spec(spec)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_factory(spec: str) -> Callable[..., Any]:
    """FILE.py:NAME -> the callable NAME of that file, imported from that path only."""
    path, name = split_spec(spec)
    module_name = f"bnlab_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise BnlabError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module  # registered while it runs: dataclasses and pickling look a module up there
    try:
        loader.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's own error, in one line
        sys.modules.pop(module_name, None)
        raise BnlabError(f"importing {path} failed: {type(exc).__name__}: {_one_line(exc)}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise BnlabError(f"{path} has no function {name!r}")
    return factory


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def call_factory(factory: Callable[..., Any], what: str) -> Any:
    """factory(), with the user's own exception turned into one line naming the factory (and its file)."""
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001
        where = getattr(getattr(factory, "__code__", None), "co_filename", None)
        name = getattr(factory, "__name__", repr(factory))
        raise BnlabError(f"the {what} factory {name!r}{f' in {where}' if where else ''} raised "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None


class OneHotMSE:
    """Mean squared error against one-hot targets: `--loss mse` with integer class labels."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def __call__(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, F.one_hot(y, self.num_classes).to(output.dtype))


def resolve_loss(spec: str | Callable[..., Any], classification: bool, num_classes: int) -> Callable[..., Any]:
    """cross_entropy | mse (one-hot targets for class labels, plain for regression) | FILE.py:FN | a callable."""
    if callable(spec):
        return spec
    if spec == "cross_entropy":
        if not classification:
            raise BnlabError("--loss cross_entropy needs integer class labels; the data's targets are floats "
                             "(use --loss mse for regression)")
        return F.cross_entropy
    if spec == "mse":
        return OneHotMSE(num_classes) if classification else F.mse_loss
    if ":" in str(spec):
        return load_factory(str(spec))
    raise BnlabError(f"loss must be one of {', '.join(LOSSES)} or FILE.py:FN, got {spec!r}")


def _stack(part: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset's or DataLoader's (x, y) items as two tensors."""
    from torch.utils.data import DataLoader

    def pair(item: Any) -> tuple[Any, Any]:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise BnlabError(f"every item of the {name} data must be an (x, y) pair, got {type(item).__name__}")
        return item[0], item[1]

    try:
        if isinstance(part, DataLoader):
            items = [pair(b) for b in part]
            xs, ys = [torch.as_tensor(x) for x, _ in items], [torch.as_tensor(y) for _, y in items]
            return torch.cat(xs), torch.cat(ys)
        items = [pair(part[i]) for i in range(len(part))]
        return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])
    except BnlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - a user's Dataset that fails while being read
        raise BnlabError(f"reading the {name} data failed: {type(exc).__name__}: {_one_line(exc)}") from None


def _as_four(data: Any) -> tuple[torch.Tensor, ...]:
    from torch.utils.data import DataLoader
    from torch.utils.data import Dataset as TorchDataset

    if isinstance(data, (tuple, list)) and len(data) == 4 and all(torch.is_tensor(t) for t in data):
        return tuple(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(p, (TorchDataset, DataLoader))
                                                                   for p in data):
        (train_x, train_y), (test_x, test_y) = _stack(data[0], "train"), _stack(data[1], "test")
        return train_x, train_y, test_x, test_y
    raise BnlabError("the data factory must return four tensors (train_x, train_y, test_x, test_y), a (train, test) "
                     f"pair of torch Datasets or a pair of DataLoaders; got {type(data).__name__}")


def load_data(data: Any) -> Dataset:
    """The user's data as a `bnlab.data.Dataset` (float32 inputs; int64 class labels or float32 targets), or a
    BnlabError naming the problem. Integer 1-D targets make a classification task, float targets a regression."""
    train_x, train_y, test_x, test_y = _as_four(data)
    classification = not train_y.is_floating_point()
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if len(x) != len(y) or len(x) < 2:
            raise BnlabError(f"{name}_x and {name}_y must hold the same number (>= 2) of examples, got "
                             f"{len(x)} and {len(y)}")
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise BnlabError(f"{name}_x must be a finite floating-point tensor (NaN or inf found, or wrong dtype)")
        if classification != (not y.is_floating_point()):
            raise BnlabError("train_y and test_y must both be class labels (integers) or both targets (floats)")
        if classification and (y.dim() != 1 or y.dtype == torch.bool):
            raise BnlabError(f"{name}_y must be a 1-D tensor of integer class labels, got {y.dtype} "
                             f"{tuple(y.shape)}")
        if classification and int(y.min()) < 0:
            raise BnlabError(f"{name}_y holds a negative class label ({int(y.min())})")
        if not classification and not bool(torch.isfinite(y).all()):
            raise BnlabError(f"{name}_y must be finite (NaN or inf found)")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise BnlabError(f"train and test inputs differ in shape: {tuple(train_x.shape[1:])} vs "
                         f"{tuple(test_x.shape[1:])}")
    num_classes = int(max(int(train_y.max()), int(test_y.max()))) + 1 if classification else 0
    label = torch.int64 if classification else torch.float32
    return Dataset("study", train_x.float(), train_y.to(label), test_x.float(), test_y.to(label),
                   tuple(train_x.shape[1:]), num_classes, "classification" if classification else "regression")


def check_model(model: Any, data: Dataset) -> None:
    """The factory's result is an nn.Module that accepts the data's inputs and whose output fits its targets."""
    if not isinstance(model, nn.Module):
        raise BnlabError(f"the model factory must return an nn.Module, got {type(model).__name__}")
    try:
        with torch.no_grad():
            out = model.eval()(data.train_x[:2])
    except Exception as exc:  # noqa: BLE001
        raise BnlabError(f"the model does not accept the data (inputs of shape {tuple(data.train_x.shape[1:])}): "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None
    if not torch.is_tensor(out):
        raise BnlabError(f"the model must return a tensor, got {type(out).__name__}")
    if data.task == "classification" and (out.dim() != 2 or out.shape[1] < data.num_classes):
        raise BnlabError(f"the model's output {tuple(out.shape[1:])} does not fit {data.num_classes} classes "
                         "(expected (N, classes) logits)")
    if data.task == "regression" and out.shape[1:] != data.train_y.shape[1:]:
        raise BnlabError(f"the model's output {tuple(out.shape[1:])} does not match the targets' shape "
                         f"{tuple(data.train_y.shape[1:])}")
