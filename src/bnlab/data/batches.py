"""Mini-batches from in-memory tensors with a seeded generator -- no DataLoader, no per-sample Python.

Each epoch draws one permutation from `generator` and gathers the whole epoch at once (`x[perm]`, one copy per
epoch); batches are then contiguous slices (views) of that copy, so a step costs no allocation and no indexing
kernel. The last incomplete batch of an epoch is dropped (a size-1 remainder would break BN), so every batch has
exactly `batch_size` rows. The iterator's position is plain state (`state_dict` / `load_state_dict`) so a resumed
run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from bnlab.errors import BnlabError

Batch = tuple[torch.Tensor, torch.Tensor]


def as_batches(data: Batch | Iterable[Batch]) -> list[Batch]:
    """The one adapter of probe and landscape data: one ``(x, y)`` batch of tensors, or a finite iterable of such
    batches (a list, a generator, a `torch.utils.data.DataLoader`) -> a list of ``(x, y)`` tuples.

    Raises BnlabError for anything else, an empty iterable, or a batch whose inputs and targets differ in length.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        batches = [data]
    elif torch.is_tensor(data) or isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise BnlabError("data must be an (x, y) batch of tensors or an iterable of such batches")
    else:
        batches = list(data)
    if not batches:
        raise BnlabError("data holds no batches")
    for b in batches:
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and torch.is_tensor(b[0]) and torch.is_tensor(b[1])):
            raise BnlabError("every batch of the data must be an (x, y) pair of tensors")
        if b[0].shape[0] != b[1].shape[0]:
            raise BnlabError(f"a batch has {b[0].shape[0]} inputs but {b[1].shape[0]} targets")
    return [(b[0], b[1]) for b in batches]


class BatchIterator:
    """Yields (x, y) batches of `batch_size` forever, reshuffling every epoch with `generator`."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                 shuffle: bool = True) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise BnlabError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if len(x) != len(y):
            raise BnlabError(f"x and y have different lengths ({len(x)} vs {len(y)})")
        if batch_size > len(x):
            raise BnlabError(f"batch_size {batch_size} is larger than the data set ({len(x)} examples)")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.shuffle = shuffle
        self.batches_per_epoch = len(x) // batch_size
        self.epoch = 0  # epochs started
        self.position = self.batches_per_epoch  # batches of the current epoch already handed out
        self._perm: torch.Tensor | None = None
        self._ex: torch.Tensor = x
        self._ey: torch.Tensor = y

    def _draw_epoch(self) -> None:
        perm = torch.randperm(len(self.x), generator=self.generator) if self.shuffle else None
        self._new_epoch(perm)

    def _new_epoch(self, perm: torch.Tensor | None) -> None:
        self._perm = perm
        if perm is None:
            self._ex, self._ey = self.x, self.y
        else:
            idx = perm.to(self.x.device)
            self._ex, self._ey = self.x[idx], self.y[idx]  # (N, ...) one gather per epoch
        self.position = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self._draw_epoch()
        start = self.position * self.batch_size
        self.position += 1
        end = start + self.batch_size
        return self._ex[start:end], self._ey[start:end]  # (B, ...), (B,) views

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and ints: the generator state, the current epoch's permutation and position."""
        return {
            "generator": self.generator.get_state(),
            "perm": self._perm if self._perm is not None else torch.empty(0, dtype=torch.int64),
            "position": self.position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        perm = state["perm"]
        self._new_epoch(perm if len(perm) else None)  # an empty perm: unshuffled (or no epoch started yet)
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])
