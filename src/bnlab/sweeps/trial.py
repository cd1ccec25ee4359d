"""A trial: one independent unit of work, its cache key, and running it.

A `Trial` names a module-level function ("package.module:function") and plain-data keyword arguments; the
executors (`local`, `process`, `ray`) run trials anywhere, cache each result by `Trial.key()` and hand the results
back. The key is a hash of everything the result depends on:

* the function and its parameters (the seed included);
* the **data** the trial reads, when it reads a folder-backed data set such as CIFAR-10: the folder and a content
  fingerprint of its files (`bind_data`), so a rerun on another data folder recomputes instead of reusing
  results computed on the old data;
* the **code** that computes the result: a hash of the trial function's module and of every bnlab module it
  imports, transitively (`code_fingerprint`) -- so editing a claim's report prose, which no trial imports, keeps
  every cached trial, while editing the training loop recomputes them all.

Only functions inside the `bnlab` package can be named (plus the module prefixes listed in the environment
variable ``BNLAB_TRIAL_MODULES``, which the test suite uses for its fault-injection fixtures), so a sweep file or a
cached plan can never make bnlab import and run arbitrary code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bnlab.config import config_hash
from bnlab.data.registry import FOLDER_DATASETS, folder_fingerprint, using_data_dir
from bnlab.errors import BnlabError

EXTRA_MODULES_ENV = "BNLAB_TRIAL_MODULES"


@dataclass(frozen=True)
class Trial:
    """One independent unit of work: `fn` is "package.module:function", called as fn(**params)."""

    claim: str
    name: str  # unique within the claim, e.g. "bn/lr=0.1/seed=0"
    fn: str
    params: Mapping[str, Any]  # plain, JSON-able data; includes the seed
    cost: float = 1.0  # rough relative cost, so executors start the longest trials first
    data: Mapping[str, str] | None = None  # {"dataset", "dir", "fingerprint"} of folder-backed data (bind_data)
    # where files are, not what is computed: passed to fn as keywords too, but left out of the key (the content
    # of an input file is keyed by a digest among the params), so a results folder can be moved and still reused
    locations: Mapping[str, str | None] | None = None

    def key(self) -> str:
        """Stable cache key: function, parameters, data fingerprint and code fingerprint (not the name, not the
        locations). Computed once per Trial (the executors ask for it several times per trial); params are plain
        data that nobody mutates, and `dataclasses.replace` makes a new Trial with its own key."""
        cached = self.__dict__.get("_key")
        if cached is None:
            cached = config_hash({"fn": self.fn, "params": dict(self.params),
                                  "data": dict(self.data) if self.data else None, "code": self.code()})
            object.__setattr__(self, "_key", cached)  # a frozen dataclass: a memo, not a field
        return cached

    def code(self) -> str:
        """The fingerprint of the code that computes this trial's result (`code_fingerprint`)."""
        return code_fingerprint(self.fn)


# ------------------------------------------------------------------------------------------------ data binding


def _dataset_refs(value: Any) -> Iterator[Mapping[str, Any]]:
    """Every mapping inside `value` that names a folder-backed data set under the key "dataset"."""
    if isinstance(value, Mapping):
        if value.get("dataset") in FOLDER_DATASETS:
            yield value
        for v in value.values():
            yield from _dataset_refs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _dataset_refs(v)


def bind_data(trial: Trial, data_dir: str | os.PathLike | None) -> Trial:
    """`trial` with the folder-backed data it reads recorded in `trial.data` (and so in its key).

    The folder is the trial's own ``data_dir`` parameter when it has one, else `data_dir`. A trial that reads no
    folder-backed data set is returned unchanged. The folder is read when the trial runs
    (`execute_trial` makes it the default of `bnlab.data.load_dataset`), never through the environment.
    """
    refs = list(_dataset_refs(trial.params))
    if not refs:
        return trial
    own = {str(r["data_dir"]) for r in refs if r.get("data_dir")}
    if len(own) > 1:
        raise BnlabError(f"trial {trial.claim}/{trial.name} reads two data folders: {', '.join(sorted(own))}")
    folder = next(iter(own)) if own else (str(data_dir) if data_dir is not None else None)
    if folder is None:
        binding = {"dataset": str(refs[0]["dataset"]), "dir": "", "fingerprint": ""}
    else:
        path = Path(folder).expanduser().resolve()
        binding = {"dataset": str(refs[0]["dataset"]), "dir": str(path), "fingerprint": folder_fingerprint(path)}
    return replace(trial, data=binding)


# ------------------------------------------------------------------------------------------------ code fingerprint


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _is_package(name: str) -> bool:
    path = _module_file(name)
    return path is not None and path.name == "__init__.py"


def _imported_modules(name: str, path: Path) -> set[str]:
    """Modules of `name`'s own top-level package (bnlab for bnlab's trials) imported anywhere in the file (module
    level or inside functions), with their parent packages."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            # `from bnlab.x import y` imports the submodule bnlab.x.y when y is one
            found.update(f"{base}.{alias.name}" for alias in node.names if _is_package(base))
    root = name.split(".")[0]
    out = set()
    for mod in found:
        if mod.split(".")[0] != root:
            continue
        parts = mod.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing a.b.c runs a, a.b too
    return out


@functools.cache
def _closure(module: str) -> tuple[tuple[str, bytes], ...]:
    seen: dict[str, bytes] = {}
    todo = [module, *(module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1))]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            seen[name] = b""
            continue
        seen[name] = path.read_bytes()
        todo.extend(m for m in _imported_modules(name, path) if m not in seen)
    return tuple(sorted(seen.items()))


@functools.cache
def code_fingerprint(fn: str) -> str:
    """A hash of the source of `fn`'s module and of every module of its package it imports, transitively.

    Computed from the files (static imports, `ast`), once per function and process (hashing the sources anew for
    every trial was most of a large sweep's planning time). Code a trial never imports --
    claim prose, the report, the command line -- does not enter it.
    """
    digest = hashlib.sha256()
    for name, source in _closure(fn.partition(":")[0]):
        digest.update(name.encode() + b"\0" + source + b"\0")
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ running


def _allowed(module_name: str) -> bool:
    extra = [p.strip() for p in os.environ.get(EXTRA_MODULES_ENV, "").split(",") if p.strip()]
    return module_name.startswith("bnlab.") or any(module_name == p or module_name.startswith(p + ".")
                                                    for p in extra)


def resolve(fn: str) -> Callable[..., dict[str, Any]]:
    module_name, _, attr = fn.partition(":")
    if not _allowed(module_name) or not attr or attr.startswith("_"):
        raise BnlabError(f"trial function must be 'bnlab.<module>:<function>', got {fn!r}")
    module = importlib.import_module(module_name)
    func = getattr(module, attr, None)
    if not callable(func):
        raise BnlabError(f"no function {attr!r} in {module_name}")
    return func


def execute_trial(trial: Trial) -> dict[str, Any]:
    """Run `trial` in this process and return its plain-data result (its bound data folder as the default)."""
    func = resolve(trial.fn)
    folder = (trial.data or {}).get("dir") or None
    with using_data_dir(folder):
        result = func(**dict(trial.params), **dict(trial.locations or {}))
    if not isinstance(result, dict):
        raise TypeError(f"trial {trial.claim}/{trial.name} returned {type(result).__name__}, expected dict")
    if not result:  # the store refuses an empty result as damage, so a function returning one has failed
        raise ValueError(f"trial {trial.claim}/{trial.name} returned an empty result")
    return result
