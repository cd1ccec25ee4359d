"""Frozen dataclass configs, validated at the edge.

`from_mapping(Cls, data)` builds a frozen dataclass from plain data (a TOML table, CLI flags, JSON) and rejects
unknown keys and values of the wrong type with a `BnlabError` that names the key. Configs stay plain data
(`to_mapping`) so they can be hashed, cached, and shipped to sweep workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from bnlab.errors import BnlabError

T = TypeVar("T")


def _type_ok(value: Any, annotation: Any) -> bool:
    """True when `value` fits `annotation` (the subset of typing used by bnlab configs)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        if origin is tuple and args:
            return len(args) == len(value) and all(_type_ok(v, a) for v, a in zip(value, args))
        return all(_type_ok(v, args[0]) for v in value) if args else True
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return isinstance(value, Mapping)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _coerce(value: Any, annotation: Any) -> Any:
    """Lists from TOML/JSON become tuples where the field is a tuple; ints become floats for float fields."""
    origin = typing.get_origin(annotation)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            if a is not type(None) and _type_ok(value, a):
                return _coerce(value, a)
    return value


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:  # name the choices, not "Literal"
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build the frozen dataclass `cls` from `data`, rejecting unknown keys and wrong types by name.

    `where` prefixes key names in messages (e.g. "sweep.base.").
    """
    if not isinstance(data, Mapping):
        raise BnlabError(f"{where or cls.__name__}: expected a table of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BnlabError(
            f"unknown config key '{where}{unknown[0]}' (known keys: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        if not _type_ok(value, annotation):
            raise BnlabError(
                f"config key '{where}{name}' must be {_type_name(annotation)}, got {value!r}"
            )
        kwargs[name] = _coerce(value, annotation)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise BnlabError(f"{where or cls.__name__}: {exc}") from None


def json_leaf(value: Any) -> Any:
    """`json.dumps(default=...)` hook: numpy / torch scalars and arrays -> Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not plain data: {type(value).__name__}")


def plain(value: Any) -> Any:
    """Plain, JSON-able data of `value` (a JSON round trip: tuples -> lists, numpy / torch scalars and arrays ->
    Python; NaN and inf kept); TypeError for anything that is not data."""
    return json.loads(json.dumps(value, default=json_leaf))


def to_mapping(config: Any) -> dict[str, Any]:
    """Plain, JSON-able data of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), sort_keys=True))


def check_choice(what: str, value: Any, choices: Sequence[str]) -> None:
    """BnlabError "`what` must be one of a, b, c, got 'x'" unless `value` is one of `choices`."""
    if value not in choices:
        raise BnlabError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


def config_hash(data: Any, length: int = 16) -> str:
    """A stable hash of plain data (dict keys sorted); used for cache keys and trial ids."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = to_mapping(data)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
